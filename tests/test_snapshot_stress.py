"""Snapshot safety under real processes (issue #13, item 8).

Two versions of one raw tree (the same case ids, different voxels) are ingested over each
other with ``ctspine-zarr ingest --overwrite`` in child processes while:

1. a reader process loops over the catalogue, whole volumes and single slices and compares
   every value it reads with both versions (never anything else);
2. the ingest is SIGKILLed at reproducible random points, and the store is read back after
   every kill;
3. the ingest runs under a file-size limit so that every new shard write fails;
4. a second ingest is started while the first holds the writer lock.

Run with ``pytest -s`` to see the figures.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from clirun import ingest_command

import ctspine_zarr
from ctspine_zarr.io.layout import find_cases
from ctspine_zarr.io.store import forget
from ctspine_zarr.testing.synthetic import make_raw_tree

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL, flock and rlimits are POSIX")

LOCK = Path(".ctspine") / "lock"
STAGING = Path(".ctspine") / "staging"
#: Every child process gets at most this long.
CHILD_TIMEOUT = 120.0

Arrays = dict[str, tuple[np.ndarray, np.ndarray]]


# --------------------------------------------------------------------------------------------
# Two versions of one raw tree
# --------------------------------------------------------------------------------------------


def _rewrite_nifti(path: Path, change: Any) -> None:
    """Rewrite a ``.nii.gz`` with its voxels changed; header bytes and dtype kept verbatim."""
    raw = gzip.decompress(path.read_bytes())
    header = nib.Nifti1Header.from_fileobj(io.BytesIO(raw))
    offset = int(header["vox_offset"])
    dtype = header.get_data_dtype()
    shape = header.get_data_shape()
    n = int(np.prod(shape))
    data = np.frombuffer(raw, dtype=dtype, count=n, offset=offset).reshape(shape, order="F")
    new = np.asarray(change(data), dtype=dtype)
    assert new.shape == data.shape and not np.array_equal(new, data)
    body = raw[:offset] + new.tobytes(order="F") + raw[offset + n * dtype.itemsize :]
    path.write_bytes(gzip.compress(body, compresslevel=1))


def _bump_image(data: np.ndarray) -> np.ndarray:
    return data + 1  # +1 stored unit on every voxel (+1 HU: every variant has slope 1)


def _shift_label(data: np.ndarray) -> np.ndarray:
    return np.roll(data, 5, axis=2)  # labels moved 5 slices: other boxes, other slices


def _two_versions(
    tmp_path: Path, *, shape: tuple[int, int], n_slices: tuple[int, int], seed: int, n: int = 3
) -> tuple[Path, Path]:
    """Raw trees A and B: the same cases and headers, B's image +1 and label rolled in z."""
    raw_a, raw_b = tmp_path / "raw_a", tmp_path / "raw_b"
    make_raw_tree(raw_a, n_cases=n, shape=shape, n_slices=n_slices, seed=seed)
    shutil.copytree(raw_a, raw_b)
    for case in find_cases(str(raw_b)).cases:
        assert case.image is not None and case.label is not None
        _rewrite_nifti(_local(case.image), _bump_image)
        _rewrite_nifti(_local(case.label), _shift_label)
    return raw_a, raw_b


def _local(path: str) -> Path:
    """A local path from :func:`find_cases` (which names files by ``file:`` URLs)."""
    return Path(path.removeprefix("file://").removeprefix("file:"))


def _canonical(path: str) -> np.ndarray:
    """The voxels the store must hold for ``path``: canonical RAS+, ``[z, y, x]``."""
    image = nib.as_closest_canonical(nib.load(_local(path)))
    return np.asanyarray(image.dataobj).transpose(2, 1, 0)


def _expected(raw: Path) -> Arrays:
    """``{case_id: (image, label)}`` of a raw tree, read with nibabel."""
    out = {}
    for case in find_cases(str(raw)).cases:
        assert case.image is not None and case.label is not None
        out[case.case_id] = (_canonical(case.image), _canonical(case.label))
    return out


# --------------------------------------------------------------------------------------------
# Child processes
# --------------------------------------------------------------------------------------------


