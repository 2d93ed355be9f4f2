"""The generated raw tree of the benchmarks, its cases, and timed ingests of it.

The tree is CTSpine1K-like (``ctspine_zarr.testing.synthetic.make_raw_tree``) and reused from a
work directory when its settings match. Every ingest is timed right after nibabel's serial
load of the same files, its adjacent anchor.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import EllipsisType
from typing import Any, cast

import nibabel as nib
import numpy as np
from nibabel.orientations import io_orientation
from nibabel.spatialimages import SpatialImage

import ctspine_zarr
from benchmarks.common import (
    dir_bytes,
    time_call,
    write_json,
)
from ctspine_zarr.testing.synthetic import make_raw_tree

TREE_MARKER = "benchmark-tree.json"
SCHEDULERS = ("processes", "threads")
WORKER_COUNTS = (1, 2)


Index = tuple[int | slice | EllipsisType, ...]


def load_nifti(path: str, *, keep_file_open: bool = False) -> SpatialImage:
    """``nib.load`` typed as the spatial image it returns for a NIfTI file."""
    return cast(SpatialImage, nib.load(path, keep_file_open=keep_file_open))


def load_pair(case: BenchCase) -> tuple[np.ndarray, np.ndarray]:
    """``np.asanyarray(nib.load(p).dataobj)`` of image and label (the gzip floor)."""
    return (
        np.asanyarray(load_nifti(case.image_path).dataobj),
        np.asanyarray(load_nifti(case.label_path).dataobj),
    )


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
        As written by :func:`ctspine_zarr.testing.synthetic.make_raw_tree`.
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
        load_pair(case)
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
