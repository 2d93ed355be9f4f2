"""Benchmark ctspine_zarr ingest and reads against nibabel on the same ``.nii.gz`` files.

One run generates a synthetic CTSpine1K-like raw tree (512x512 in-plane; default 6 cases of
100-300 slices, ``--quick`` 3 cases of 60-100 slices) and measures, on those files:

1. bytes: the store on disk (every file) against the ``.nii.gz`` images + labels, per array;
2. random axial slice latency (image + label), p50 / p95 over the same random
   ``(case, z)`` pairs for every contender, warm-up excluded, contenders interleaved:
   ``ds.ctspine.slice`` (catalogue opened once), zarr arrays directly (the floor the accessor
   pays on top of), nibabel + indexed_gzip with the files kept open and the seek index built
   (the anchor), and nibabel opening the files afresh per read ("first touch");
3. ingest time with 1 and 2 workers for the "processes" and "threads" schedulers (a fresh
   store each), each against nibabel's serial full load of the same files (the gzip floor)
   timed right before it, with the number of dask workers that actually ran a case;
4. whole-volume read (image + label) per case, ours against nibabel's full load.

nibabel reads the *same anatomical slice* as the store: the canonical ``z`` of the store is
mapped to the file's voxel axis and index through ``io_orientation(affine)`` (for the
sagittally stored variant that is an axial plane across the file's second axis), and the
mapping is checked once per case against the store's slice. A second nibabel row reads the
file's third axis at a random index from the same distribution (the layout nibabel favours).

Run from the repository root::

    python -m benchmarks.ingest_read [--quick] [--cases N] [--json OUT] [--workdir DIR]

Timings on a shared machine are noisy; read the medians and the ratios.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import EllipsisType
from typing import Any, cast

import nibabel as nib
import numpy as np
import zarr
from nibabel.orientations import io_orientation
from nibabel.spatialimages import SpatialImage

import ctspine_zarr
from benchmarks.common import (
    NOISE_NOTE,
    Summary,
    dir_bytes,
    fmt_bytes,
    fmt_ratio,
    fmt_seconds,
    git_state,
    machine_info,
    machine_lines,
    markdown_table,
    ratio,
    summarize,
    time_call,
    write_json,
)
from ctspine_zarr.synthetic import make_raw_tree

TREE_MARKER = "benchmark-tree.json"
SCHEDULERS = ("processes", "threads")
WORKER_COUNTS = (1, 2)
GOAL_BYTES_RATIO = 0.8
GOAL_INGEST_RATIO = 3.0
GOAL_SPEEDUP = 1.7

Reader = Callable[["BenchCase", int], object]
Index = tuple[int | slice | EllipsisType, ...]


def load_nifti(path: str, *, keep_file_open: bool = False) -> SpatialImage:
    """``nib.load`` typed as the spatial image it returns for a NIfTI file."""
    return cast(SpatialImage, nib.load(path, keep_file_open=keep_file_open))


# --------------------------------------------------------------------------------------------
# Settings and cases
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """What one run measures (see ``--help``)."""

    n_cases: int
    slices: tuple[int, int]
    shape: tuple[int, int]
    seed: int
    reads: int
    warmup: int
    first_touch_reads: int
    volume_repeats: int
    ingest_repeats: int
    quick: bool

    def tree_key(self) -> dict[str, Any]:
        """Return the settings that determine the generated raw tree."""
        return {
            "n_cases": self.n_cases,
            "slices": list(self.slices),
            "shape": list(self.shape),
            "seed": self.seed,
        }


@dataclass(frozen=True)
class BenchCase:
    """One case of the raw tree and where its axial slices lie in the source file.

    Attributes
    ----------
    case_id, source, variant
        As written by :func:`ctspine_zarr.synthetic.make_raw_tree`.
    image_path, label_path
        The ``.nii.gz`` files.
    file_shape
        Voxel shape of the file (its own axis order).
    axial_axis
        File axis that becomes the store's ``z`` (canonical superior axis).
    axial_flip
        Whether file index ``n - 1 - z`` holds store slice ``z``.
    """

    case_id: str
    source: str
    variant: str
    image_path: str
    label_path: str
    file_shape: tuple[int, int, int]
    axial_axis: int
    axial_flip: bool

    @property
    def n_z(self) -> int:
        """Number of axial slices."""
        return self.file_shape[self.axial_axis]

    def axial_index(self, z: int) -> Index:
        """Return the file index tuple of store slice ``z`` (the same anatomical slice)."""
        index: list[int | slice] = [slice(None)] * 3
        index[self.axial_axis] = self.n_z - 1 - z if self.axial_flip else z
        return tuple(index)

    def third_axis_index(self, z: int) -> Index:
        """Return ``[..., k]`` with ``k`` spread over the file's third axis as ``z`` is."""
        k = z * self.file_shape[2] // self.n_z
        return (Ellipsis, k)

    @property
    def nii_bytes(self) -> tuple[int, int]:
        """Sizes of the image and label ``.nii.gz`` files."""
        return os.path.getsize(self.image_path), os.path.getsize(self.label_path)