def _run(argv: list[str], timeout: float = CHILD_TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def _ingest_in_process(raw: Path, store: Path, *, overwrite: bool = False) -> None:
    report = ctspine_zarr.ingest(
        raw, store, workers=1, scheduler="threads", overwrite=overwrite, progress=False
    )
    assert report.ok, report.summary()
    forget(store)


def _wait_for_lock(store: Path, child: subprocess.Popen[Any], timeout: float) -> float:
    """Wait until ``child`` holds the store's writer lock (its holder info is written)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if (store / LOCK).stat().st_size > 0:
                return time.monotonic() - started
        except FileNotFoundError:
            pass
        if child.poll() is not None:
            raise AssertionError(f"the ingest ended (exit {child.returncode}) before locking")
        time.sleep(0.002)
    raise AssertionError(f"no writer lock within {timeout} s")


# --------------------------------------------------------------------------------------------
# Reading back
# --------------------------------------------------------------------------------------------


def _which(values: np.ndarray, a: np.ndarray, b: np.ndarray) -> str:
    """``"A"``, ``"B"``, ``"AB"`` (equal to both) or ``""`` (equal to neither)."""
    in_a = values.shape == a.shape and bool(np.array_equal(values, a))
    in_b = values.shape == b.shape and bool(np.array_equal(values, b))
    return ("A" if in_a else "") + ("B" if in_b else "")


def _read_cases(store: Path, a: Arrays, b: Arrays) -> dict[str, str]:
    """Open ``store`` afresh and read every listed case whole: ``{case_id: version}``."""
    forget(store)
    ds = ctspine_zarr.open(store)
    ids = ds.ctspine.case_ids()
    assert sorted(ids) == sorted(a), f"the catalogue lists {ids}, expected {sorted(a)}"
    found = {}
    for case_id in ids:
        vol = ds.ctspine.volume(case_id)
        image = _which(vol.image.values, *(v[case_id][0] for v in (a, b)))
        label = _which(vol.label.values, *(v[case_id][1] for v in (a, b)))
        # one case is one version: its image and its label come from the same ingest
        found[case_id] = "".join(sorted(set(image) & set(label)))
    return found


READER = textwrap.dedent(
    '''
    """Read a store in a loop while it is re-ingested; compare every value with A and B."""
    import collections, json, random, sys, time, traceback
    from pathlib import Path

    import nibabel as nib
    import numpy as np

    import ctspine_zarr
    from ctspine_zarr.errors import DamagedStoreError, StoreChangedError, StoreError
    from ctspine_zarr.io.layout import find_cases

    store, raw_a, raw_b, ref_a, ref_b, ready = sys.argv[1:7]
    seconds, seed = float(sys.argv[7]), int(sys.argv[8])


    def canonical(path):
        path = path.removeprefix("file://").removeprefix("file:")
        image = nib.as_closest_canonical(nib.load(path))
        return np.asanyarray(image.dataobj).transpose(2, 1, 0)


    def expected(raw):
        return {c.case_id: (canonical(c.image), canonical(c.label))
                for c in find_cases(raw).cases}


    def catalogue(ds):
        out = {"case_ids": np.array(ds.ctspine.case_ids(), dtype=object)}
        for name in sorted(ds.variables):
            out[name] = np.asarray(ds[name].values)
        return out


    def same(x, y):
        if x.shape != y.shape:
            return False
        if x.dtype.kind in "OTUS" or y.dtype.kind in "OTUS":
            return [str(v) for v in x.ravel().tolist()] == [str(v) for v in y.ravel().tolist()]
        return bool(np.array_equal(x, y, equal_nan=x.dtype.kind == "f"))


    def which(pairs):
        """pairs: [(values, a, b)]; the versions every value of the read agrees with."""
        in_a = all(same(np.asarray(v), x) for v, x, _ in pairs)
        in_b = all(same(np.asarray(v), y) for v, _, y in pairs)
        return ("A" if in_a else "") + ("B" if in_b else "")


    A, B = expected(raw_a), expected(raw_b)
    CAT_A = catalogue(ctspine_zarr.open(ref_a))
    CAT_B = catalogue(ctspine_zarr.open(ref_b))
    assert sorted(A) == sorted(B) == sorted(CAT_A["case_ids"]) == sorted(CAT_B["case_ids"])
    names = sorted(set(CAT_A) | set(CAT_B))
    rng = random.Random(seed)
    counts = collections.Counter()
    by_kind = collections.Counter()
    errors = collections.Counter()
    error_examples = {}
    wrong_examples = []


    def record(kind, what, detail):
        counts["reads"] += 1
        by_kind[kind] += 1
        for v in "AB":
            if v in what:
                counts[v] += 1
        if what == "AB":
            counts["both"] += 1
        if not what:
            counts["wrong"] += 1
            if len(wrong_examples) < 20:
                wrong_examples.append({"kind": kind, **detail})


    Path(ready).write_text("ready")
    deadline = time.monotonic() + seconds
    iterations = 0
    op = ""
    while time.monotonic() < deadline:
        iterations += 1
        try:
            op = "open"
            ds = ctspine_zarr.open(store)
            op = "catalogue"
            cat = catalogue(ds)
            what = which([(cat.get(n, np.array([])), CAT_A.get(n, np.array([])),
                           CAT_B.get(n, np.array([]))) for n in names])
            record("catalogue", what, {"case_ids": cat["case_ids"].tolist(),
                   "n_slices": cat["n_slices"].tolist(),
                   "differ": [n for n in names if not same(cat.get(n, np.array([])),
                                                           CAT_A.get(n, np.array([])))]})
            for case_id in rng.sample(cat["case_ids"].tolist(), len(cat["case_ids"])):
                a_img, a_lbl = A[case_id]
                b_img, b_lbl = B[case_id]
                op = f"volume({case_id!r})"
                vol = ds.ctspine.volume(case_id)
                op = f"volume({case_id!r}).image.values"
                image = vol.image.values
                record("volume image", which([(image, a_img, b_img)]),
                       {"case": case_id, "zeros": int((image == 0).sum()),
                        "off_a": int((image != a_img).sum()) if image.shape == a_img.shape
                        else -1,
                        "off_b": int((image != b_img).sum()) if image.shape == b_img.shape
                        else -1})
                op = f"volume({case_id!r}).label.values"
                label = vol.label.values
                record("volume label", which([(label, a_lbl, b_lbl)]),
                       {"case": case_id})
                for z in rng.sample(range(a_img.shape[0]), 3):
                    op = f"slice({case_id!r}, {z})"
                    plane = ds.ctspine.slice(case_id, z)
                    record("slice", which([(plane.image.values, a_img[z], b_img[z]),
                                           (plane.label.values, a_lbl[z], b_lbl[z])]),
                           {"case": case_id, "z": z})
        except (StoreChangedError, DamagedStoreError, StoreError) as err:
            name = type(err).__name__
            errors[name] += 1
            error_examples.setdefault(name, f"in {op}: {str(err)[:300]}")
            continue  # reopen
        except Exception as err:  # anything else is as bad as a wrong value
            counts["reads"] += 1
            counts["wrong"] += 1
            errors["unexpected " + type(err).__name__] += 1
            if len(wrong_examples) < 20:
                wrong_examples.append({"kind": "exception", "in": op, "error": repr(err)[:300],
                                       "traceback": traceback.format_exc()[-800:]})
    summary = {
        "iterations": iterations,
        "reads": counts["reads"],
        "equal_a": counts["A"],
        "equal_b": counts["B"],
        "equal_both": counts["both"],
        "wrong": counts["wrong"],
        "reads_by_kind": dict(by_kind),
        "errors": dict(errors),
        "error_examples": error_examples,
        "wrong_examples": wrong_examples,
    }
    print(json.dumps(summary, default=str))
    '''
)


# --------------------------------------------------------------------------------------------
# 1. A reader process while the store is re-ingested
# --------------------------------------------------------------------------------------------


def test_reader_sees_a_or_b_while_ingest_overwrites(tmp_path: Path) -> None:
    raw_a, raw_b = _two_versions(tmp_path, shape=(64, 64), n_slices=(40, 70), seed=5)
    store, ref_a, ref_b = tmp_path / "s.zarr", tmp_path / "ref_a.zarr", tmp_path / "ref_b.zarr"
    for raw, where in ((raw_a, ref_a), (raw_b, ref_b), (raw_a, store)):
        _ingest_in_process(raw, where)
    script, ready = tmp_path / "reader.py", tmp_path / "reader.ready"
    script.write_text(READER)
    seconds = 10.0
    argv = [sys.executable, str(script), str(store), str(raw_a), str(raw_b)]
    argv += [str(ref_a), str(ref_b), str(ready), str(seconds), "13"]
    reader = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ingests: list[tuple[str, float]] = []
    try:
        started = time.monotonic()
        while not ready.exists():
            assert reader.poll() is None, reader.communicate(timeout=10)
            assert time.monotonic() - started < 60, "the reader did not start"
            time.sleep(0.05)
        versions = [("B", raw_b), ("A", raw_a)]
        while len(ingests) < 16 and (len(ingests) < 4 or reader.poll() is None):
            name, raw = versions[len(ingests) % 2]
            t0 = time.monotonic()
            done = _run(ingest_command(raw, store, "--overwrite"))
            assert done.returncode == 0, done.stderr[-2000:]
            ingests.append((name, time.monotonic() - t0))
        out, err = reader.communicate(timeout=CHILD_TIMEOUT)
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.communicate()
    assert reader.returncode == 0, err[-3000:]
    summary = json.loads(out.strip().splitlines()[-1])
    print(
        f"\n[reader vs ingest --overwrite] {len(ingests)} ingests "
        f"({', '.join(f'{n} {s:.1f}s' for n, s in ingests)}); "
        f"{summary['iterations']} iterations, reads {summary['reads']} "
        f"(by kind {summary['reads_by_kind']}), equal to A {summary['equal_a']}, "
        f"to B {summary['equal_b']}, to both {summary['equal_both']}, "
        f"wrong {summary['wrong']}, errors {summary['errors']}"
    )
    for name, example in summary["error_examples"].items():
        print(f"  e.g. {name}: {example}")
    assert summary["wrong"] == 0, json.dumps(summary["wrong_examples"][:8], indent=1)[:5000]
    assert len(ingests) >= 4
    # the reader overlapped the ingests: at least 4 finished while it was reading
    assert summary["reads"] >= 200, summary
    assert summary["equal_a"] > 0 and summary["equal_b"] > 0, summary
    assert not any(kind.startswith("unexpected") for kind in summary["errors"]), summary


# --------------------------------------------------------------------------------------------
# 2. SIGKILL at random points, in a loop
# --------------------------------------------------------------------------------------------


def test_sigkill_at_random_points_leaves_a_or_b(tmp_path: Path) -> None:
    raw_a, raw_b = _two_versions(tmp_path, shape=(96, 96), n_slices=(50, 90), seed=21)
    a, b = _expected(raw_a), _expected(raw_b)
    store = tmp_path / "s.zarr"
    _ingest_in_process(raw_a, store)

    # one whole ingest of B, timed: when the lock is taken, when it ends
    t0 = time.monotonic()
    child = subprocess.Popen(
        ingest_command(raw_b, store, "--overwrite"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        t_lock = _wait_for_lock(store, child, CHILD_TIMEOUT)
        assert child.wait(timeout=CHILD_TIMEOUT) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    duration = time.monotonic() - t0
    assert set(_read_cases(store, a, b).values()) == {"B"}

    rng = random.Random(20261205)
    rounds, kills, mid_write, staged_at_kill = 12, 0, 0, 0
    seen: dict[str, int] = {"A": 0, "B": 0}
    errors: list[str] = []
    wrong: list[str] = []
    last = raw_b
    test_started = time.monotonic()
    for n in range(rounds):
        if time.monotonic() - test_started > 60:
            break
        last = raw_a if n % 2 == 0 else raw_b
        # delays over the part of the run that writes (from shortly before the lock is
        # taken to a little after the measured end), where a kill can do damage
        delay = rng.uniform(0.6 * t_lock, 1.1 * duration)
        output = tmp_path / f"round-{n}.log"
        with open(output, "w") as log:
            child = subprocess.Popen(
                ingest_command(last, store, "--overwrite"), stdout=log, stderr=subprocess.STDOUT
            )
        try:
            time.sleep(delay)
            staging = store / STAGING
            staged = staging.is_dir() and any(staging.iterdir())
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=CHILD_TIMEOUT)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        kills += 1
        if child.returncode == -signal.SIGKILL:
            mid_write += 1
            staged_at_kill += staged
        else:
            assert child.returncode == 0, output.read_text()
        try:
            found = _read_cases(store, a, b)
        except Exception as err:  # noqa: BLE001 - every kind is reported below
            errors.append(f"round {n} (kill at {delay:.2f} s): {type(err).__name__}: {err}")
            continue
        for case_id, version in found.items():
            if version in ("A", "B"):
                seen[version] += 1
            else:
                wrong.append(
                    f"round {n} (kill at {delay:.2f} s): case {case_id!r} reads {version!r}"
                )
    elapsed = time.monotonic() - test_started
    print(
        f"\n[SIGKILL loop] one ingest {duration:.2f} s (lock at {t_lock:.2f} s); "
        f"{kills} kills in {elapsed:.1f} s, {mid_write} while the ingest ran "
        f"({staged_at_kill} with a case staged), cases read back as A {seen['A']}, "
        f"as B {seen['B']}, wrong {len(wrong)}, errors {len(errors)}"
    )
    assert not wrong, wrong
    assert not errors, errors
    assert kills >= 8 and mid_write >= 4

    # a plain rerun finishes the last version; everything then matches it exactly
    done = _run(ingest_command(last, store))
    assert done.returncode == 0, done.stdout + done.stderr
    report = ctspine_zarr.verify(store, against=last)
    assert report.ok, report.summary()
    assert set(_read_cases(store, a, b).values()) == {"A" if last == raw_a else "B"}
    assert not (store / STAGING).exists() or not any((store / STAGING).iterdir())


# --------------------------------------------------------------------------------------------
# 3. A failing write never costs the old copy
# --------------------------------------------------------------------------------------------

LIMITED = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
from ctspine_zarr.cli import main
sys.exit(main({argv!r}))
"""


def test_failing_writes_keep_the_old_version(tmp_path: Path) -> None:
    raw_a, raw_b = _two_versions(tmp_path, shape=(64, 64), n_slices=(40, 70), seed=9)
    a, b = _expected(raw_a), _expected(raw_b)
    store = tmp_path / "s.zarr"
    _ingest_in_process(raw_a, store)
    # the largest image shard of each case
    shards = [
        max(p.stat().st_size for p in case.glob("image/c/*/*/*"))
        for case in sorted(store.glob("cases/*/"))
    ]
    others = [
        p.stat().st_size
        for p in store.rglob("*")
        if p.is_file() and "/image/c/" not in p.as_posix()
    ]
    report_file = store.with_name(store.name + ".ingest-report.json")
    others.append(report_file.stat().st_size)
    # each case's new version fails (one of its shards is refused); metadata, labels,
    # catalogue and report fit
    limit = max(2 * max(others), 16384)
    assert len(shards) == len(a) and limit < min(shards), (limit, shards)
    before = sorted(p.relative_to(store).as_posix() for p in store.rglob("*"))

    argv = ["ingest", str(raw_b), str(store), "--overwrite", "--workers", "1", "--quiet"]
    code = LIMITED.format(limit=limit, argv=argv)
    done = _run([sys.executable, "-c", code])
    print(
        f"\n[file-size limit {limit} B, largest image shards {shards} B] exit "
        f"{done.returncode}; stdout {len(done.stdout.splitlines())} lines, stderr "
        f"{len(done.stderr.splitlines())} lines:\n{done.stdout}{done.stderr}"
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{len(a)} failed; {len(a)} in the catalogue" in done.stdout, done.stdout

    # the old copy of every case is there, listed, and reads exactly as version A
    assert set(_read_cases(store, a, b).values()) == {"A"}
    report = ctspine_zarr.verify(store, against=raw_a)
    assert report.ok, report.summary()
    after = sorted(p.relative_to(store).as_posix() for p in store.rglob("*"))
    leftovers = [p for p in after if p.startswith(STAGING.as_posix() + "/")]
    assert not leftovers, leftovers
    assert [p for p in after if p.startswith("cases/")] == [
        p for p in before if p.startswith("cases/")
    ]

    # a full disk is no bug: one line per failed case, no traceback flood
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output
    assert len(output.splitlines()) <= 8 + len(a), output


# --------------------------------------------------------------------------------------------
# 4. Two ingests at once
# --------------------------------------------------------------------------------------------


def _listing(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every file and folder under ``root``: inode, size, modification time (ns)."""
    out = {}
    for path in sorted(root.rglob("*")):
        stat = path.lstat()
        out[path.relative_to(root).as_posix()] = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    return out


def _frozen_first(
    tmp_path: Path, raw: Path, store: Path, *, set_up: bool
) -> tuple[subprocess.Popen[str], bool]:
    """Start an ingest and SIGSTOP it once it holds the lock (it keeps holding it).

    ``set_up``: stop it only after it laid out the store (root and ``cases`` documents),
    else as soon as the lock is taken. Returns the stopped child and whether the store's
    root document existed when it stopped.
    """
    first = subprocess.Popen(
        ingest_command(raw, store), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        started = time.monotonic()
        while True:
            assert time.monotonic() - started < CHILD_TIMEOUT, "no writer lock"
            assert first.poll() is None, first.communicate()
            try:
                locked = (store / LOCK).stat().st_size > 0
            except FileNotFoundError:
                locked = False
            laid_out = (store / "zarr.json").exists() and (store / "cases/zarr.json").exists()
            if locked and (laid_out or not set_up):
                first.send_signal(signal.SIGSTOP)
                _wait_until_stopped(first.pid)  # its threads may run on for a moment
                return first, (store / "zarr.json").exists()
            if set_up:
                time.sleep(0.002)
    except BaseException:
        first.kill()
        first.communicate()
        raise


def _wait_until_stopped(pid: int) -> None:
    """Return once every thread of ``pid`` is stopped (``T`` in ``/proc``), not just signalled.

    SIGSTOP is delivered asynchronously: a thread running on the other core can still write
    for a few milliseconds, which the listings taken next would blame on the second ingest.
    """
    tasks = Path(f"/proc/{pid}/task")
    started = time.monotonic()
    while time.monotonic() - started < CHILD_TIMEOUT:
        states = []
        for task in tasks.iterdir():
            try:
                states.append((task / "stat").read_text().rsplit(")", 1)[1].split()[0])
            except (FileNotFoundError, ProcessLookupError):
                continue  # a thread that just ended
        if states and all(state in "Tt" for state in states):
            return
        time.sleep(0.001)
    raise AssertionError(f"process {pid} did not stop")


def _second_ingest(
    tmp_path: Path, raw: Path, store: Path, first: subprocess.Popen[str]
) -> tuple[subprocess.CompletedProcess[str], dict, dict, str]:
    """With ``first`` stopped: run a second ingest, listing everything before and after;
    then let ``first`` finish. Returns the second's result, both listings, first's output.
    """
    try:
        try:
            before = _listing(tmp_path)
            second = _run(ingest_command(raw, store))
            after = _listing(tmp_path)
        finally:
            first.send_signal(signal.SIGCONT)
        out, err = first.communicate(timeout=CHILD_TIMEOUT)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    return second, before, after, out + err


def _assert_refused_untouched(
    second: subprocess.CompletedProcess[str], before: dict, after: dict
) -> None:
    assert second.returncode == 2, second.stdout + second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "another ingest" in lines[0], second.stderr
    assert second.stdout == ""
    changed = {k: (before.get(k), after.get(k)) for k in set(before) | set(after)}
    changed = {k: v for k, v in changed.items() if v[0] != v[1]}
    assert not changed, changed


def test_second_ingest_is_refused_and_touches_nothing(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    make_raw_tree(raw, n_cases=6, shape=(64, 64), n_slices=(30, 60), seed=4)
    store = tmp_path / "s.zarr"
    first, _ = _frozen_first(tmp_path, raw, store, set_up=True)
    t0 = time.monotonic()
    second, before, after, first_output = _second_ingest(tmp_path, raw, store, first)
    print(
        f"\n[two ingests] second: exit {second.returncode} "
        f"({time.monotonic() - t0:.2f} s with the first one's end), stderr {second.stderr!r}; "
        f"first: exit {first.returncode}"
    )
    _assert_refused_untouched(second, before, after)
    assert first.returncode == 0, first_output
    report = ctspine_zarr.verify(store, against=raw)
    assert report.ok, report.summary()


def test_second_ingest_while_the_first_creates_the_store(tmp_path: Path) -> None:
    """The first ingest of a new store holds the lock but has not written its root document
    yet (stopped right after taking the lock): a second ingest must still say "another
    ingest" and touch nothing, not call the location foreign (whose --force-clear would
    delete the first one's lock and files).
    """
    raw = tmp_path / "raw"
    make_raw_tree(raw, n_cases=2, shape=(64, 64), n_slices=(30, 40), seed=4)
    for attempt in range(1, 7):
        store = tmp_path / f"s{attempt}.zarr"
        first, has_root = _frozen_first(tmp_path, raw, store, set_up=False)
        if not has_root:
            break
        first.kill()  # stopped too late: the window is a few milliseconds
        first.communicate()
    else:
        print("\n[two ingests, store being created] the window was never caught")
        return
    second, before, after, first_output = _second_ingest(tmp_path, raw, store, first)
    print(
        f"\n[two ingests, store being created: caught at attempt {attempt}] second: exit "
        f"{second.returncode}, stderr {second.stderr!r}; first: exit {first.returncode}"
    )
    _assert_refused_untouched(second, before, after)
    assert first.returncode == 0, first_output
