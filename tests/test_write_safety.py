"""Issue #13: writes never delete what they did not write; reruns repair; damage is an error.

The refusals run through the real command line (a subprocess): the exit code, the one
line on stderr, and that nothing the user owned was touched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import fsspec
import nibabel as nib
import numpy as np
import pytest
from clirun import cli_each

import ctspine_zarr
from ctspine_zarr.errors import DamagedStoreError, StoreChangedError, StoreError
from ctspine_zarr.io.location import Location
from ctspine_zarr.io.store import forget
from ctspine_zarr.sampling import SliceSequence
from ctspine_zarr.testing.synthetic import make_raw_tree
from ctspine_zarr.write.lock import WriterLock


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "ctspine_zarr.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def _listing(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _expected(path: Path) -> np.ndarray:
    return np.asanyarray(nib.as_closest_canonical(nib.load(path)).dataobj).transpose(2, 1, 0)


@pytest.fixture(scope="module")
def tiny_raw(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("tiny")
    cases = make_raw_tree(root, n_cases=3, shape=(24, 24), n_slices=(40, 48), seed=5)
    return root, cases


@pytest.fixture
def fresh_store(tiny_raw, tmp_path: Path) -> Path:
    store = tmp_path / "s.zarr"
    assert ctspine_zarr.ingest(tiny_raw[0], store, workers=1, progress=False).ok
    return store


# ---- 1. claiming a location ---------------------------------------------------------------


def test_a_folder_that_is_not_a_store_is_never_cleared(tiny_raw, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    (victim / "sub").mkdir(parents=True)
    (victim / "thesis.tex").write_text("\\chapter{Results}")
    (victim / "sub" / "notes.txt").write_text("keep me")
    before = _listing(victim)
    for done in cli_each(
        *(
            ("ingest", str(tiny_raw[0]), str(victim), "--quiet", *extra)
            for extra in ([], ["--overwrite"])
        )
    ):
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "thesis.tex" in lines[0] and "--force-clear" in lines[0]
        assert _listing(victim) == before
    done = _cli("ingest", str(tiny_raw[0]), str(victim), "--quiet", "--force-clear")
    assert done.returncode == 0, done.stderr
    assert "deleting 2 object(s)" in done.stderr and "sub/notes.txt" in done.stderr
    assert not (victim / "thesis.tex").exists()
    assert len(ctspine_zarr.open(victim).ctspine.case_ids()) == 3


def test_a_file_is_refused(tiny_raw, tmp_path: Path) -> None:
    target = tmp_path / "report.pdf"
    target.write_bytes(b"%PDF-1.7")
    done = _cli("ingest", str(tiny_raw[0]), str(target), "--quiet", "--overwrite")
    assert done.returncode == 2 and "a file" in done.stderr
    assert target.read_bytes() == b"%PDF-1.7"


@pytest.mark.parametrize("where", ["same", "store_in_raw", "raw_in_store"])
def test_store_and_raw_never_overlap(tiny_raw, tmp_path: Path, where: str) -> None:
    raw = tmp_path / "raw"
    shutil.copytree(tiny_raw[0], raw)
    store = {
        "same": raw,
        "store_in_raw": raw / "out.zarr",
        "raw_in_store": tmp_path,
    }[where]
    before = _listing(raw)
    extras: list[list[str]] = [[], ["--overwrite"], ["--force-clear"]]
    for done in cli_each(*(("ingest", str(raw), str(store), "--quiet", *e) for e in extras)):
        assert done.returncode == 2, done.stderr
        assert "overlap" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert _listing(raw) == before


def test_s3_prefixes_are_claimed_only_when_ours(s3, tiny_raw) -> None:
    bucket, options, _ = s3
    fs = fsspec.filesystem("s3", **options)
    fs.put(str(tiny_raw[0]), f"{bucket}/proj/raw", recursive=True)
    fs.pipe_file(f"{bucket}/proj/notes.txt", b"keep")
    fs.pipe_file(f"{bucket}/other/notes.txt", b"keep too")
    fs.invalidate_cache()
    before = sorted(fs.find(bucket))
    with pytest.raises(StoreError, match="overlap"):
        ctspine_zarr.ingest(
            f"{bucket}/proj/raw",
            f"{bucket}/proj",
            storage_options=options,
            raw_storage_options=options,
            progress=False,
        )
    with pytest.raises(StoreError, match="not a ctspine store"):
        ctspine_zarr.ingest(
            tiny_raw[0], f"{bucket}/other", storage_options=options, overwrite=True, progress=False
        )
    fs.invalidate_cache()
    assert sorted(fs.find(bucket)) == before


# ---- 4. one writer at a time ----------------------------------------------------------------


def test_a_second_ingest_touches_nothing_while_the_lock_is_held(fresh_store, tiny_raw) -> None:
    before = _listing(fresh_store)
    with WriterLock(Location.resolve(fresh_store)):
        done = _cli("ingest", str(tiny_raw[0]), str(fresh_store), "--quiet", "--overwrite")
        assert done.returncode == 2
        assert "another ingest is writing this store" in done.stderr
        assert f"pid {os.getpid()}" in done.stderr
    after = _listing(fresh_store)
    assert after == before
    # released: the next ingest runs, and leaves no writer folder behind
    assert _cli("ingest", str(tiny_raw[0]), str(fresh_store), "--quiet").returncode == 0
    assert not (fresh_store / ".ctspine").exists() or not any((fresh_store / ".ctspine").iterdir())


def test_the_lock_on_s3_refuses_a_second_writer(s3, tiny_raw) -> None:
    bucket, options, _ = s3
    url = f"{bucket}/s.zarr"
    assert ctspine_zarr.ingest(tiny_raw[0], url, storage_options=options, progress=False).ok
    with WriterLock(Location.resolve(url, storage_options=options)):
        with pytest.raises(StoreError, match="another ingest"):
            ctspine_zarr.ingest(tiny_raw[0], url, storage_options=options, progress=False)
    assert ctspine_zarr.ingest(tiny_raw[0], url, storage_options=options, progress=False).ok


# ---- 3. a missing chunk is an error in every read path ------------------------------------


def test_a_missing_shard_is_an_error_naming_case_array_and_slice(fresh_store, tiny_raw) -> None:
    case = tiny_raw[1][0].case_id
    shard = fresh_store / "cases" / case / "image" / "c" / "1" / "0" / "0"
    shard.unlink()
    forget(fresh_store)
    ds = ctspine_zarr.open(fresh_store)
    with pytest.raises(DamagedStoreError, match=rf"case '{case}', array 'image', slice z=3\d"):
        ds.ctspine.slice(case, 35)
    ds.ctspine.slice(case, 3)  # the other shard still reads
    with pytest.raises(DamagedStoreError, match="image"):
        ds.ctspine.volume(case).image.values  # noqa: B018 - the read is the test
    sequence = SliceSequence(fresh_store, split=None)
    with pytest.raises(DamagedStoreError, match="slice z="):
        sequence.getitems(list(range(len(sequence))))


def test_a_chunk_marked_empty_in_its_shard_index_is_an_error(fresh_store, tiny_raw) -> None:
    from ctspine_zarr.io.slicereader import case_readers

    case = tiny_raw[1][1].case_id
    forget(fresh_store)
    readers = case_readers(fresh_store, case)
    layout = readers.label.layout
    assert layout is not None
    path = fresh_store / layout.key(0)
    data = bytearray(path.read_bytes())
    table = layout.decode_index(bytes(data[-layout.index_size :])).copy()
    table[4] = 2**64 - 1
    # re-encode the index with its checksum so that only the empty entry is wrong
    import google_crc32c

    raw = table.astype("<u8").tobytes()
    data[-layout.index_size :] = raw + google_crc32c.value(raw).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    forget(fresh_store)
    ds = ctspine_zarr.open(fresh_store)
    with pytest.raises(StoreError):  # the index no longer matches the metadata, or is empty
        ds.ctspine.slice(case, 4)


# ---- 5. reruns repair ----------------------------------------------------------------------


def _damage(store: Path, case: str, how: str) -> None:
    group = store / "cases" / case
    shard = group / "image" / "c" / "0" / "0" / "0"
    if how == "deleted shard":
        shard.unlink()
    elif how == "truncated shard":
        shard.write_bytes(shard.read_bytes()[:-700])
    elif how == "garbage image/zarr.json":
        (group / "image" / "zarr.json").write_text("{not json")
    elif how == "garbage case zarr.json":
        (group / "zarr.json").write_text("\x00garbage")
    elif how == "garbage root zarr.json":
        (store / "zarr.json").write_text("[[[")


@pytest.mark.parametrize(
    "how",
    [
        "deleted shard",
        "truncated shard",
        "garbage image/zarr.json",
        "garbage case zarr.json",
        "garbage root zarr.json",
    ],
)
def test_a_rerun_repairs_damage(fresh_store, tiny_raw, how: str) -> None:
    raw, cases = tiny_raw
    case = cases[0]
    _damage(fresh_store, case.case_id, how)
    forget(fresh_store)
    if how == "garbage root zarr.json":
        with pytest.raises(DamagedStoreError, match="zarr.json: not valid JSON"):
            ctspine_zarr.open(fresh_store)
        assert not ctspine_zarr.verify(fresh_store).ok
    done = _cli("ingest", str(raw), str(fresh_store), "--quiet")
    assert done.returncode == 0, done.stdout + done.stderr
    if how != "garbage root zarr.json":
        assert "1 ingested, 2 unchanged" in done.stdout
        assert "1 damaged case(s) rewritten" in done.stdout
    forget(fresh_store)
    report = ctspine_zarr.verify(fresh_store, against=raw)
    assert report.ok, report.summary()
    vol = ctspine_zarr.open(fresh_store).ctspine.volume(case.case_id)
    np.testing.assert_array_equal(vol.image.values, _expected(case.image_path))


def test_repair_finds_a_corrupt_chunk_the_cheap_check_cannot(fresh_store, tiny_raw) -> None:
    raw, cases = tiny_raw
    case = cases[2]
    shard = fresh_store / "cases" / case.case_id / "label" / "c" / "0" / "0" / "0"
    data = bytearray(shard.read_bytes())
    data[10] ^= 0xFF  # inside the first chunk: its CRC32C fails, the index is intact
    shard.write_bytes(bytes(data))
    plain = ctspine_zarr.ingest(raw, fresh_store, workers=1, progress=False)
    assert plain.count("skipped") == 3  # the cheap check reads no chunk
    report = ctspine_zarr.ingest(raw, fresh_store, workers=1, progress=False, repair=True)
    assert report.ok and set(report.repaired) == {case.case_id}
    assert ctspine_zarr.verify(fresh_store, against=raw).ok


# ---- 2. long-lived handles ------------------------------------------------------------------


def test_a_handle_on_a_replaced_case_raises_then_reopens_to_the_new_version(
    fresh_store, tiny_raw, tmp_path: Path
) -> None:
    raw = tmp_path / "raw"
    shutil.copytree(tiny_raw[0], raw)
    case = tiny_raw[1][0]
    forget(fresh_store)
    ds = ctspine_zarr.open(fresh_store)
    old = ds.ctspine.slice(case.case_id, 1).image.values.copy()
    # new sources for the case: every voxel + 1
    path = raw / case.image_path.relative_to(tiny_raw[0])
    image = nib.load(path)
    data = np.asanyarray(image.dataobj)
    nib.save(nib.Nifti1Image(data + 1, image.affine, image.header), path)
    done = _cli("ingest", str(raw), str(fresh_store), "--quiet")
    assert done.returncode == 0, done.stderr
    with pytest.raises(StoreChangedError, match="reopen"):
        ds.ctspine.slice(case.case_id, 1)
    new = ctspine_zarr.open(fresh_store).ctspine.slice(case.case_id, 1).image.values
    np.testing.assert_array_equal(new, old + 1)


def test_the_catalogue_snapshot_survives_two_later_ingests(
    fresh_store, tiny_raw, tmp_path: Path
) -> None:
    raw, cases = tiny_raw
    forget(fresh_store)
    ds = ctspine_zarr.open(fresh_store)  # lazy columns: read after the ingests below
    expected = ds.n_slices.load().values.copy()
    ds = ctspine_zarr.open(fresh_store)
    root = json.loads((fresh_store / "zarr.json").read_bytes())
    generation = root["attributes"]["catalogue_generation"]
    smaller = tmp_path / "smaller"
    shutil.copytree(raw, smaller)
    for path in (cases[0].image_path, cases[0].label_path):
        (smaller / path.relative_to(raw)).unlink()
    for tree in (smaller, raw):  # two catalogues unlike the opened one
        assert ctspine_zarr.ingest(tree, fresh_store, workers=1, progress=False, overwrite=True).ok
    np.testing.assert_array_equal(ds.n_slices.values, expected)
    root = json.loads((fresh_store / "zarr.json").read_bytes())
    assert root["attributes"]["catalogue_generation"] == generation + 2
    # the third writes over the opened catalogue's chunk keys: an old handle gets an
    # error, never a mix
    assert ctspine_zarr.ingest(smaller, fresh_store, workers=1, progress=False, overwrite=True).ok
    with pytest.raises(StoreChangedError):
        ds.n_vertebrae.values  # noqa: B018 - the read is the test


def test_a_rerun_drops_the_partial_file_zarr_leaves_when_killed(tmp_path: Path) -> None:
    import ctspine_zarr
    from ctspine_zarr.testing.synthetic import make_raw_tree

    make_raw_tree(tmp_path / "raw", n_cases=1, shape=(16, 16), n_slices=(4, 6), seed=2)
    store = tmp_path / "s.zarr"
    assert ctspine_zarr.ingest(tmp_path / "raw", store, workers=1).ok
    debris = store / "zarr.0123456789abcdef0123456789abcdef.partial"
    debris.write_bytes(b"{")  # what a SIGKILL during zarr's exclusive root write leaves
    assert not ctspine_zarr.verify(store).ok  # zarr refuses to walk past it
    assert ctspine_zarr.ingest(tmp_path / "raw", store, workers=1).ok
    assert not debris.exists() and ctspine_zarr.verify(store).ok