def describe_case(case_id: str, source: str, variant: str, image: str, label: str) -> BenchCase:
    """Read a case's NIfTI header and locate its axial axis in the file."""
    img = load_nifti(image)
    shape = tuple(int(n) for n in img.shape[:3])
    assert len(shape) == 3
    ornt = io_orientation(img.affine)
    axis = int(np.flatnonzero(ornt[:, 0] == 2)[0])
    return BenchCase(
        case_id=case_id,
        source=source,
        variant=variant,
        image_path=image,
        label_path=label,
        file_shape=(shape[0], shape[1], shape[2]),
        axial_axis=axis,
        axial_flip=bool(ornt[axis, 1] < 0),
    )


def prepare_tree(raw: Path, settings: Settings) -> tuple[list[BenchCase], float | None]:
    """Generate the raw tree, or reuse one a previous run wrote with the same settings.

    Returns
    -------
    cases, seconds
        The cases and the generation time (None when the tree was reused).
    """
    marker = raw / TREE_MARKER
    if marker.is_file():
        saved = json.loads(marker.read_text(encoding="utf-8"))
        if saved.get("settings") == settings.tree_key() and all(
            os.path.isfile(c["image"]) and os.path.isfile(c["label"]) for c in saved["cases"]
        ):
            return [describe_case(**c) for c in saved["cases"]], None
    if raw.exists():
        shutil.rmtree(raw)
    seconds, written = time_call(
        lambda: make_raw_tree(
            raw,
            n_cases=settings.n_cases,
            shape=settings.shape,
            n_slices=settings.slices,
            seed=settings.seed,
        )
    )
    listed = [
        {
            "case_id": c.case_id,
            "source": c.source,
            "variant": c.variant,
            "image": os.fspath(c.image_path),
            "label": os.fspath(c.label_path),
        }
        for c in written
    ]
    write_json(marker, {"settings": settings.tree_key(), "cases": listed})
    return [describe_case(**c) for c in listed], seconds


def read_through(paths: Sequence[str]) -> None:
    """Read every file once so that all contenders start from the page cache."""
    for path in paths:
        with open(path, "rb") as fh:
            while fh.read(1 << 24):
                pass


# --------------------------------------------------------------------------------------------
# 1. Ingest
# --------------------------------------------------------------------------------------------


def remove_store(store: Path) -> None:
    """Delete a store and the ingest report written next to it."""
    if store.exists():
        shutil.rmtree(store)
    report = Path(os.fspath(store) + ".ingest-report.json")
    if report.exists():
        report.unlink()


def nibabel_load_all(cases: Sequence[BenchCase]) -> float:
    """Load every image and label in full with nibabel, serially; return the seconds.

    ``np.asanyarray(nib.load(path).dataobj)``: the gzip-decoding floor of an ingest.
    """
    gc.collect()
    start = time.perf_counter()
    for case in cases:
        Contenders.volume_nibabel(case)
    return time.perf_counter() - start


def run_ingest(raw: Path, store: Path, *, workers: int, scheduler: str) -> dict[str, Any]:
    """Ingest ``raw`` into a fresh ``store`` and return its timings and byte counts.

    The dask workers that ran a task are recorded (thread ident or process id), which
    shows whether the cases were spread over the workers.

    Raises
    ------
    RuntimeError
        When a case was not ingested.
    """
    from dask.callbacks import Callback

    remove_store(store)
    gc.collect()
    worker_ids: set[Any] = set()

    def posttask(key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        worker_ids.add(worker_id)

    load = os.getloadavg()[0]
    cpu_before = os.times()
    with Callback(posttask=posttask):
        wall, report = time_call(
            lambda: ctspine_zarr.ingest(
                raw, store, workers=workers, scheduler=scheduler, progress=False
            )
        )
    cpu_after = os.times()
    bad = [o for o in report.outcomes if o.status != "ingested"]
    if bad:
        raise RuntimeError(f"ingest {scheduler}/{workers}: " + "; ".join(o.problem for o in bad))
    # this process's threads; a process pool's workers are not counted (still alive)
    cpu = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    return {
        "scheduler": scheduler,
        "workers": workers,
        "wall_s": wall,
        "report_s": report.seconds,
        "sum_case_s": sum(o.seconds for o in report.outcomes),
        "workers_used": len(worker_ids),
        "cpu_s": cpu if scheduler != "processes" or workers == 1 else None,
        "load_1min_at_start": round(load, 2),
        "bytes_in": sum(o.bytes_in for o in report.outcomes),
        "bytes_out_reported": sum(o.bytes_out for o in report.outcomes),
        "store_bytes": dir_bytes(store),
        "n_slices": sum(o.n_slices for o in report.outcomes),
        "case_s": {o.case_id: o.seconds for o in report.outcomes},
    }


def measure_ingest(
    raw: Path, stores: Path, cases: Sequence[BenchCase], settings: Settings
) -> tuple[list[dict[str, Any]], Path]:
    """Run every (scheduler, workers) ingest into a fresh store, each after a nibabel load.

    The nibabel serial load of all files runs right before each ingest, so that every ratio
    compares two measurements taken under the same load of the machine. With
    ``settings.ingest_repeats`` > 1 the configurations run in interleaved rounds.

    Returns
    -------
    runs, store
        One dict per configuration: its median run by wall time (the faster of the middle
        two for an even count), with the adjacent nibabel time under ``nibabel_s`` and every
        run's wall time under ``wall_all_s``; and the store of the first run, kept for reads.
    """
    keep = stores / "store.zarr"
    remove_store(keep)
    configs = [(scheduler, workers) for scheduler in SCHEDULERS for workers in WORKER_COUNTS]
    results: dict[tuple[str, int], list[dict[str, Any]]] = {c: [] for c in configs}
    for _ in range(settings.ingest_repeats):
        for scheduler, workers in configs:
            store = stores / f"ingest-{scheduler}-{workers}.zarr"
            nibabel_s = nibabel_load_all(cases)
            result = run_ingest(raw, store, workers=workers, scheduler=scheduler)
            result["nibabel_s"] = nibabel_s
            results[scheduler, workers].append(result)
            print(
                f"ingest {scheduler}/{workers}: {result['wall_s']:.1f} s "
                f"(nibabel load before it: {nibabel_s:.1f} s)",
                file=sys.stderr,
            )
            if not keep.exists():
                store.rename(keep)
            remove_store(store)
    runs: list[dict[str, Any]] = []
    for config in configs:
        ordered = sorted(results[config], key=lambda r: r["wall_s"])
        median = dict(ordered[(len(ordered) - 1) // 2])
        median["wall_all_s"] = [r["wall_s"] for r in results[config]]
        runs.append(median)
    return runs, keep


# --------------------------------------------------------------------------------------------
# 2. Bytes
# --------------------------------------------------------------------------------------------


def store_breakdown(store: Path) -> dict[str, int]:
    """Return the store's bytes on disk by part: image, label, other case files, root."""
    parts = {"image": 0, "label": 0, "case_other": 0, "root": 0}
    for dirpath, _, files in os.walk(store):
        for name in files:
            full = Path(dirpath, name)
            rel = full.relative_to(store).parts
            if rel[0] == "cases" and len(rel) >= 4 and rel[2] in ("image", "label"):
                key = rel[2]
            elif rel[0] == "cases" and len(rel) >= 3:
                key = "case_other"
            else:
                key = "root"
            parts[key] += full.stat().st_size
    return parts


# --------------------------------------------------------------------------------------------
# 3. Reads
# --------------------------------------------------------------------------------------------


class Contenders:
    """Open everything once: the catalogue, the zarr arrays and the NIfTI files."""

    def __init__(self, store: Path, cases: Sequence[BenchCase]) -> None:
        self.ds = ctspine_zarr.open(store)
        self.arrays: dict[str, tuple[Any, Any]] = {}
        for case in cases:
            # open the case group by path: the root's consolidated metadata need not list it
            group = zarr.open_group(store, path=f"cases/{case.case_id}", mode="r")
            self.arrays[case.case_id] = (group["image"], group["label"])
        self.nifti: dict[str, tuple[SpatialImage, SpatialImage]] = {
            case.case_id: (
                load_nifti(case.image_path, keep_file_open=True),
                load_nifti(case.label_path, keep_file_open=True),
            )
            for case in cases
        }

    def build_gzip_indexes(self) -> float:
        """Read every kept-open file in full once, so indexed_gzip's seek index is built."""
        start = time.perf_counter()
        for image, label in self.nifti.values():
            np.asanyarray(image.dataobj)
            np.asanyarray(label.dataobj)
        return time.perf_counter() - start

    def gzip_file_type(self) -> str:
        """Name the file object class nibabel reads through (``IndexedGzipFile`` or not)."""
        image, _ = next(iter(self.nifti.values()))
        opener = getattr(image.dataobj, "_opener", None)
        fobj = getattr(opener, "fobj", None)
        return type(fobj).__name__ if fobj is not None else "unknown (no persistent opener)"

    def close(self) -> None:
        """Close the kept-open NIfTI files."""
        for pair in self.nifti.values():
            for img in pair:
                opener = getattr(img.dataobj, "_opener", None)
                if opener is not None:
                    opener.close_if_mine()
        self.nifti.clear()

    # -- slice readers: each reads image and label of store slice z of one case --------------

    def accessor_values(self, case: BenchCase, z: int) -> object:
        """``ds.ctspine.slice(case, z)``, then ``.image.values`` and ``.label.values``."""
        s = self.ds.ctspine.slice(case.case_id, z)
        return s.image.values, s.label.values

    def accessor_compute(self, case: BenchCase, z: int) -> object:
        """``ds.ctspine.slice(case, z).compute()`` (one dask graph for both arrays)."""
        return self.ds.ctspine.slice(case.case_id, z).compute()

    def zarr_direct(self, case: BenchCase, z: int) -> object:
        """``image[z]`` and ``label[z]`` on zarr arrays opened once."""
        image, label = self.arrays[case.case_id]
        return image[z], label[z]

    def nibabel_warm(self, case: BenchCase, z: int) -> object:
        """The same anatomical slice from the kept-open files (seek index built)."""
        image, label = self.nifti[case.case_id]
        index = case.axial_index(z)
        return image.dataobj[index], label.dataobj[index]

    def nibabel_third_axis(self, case: BenchCase, z: int) -> object:
        """``dataobj[..., k]`` from the kept-open files, ``k`` spread like ``z``."""
        image, label = self.nifti[case.case_id]
        index = case.third_axis_index(z)
        return image.dataobj[index], label.dataobj[index]

    @staticmethod
    def nibabel_first_touch(case: BenchCase, z: int) -> object:
        """Open both files afresh (no seek index yet) and read the same anatomical slice."""
        index = case.axial_index(z)
        image = load_nifti(case.image_path)
        label = load_nifti(case.label_path)
        return image.dataobj[index], label.dataobj[index]

    # -- whole-volume readers -----------------------------------------------------------------

    def volume_accessor(self, case: BenchCase, _: int = 0) -> object:
        """``ds.ctspine.volume(case)``, then ``.image.values`` and ``.label.values``."""
        vol = self.ds.ctspine.volume(case.case_id)
        return vol.image.values, vol.label.values

    def volume_zarr(self, case: BenchCase, _: int = 0) -> object:
        """``image[:]`` and ``label[:]`` on zarr arrays opened once."""
        image, label = self.arrays[case.case_id]
        return image[:], label[:]

    @staticmethod
    def volume_nibabel(case: BenchCase, _: int = 0) -> object:
        """``np.asanyarray(nib.load(p).dataobj)`` of image and label (the gzip floor)."""
        return (
            np.asanyarray(load_nifti(case.image_path).dataobj),
            np.asanyarray(load_nifti(case.label_path).dataobj),
        )


def check_mapping(contenders: Contenders, cases: Sequence[BenchCase]) -> dict[str, bool]:
    """Check that nibabel's mapped slice holds the store's slice (sorted values compared)."""
    result = {}
    for case in cases:
        z = case.n_z // 3
        ours = contenders.zarr_direct(case, z)
        theirs = contenders.nibabel_warm(case, z)
        assert isinstance(ours, tuple) and isinstance(theirs, tuple)
        result[case.case_id] = all(
            np.array_equal(
                np.sort(np.asarray(a, dtype=np.float64), axis=None),
                np.sort(np.asarray(b, dtype=np.float64), axis=None),
            )
            for a, b in zip(ours, theirs, strict=True)
        )
    return result


def random_pairs(
    cases: Sequence[BenchCase], n: int, rng: np.random.Generator
) -> list[tuple[BenchCase, int]]:
    """Draw ``n`` ``(case, z)`` pairs: a case uniformly, then a slice uniformly within it."""
    picks = rng.integers(0, len(cases), size=n)
    return [(cases[int(i)], int(rng.integers(0, cases[int(i)].n_z))) for i in picks]


def time_interleaved(
    readers: dict[str, Reader],
    pairs: Sequence[tuple[BenchCase, int]],
    warmup: Sequence[tuple[BenchCase, int]] = (),
    *,
    own_pairs: dict[str, Sequence[tuple[BenchCase, int]]] | None = None,
) -> dict[str, list[float]]:
    """Time every reader on every pair; the order of readers rotates from pair to pair.

    Interleaving spreads the load of other jobs on the machine over all contenders.
    Warm-up pairs run first for every reader and are not recorded.

    Parameters
    ----------
    readers
        ``{name: reader(case, z)}``.
    pairs
        The ``(case, z)`` pairs every reader reads, in this order.
    warmup
        Pairs read first by every reader, not recorded.
    own_pairs
        Readers that read pairs of their own instead (as many as ``pairs``).

    Returns
    -------
    dict
        Seconds per read, ``{name: [seconds, ...]}`` in pair order.
    """
    names = list(readers)
    own = own_pairs or {}
    for name, theirs in own.items():
        if len(theirs) != len(pairs):
            raise ValueError(f"{name}: {len(theirs)} own pairs, expected {len(pairs)}")
    for case, z in warmup:
        for name in names:
            readers[name](case, z)
    gc.collect()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for i, pair in enumerate(pairs):
        for j in range(len(names)):
            name = names[(i + j) % len(names)]
            case, z = own[name][i] if name in own else pair
            start = time.perf_counter()
            readers[name](case, z)
            samples[name].append(time.perf_counter() - start)
    return samples


def profile_accessor(
    contenders: Contenders, pairs: Sequence[tuple[BenchCase, int]], path: Path
) -> Path:
    """Profile ``accessor_values`` over ``pairs`` with pyinstrument; write the text report."""
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0002)
    profiler.start()
    for case, z in pairs:
        contenders.accessor_values(case, z)
    profiler.stop()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(profiler.output_text(unicode=False, color=False), encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def have_indexed_gzip() -> bool:
    """Return nibabel's ``HAVE_INDEXED_GZIP`` (``nibabel.openers`` or ``nibabel._compression``)."""
    from nibabel import openers

    flag = getattr(openers, "HAVE_INDEXED_GZIP", None)
    if flag is None:
        from nibabel import _compression

        flag = getattr(_compression, "HAVE_INDEXED_GZIP", False)
    return bool(flag)


SLICE_LABELS = {
    "nibabel_warm": "nibabel + indexed_gzip, files kept open, index built (anchor)",
    "nibabel_third_axis": "nibabel, same but `dataobj[..., k]` (file's 3rd axis)",
    "nibabel_first_touch": "nibabel, fresh `nib.load` per read (first touch)",
    "accessor_values": "ours: `ds.ctspine.slice` + `.image.values` + `.label.values`",
    "accessor_compute": "ours: `ds.ctspine.slice(...).compute()`",
    "zarr_direct": "ours: zarr `image[z]`, `label[z]` (arrays opened once)",
}

VARIANT_COLUMNS = ("accessor_values", "zarr_direct", "nibabel_warm", "nibabel_third_axis")

VOLUME_LABELS = {
    "volume_nibabel": "nibabel `np.asanyarray(nib.load(p).dataobj)` x2 (anchor)",
    "volume_accessor": "ours: `ds.ctspine.volume` + `.image.values` + `.label.values`",
    "volume_zarr": "ours: zarr `image[:]`, `label[:]`",
}


def bytes_table(cases: Sequence[BenchCase], parts: dict[str, int], total: int) -> tuple[str, dict]:
    """Return the bytes table and its numbers."""
    nii_image = sum(c.nii_bytes[0] for c in cases)
    nii_label = sum(c.nii_bytes[1] for c in cases)
    nii_total = nii_image + nii_label
    rows: list[tuple[str, str, str, float | None]] = [
        (
            "image",
            fmt_bytes(nii_image),
            fmt_bytes(parts["image"]),
            ratio(parts["image"], nii_image),
        ),
        (
            "label",
            fmt_bytes(nii_label),
            fmt_bytes(parts["label"]),
            ratio(parts["label"], nii_label),
        ),
        (
            "case metadata (zarr.json, slice index, NIfTI headers)",
            "-",
            fmt_bytes(parts["case_other"]),
            None,
        ),
        ("root (catalogue, consolidated metadata)", "-", fmt_bytes(parts["root"]), None),
        ("**total**", fmt_bytes(nii_total), fmt_bytes(total), ratio(total, nii_total)),
    ]
    table = markdown_table(
        ["part", ".nii.gz", "store", "store / .nii.gz"],
        [[*r[:3], fmt_ratio(r[3], 3)] for r in rows],
    )
    numbers = {
        "nii_gz": {"image": nii_image, "label": nii_label, "total": nii_total},
        "store": {**parts, "total": total},
        "ratio": {
            "image": ratio(parts["image"], nii_image),
            "label": ratio(parts["label"], nii_label),
            "total": ratio(total, nii_total),
        },
    }
    return table, numbers


def slice_table(summaries: dict[str, Summary]) -> str:
    """Return the slice latency table, ratios against the warm nibabel anchor."""
    anchor = summaries["nibabel_warm"]
    rows = []
    for key, label in SLICE_LABELS.items():
        if key not in summaries:
            continue
        s = summaries[key]
        rows.append(
            [
                label,
                str(s.n),
                fmt_seconds(s.p50),
                fmt_seconds(s.p95),
                fmt_ratio(ratio(anchor.p50, s.p50)),
                fmt_ratio(ratio(anchor.p95, s.p95)),
            ]
        )
    return markdown_table(
        [
            "slice read (image + label)",
            "n",
            "p50",
            "p95",
            "nibabel / this p50",
            "nibabel / this p95",
        ],
        rows,
    )


def ingest_table(runs: list[dict[str, Any]], bytes_in: int) -> str:
    """Return the ingest table; each run against the nibabel load measured right before it."""
    one = {r["scheduler"]: r["wall_s"] for r in runs if r["workers"] == 1}
    anchor = statistics.median(r["nibabel_s"] for r in runs)
    rows = [
        [
            "nibabel serial full load of every image + label (anchor, median)",
            fmt_seconds(anchor),
            f"{bytes_in / anchor / 2**20:.1f}",
            "",
            "1.00x",
            "",
            "",
        ]
    ]
    for r in runs:
        path = "sync" if r["workers"] == 1 else r["scheduler"]
        speedup = ratio(one.get(r["scheduler"]), r["wall_s"]) if r["workers"] > 1 else None
        rows.append(
            [
                f'ours: ingest(workers={r["workers"]}, scheduler="{r["scheduler"]}") '
                f"[{path} scheduler ran it]",
                fmt_seconds(r["wall_s"]),
                f"{bytes_in / r['wall_s'] / 2**20:.1f}",
                fmt_seconds(r["nibabel_s"]),
                fmt_ratio(ratio(r["wall_s"], r["nibabel_s"])),
                fmt_ratio(speedup) if speedup is not None else "",
                f"{r['workers_used']} / {r['load_1min_at_start']:.1f}",
            ]
        )
    return markdown_table(
        [
            "ingest (all cases)",
            "wall",
            ".nii.gz MiB/s",
            "nibabel load just before",
            "this / nibabel",
            "speedup vs 1 worker",
            "workers used / load",
        ],
        rows,
    )


def volume_table(per_case: dict[str, dict[str, float]]) -> tuple[str, dict[str, Any]]:
    """Return the whole-volume table (median over cases of per-case medians) and numbers."""
    medians = {k: statistics.median(v.values()) for k, v in per_case.items()}
    totals = {k: sum(v.values()) for k, v in per_case.items()}
    anchor = medians["volume_nibabel"]
    rows = [
        [
            label,
            fmt_seconds(medians[key]),
            fmt_seconds(totals[key]),
            fmt_ratio(ratio(anchor, medians[key])),
        ]
        for key, label in VOLUME_LABELS.items()
    ]
    table = markdown_table(
        ["whole volume (image + label)", "median per case", "sum over cases", "nibabel / this"],
        rows,
    )
    return table, {"median_per_case_s": medians, "sum_s": totals, "per_case_s": per_case}


def verdict(ok: bool) -> str:
    """Return ``PASS`` or ``MISS``."""
    return "PASS" if ok else "MISS"


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> tuple[Settings, argparse.Namespace]:
    """Parse the command line into settings and the remaining options."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.ingest_read",
        description="Benchmark ctspine_zarr ingest and reads against nibabel on .nii.gz files.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="3 cases of 60-100 slices, fewer reads (CI smoke)"
    )
    parser.add_argument("--cases", type=int, help="number of cases (default 6, quick 3)")
    parser.add_argument(
        "--slices",
        type=int,
        nargs=2,
        metavar=("MIN", "MAX"),
        help="slices per case (default 100 300, quick 60 100)",
    )
    parser.add_argument("--reads", type=int, help="random slice reads (default 200, quick 60)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the tree and the pairs")
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    parser.add_argument(
        "--workdir",
        type=Path,
        help="keep the raw tree and store here and reuse the tree when its settings match "
        "(default: a temporary directory, removed at the end)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="OUT.txt",
        help="also profile the accessor slice reads with pyinstrument, text report here",
    )
    args = parser.parse_args(argv)
    quick = bool(args.quick)
    n_cases = args.cases if args.cases is not None else (3 if quick else 6)
    if n_cases < 1:
        parser.error("--cases must be >= 1")
    slices = tuple(args.slices) if args.slices else ((60, 100) if quick else (100, 300))
    reads = args.reads if args.reads is not None else (60 if quick else 200)
    settings = Settings(
        n_cases=n_cases,
        slices=(int(slices[0]), int(slices[1])),
        shape=(512, 512),
        seed=args.seed,
        reads=reads,
        warmup=5 if quick else 10,
        first_touch_reads=min(reads, 10 if quick else 30),
        volume_repeats=1 if quick else 3,
        ingest_repeats=1,
        quick=quick,
    )
    return settings, args


def measure_slices(
    contenders: Contenders, cases: Sequence[BenchCase], settings: Settings
) -> dict[str, Any]:
    """Time random image + label slice reads of every contender (see the module docstring)."""
    rng = np.random.default_rng(settings.seed + 1)
    warm_pairs = random_pairs(cases, settings.warmup, rng)
    pairs = random_pairs(cases, settings.reads, rng)
    # the file's-3rd-axis reader draws its own pairs: reading the very slice the anatomical
    # reader just read would hit indexed_gzip's buffer and time a cache hit
    third_pairs = random_pairs(cases, settings.reads, np.random.default_rng(settings.seed + 2))
    index_s = contenders.build_gzip_indexes()
    mapping_ok = check_mapping(contenders, cases)
    print(f"slice reads: {len(pairs)} pairs x 5 contenders", file=sys.stderr)
    samples = time_interleaved(
        {
            "accessor_values": contenders.accessor_values,
            "accessor_compute": contenders.accessor_compute,
            "zarr_direct": contenders.zarr_direct,
            "nibabel_warm": contenders.nibabel_warm,
            "nibabel_third_axis": contenders.nibabel_third_axis,
        },
        pairs,
        warm_pairs,
        own_pairs={"nibabel_third_axis": third_pairs},
    )
    touch_pairs = pairs[: settings.first_touch_reads]
    samples.update(
        time_interleaved({"nibabel_first_touch": contenders.nibabel_first_touch}, touch_pairs)
    )
    by_variant: dict[str, dict[str, float]] = {}
    for key in ("accessor_values", "zarr_direct", "nibabel_warm", "nibabel_third_axis"):
        grouped: dict[str, list[float]] = {}
        read = third_pairs if key == "nibabel_third_axis" else pairs
        for (case, _), t in zip(read, samples[key], strict=True):
            grouped.setdefault(case.variant, []).append(t)
        for variant, ts in grouped.items():
            by_variant.setdefault(variant, {})[key] = statistics.median(ts)
    return {
        "summaries": {k: summarize(v) for k, v in samples.items()},
        "samples": samples,
        "pairs": pairs,
        "first_touch_reads": len(touch_pairs),
        "p50_by_variant": by_variant,
        "mapping_ok": mapping_ok,
        "gzip_index_build_s": index_s,
        "gzip_file_type": contenders.gzip_file_type(),
    }


def measure_volumes(
    contenders: Contenders, cases: Sequence[BenchCase], settings: Settings
) -> dict[str, dict[str, float]]:
    """Time whole-volume reads; return ``{reader: {case_id: median seconds}}``."""
    print(f"whole volumes: {len(cases)} cases x {settings.volume_repeats}", file=sys.stderr)
    order = [c for _ in range(settings.volume_repeats) for c in cases]
    samples = time_interleaved(
        {
            "volume_nibabel": contenders.volume_nibabel,
            "volume_accessor": contenders.volume_accessor,
            "volume_zarr": contenders.volume_zarr,
        },
        [(c, 0) for c in order],
    )
    per_case: dict[str, dict[str, float]] = {}
    for key, ts in samples.items():
        grouped: dict[str, list[float]] = {}
        for case, t in zip(order, ts, strict=True):
            grouped.setdefault(case.case_id, []).append(t)
        per_case[key] = {cid: statistics.median(v) for cid, v in grouped.items()}
    return per_case


def goals_lines(
    runs: list[dict[str, Any]], bytes_ratio: float | None, slices: dict[str, Any], cpus: int
) -> tuple[list[str], dict[str, Any]]:
    """Return the goal verdict lines and their numbers."""
    one = {r["scheduler"]: r for r in runs if r["workers"] == 1}
    two = {r["scheduler"]: r for r in runs if r["workers"] == 2}
    winner = min(two, key=lambda s: two[s]["wall_s"])
    speedups = {s: ratio(one[s]["wall_s"], two[s]["wall_s"]) for s in SCHEDULERS}
    ingest_ratios = {s: ratio(one[s]["wall_s"], one[s]["nibabel_s"]) for s in SCHEDULERS}
    summaries = slices["summaries"]
    slice_ratio = ratio(summaries["nibabel_warm"].p50, summaries["accessor_values"].p50)
    floor_ratio = ratio(summaries["accessor_values"].p50, summaries["zarr_direct"].p50)
    lines = [
        f"- bytes: store / .nii.gz = {fmt_ratio(bytes_ratio, 3)} (goal <= "
        f"{GOAL_BYTES_RATIO}x): {verdict(bytes_ratio is not None and bytes_ratio <= 0.8)}",
    ]
    for s in SCHEDULERS:
        r, sp = ingest_ratios[s], speedups[s]
        lines.append(
            f"- ingest {s}: 1 worker / nibabel load = {fmt_ratio(r)} (goal <= "
            f"{GOAL_INGEST_RATIO}x): {verdict(r is not None and r <= GOAL_INGEST_RATIO)}; "
            f"2 vs 1 worker = {fmt_ratio(sp)} (goal >= {GOAL_SPEEDUP}x): "
            f"{verdict(sp is not None and sp >= GOAL_SPEEDUP)}; 2-worker run used "
            f"{two[s]['workers_used']} worker(s)"
        )
    lines += [
        f"- faster scheduler with 2 workers: {winner} ({two[winner]['wall_s']:.1f} s vs "
        f"{max(r['wall_s'] for r in two.values()):.1f} s)",
        f"- slice read p50: nibabel warm / ours accessor = {fmt_ratio(slice_ratio)}; "
        f"ours accessor / zarr floor = {fmt_ratio(floor_ratio)}",
    ]
    busy = [r for r in two.values() if r["load_1min_at_start"] >= cpus]
    if busy:
        lines.append(
            f"- caution: the 1-min load average was >= {cpus} (the CPU count) when "
            f"{len(busy)} of the 2-worker ingests started: other jobs held the cores, so "
            "the 2-worker speedups say little about what 2 free cores give"
        )
    numbers = {
        "bytes_ratio": {"value": bytes_ratio, "goal": f"<= {GOAL_BYTES_RATIO}"},
        "ingest_1_worker_over_nibabel": {"value": ingest_ratios, "goal": f"<= {GOAL_INGEST_RATIO}"},
        "speedup_2_over_1_worker": {"value": speedups, "goal": f">= {GOAL_SPEEDUP}"},
        "faster_scheduler_2_workers": winner,
        "slice_p50_nibabel_over_accessor": slice_ratio,
        "slice_p50_accessor_over_zarr": floor_ratio,
    }
    return lines, numbers


def run(settings: Settings, workdir: Path, profile: Path | None) -> tuple[dict[str, Any], str]:
    """Run every measurement in ``workdir``; return the JSON payload and the printed text."""
    machine = machine_info()
    code = git_state(Path(ctspine_zarr.__file__).resolve().parent)
    raw = workdir / "raw"
    stores = workdir / "stores"
    stores.mkdir(parents=True, exist_ok=True)

    cases, gen_s = prepare_tree(raw, settings)
    read_through([p for c in cases for p in (c.image_path, c.label_path)])
    n_slices = sum(c.n_z for c in cases)
    print(
        f"tree: {len(cases)} cases, {n_slices} slices "
        + (f"generated in {gen_s:.1f} s" if gen_s is not None else "reused"),
        file=sys.stderr,
    )

    runs, store = measure_ingest(raw, stores, cases, settings)
    parts = store_breakdown(store)
    bytes_md, bytes_numbers = bytes_table(cases, parts, dir_bytes(store))
    store_sizes = {f"{r['scheduler']}/{r['workers']}": r["store_bytes"] for r in runs}

    contenders = Contenders(store, cases)
    try:
        slices = measure_slices(contenders, cases, settings)
        per_case = measure_volumes(contenders, cases, settings)
        profile_path = None
        if profile is not None:
            profile_path = profile_accessor(contenders, slices["pairs"][:100], profile)
    finally:
        contenders.close()
    volume_md, volume_numbers = volume_table(per_case)
    goals, goal_numbers = goals_lines(
        runs, bytes_numbers["ratio"]["total"], slices, int(machine["cpu_count"] or 1)
    )
    load_end = machine_info()["load_average"]

    mapping_ok = slices["mapping_ok"]
    out = [
        "# ctspine_zarr ingest + read benchmark",
        "",
        *machine_lines(machine),
        f"code: commit {str(code['commit'])[:10]}, {len(code['changed'] or [])} changed or "
        "new files in the package directory (it is being edited; see JSON 'code')",
        f"nibabel HAVE_INDEXED_GZIP: {have_indexed_gzip()} (kept-open files read through "
        f"{slices['gzip_file_type']}; building the seek indexes of all files took "
        f"{slices['gzip_index_build_s']:.2f} s)",
        NOISE_NOTE,
        "",
        f"data: {len(cases)} synthetic cases, {settings.shape[0]}x{settings.shape[1]} in-plane, "
        f"{settings.slices[0]}-{settings.slices[1]} slices per case ({n_slices} in all), "
        f"seed {settings.seed}; variants: {', '.join(c.variant for c in cases)}",
        "",
        "## 1. Bytes on disk",
        "",
        bytes_md,
        "",
    ]
    if len(set(store_sizes.values())) != 1:
        out += [f"note: the ingests wrote stores of different sizes (bytes): {store_sizes}", ""]
    out += [
        "## 2. Random axial slice read (image + label)",
        "",
        f"{settings.reads} random (case, z) pairs (case uniform, then z uniform in the case), "
        f"the same pairs for every contender, {settings.warmup} warm-up pairs excluded, "
        "contenders interleaved. nibabel reads the same anatomical slice as the store "
        "(store z mapped to the file axis and index by io_orientation; checked per case: "
        f"{'all match' if all(mapping_ok.values()) else f'MISMATCH {mapping_ok}'}). The "
        "'3rd axis' row reads `dataobj[..., k]` of its own random pairs from the same "
        "distribution (k spread over the file's third axis like z; the same pairs would "
        "time indexed_gzip buffer hits right after the anatomical read). First touch: the "
        f"first {slices['first_touch_reads']} pairs only.",
        "",
        slice_table(slices["summaries"]),
        "",
        "p50 by header variant (the sagittal file stores axial planes across its 2nd axis):",
        "",
        markdown_table(
            ["variant", "ours accessor", "ours zarr", "nibabel warm", "nibabel 3rd axis"],
            [
                [v, *(fmt_seconds(d.get(k)) for k in VARIANT_COLUMNS)]
                for v, d in sorted(slices["p50_by_variant"].items())
            ],
        ),
        "",
        "## 3. Ingest",
        "",
        "One fresh store per run, each right after a nibabel serial full load of all files "
        "(its own anchor, so both see the same machine load). workers=1 runs the sync "
        "scheduler whatever the scheduler argument: the two workers=1 rows run the same code "
        "and their gap is noise. 'workers used' counts the dask workers that ran a case; "
        "'load' is the 1-min load average when the ingest started.",
        "",
        ingest_table(runs, runs[0]["bytes_in"]),
        "",
        "## 4. Whole-volume read (image + label), per case",
        "",
        volume_md,
        "",
        "## Goals",
        "",
        *goals,
    ]
    if profile_path is not None:
        out.append(f"- pyinstrument profile of the accessor slice reads: {profile_path}")
    out += ["", f"load average (1/5/15 min) at the end: {load_end}"]
    text = "\n".join(out)

    payload = {
        "benchmark": "ingest_read",
        "settings": asdict(settings),
        "machine": machine,
        "code": code,
        "load_average_end": load_end,
        "have_indexed_gzip": have_indexed_gzip(),
        "nibabel_file_type": slices["gzip_file_type"],
        "gzip_index_build_s": slices["gzip_index_build_s"],
        "tree_generation_s": gen_s,
        "cases": [{**asdict(c), "n_z": c.n_z, "nii_bytes": list(c.nii_bytes)} for c in cases],
        "bytes": bytes_numbers,
        "store_bytes_per_ingest": store_sizes,
        "slice_read": {
            "pairing": "same anatomical slice (store z mapped through io_orientation); "
            "nibabel_third_axis reads its own random pairs",
            "mapping_check": mapping_ok,
            "summary_s": {k: s.to_json() for k, s in slices["summaries"].items()},
            "p50_by_variant_s": slices["p50_by_variant"],
            "samples_s": slices["samples"],
            "pairs": [[c.case_id, z] for c, z in slices["pairs"]],
        },
        "ingest": {"runs": runs},
        "volume_read": volume_numbers,
        "goals": goal_numbers,
        "notes": NOISE_NOTE,
        "report_markdown": text,
    }
    return payload, text


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the tables; write JSON when asked."""
    settings, args = parse_args(argv)
    if args.workdir is not None:
        workdir = args.workdir.resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        cleanup = False
    else:
        workdir = Path(tempfile.mkdtemp(prefix="ctspine-bench-"))
        cleanup = True
    try:
        payload, text = run(settings, workdir, args.profile)
    finally:
        if cleanup:
            shutil.rmtree(workdir, ignore_errors=True)
    print(text)
    if args.json is not None:
        path = write_json(args.json, payload)
        print(f"\nJSON: {path.resolve()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
