"""The readers every read benchmark compares: our accessor, zarr, nibabel kept open.

nibabel reads the same anatomical slice as the store: the store's canonical ``z`` is
mapped to the file's voxel axis through ``io_orientation(affine)`` and checked per case.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from nibabel.spatialimages import SpatialImage

import ctspine_zarr
from benchmarks.study.tree import BenchCase, load_nifti, load_pair

Reader = Callable[["BenchCase", int], object]


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
        return load_pair(case)


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


def per_case_medians(
    order: Sequence[BenchCase], samples: dict[str, list[float]]
) -> dict[str, dict[str, float]]:
    """``{contender: {case_id: median seconds}}`` of reads timed in ``order``."""
    per_case: dict[str, dict[str, float]] = {}
    for key, ts in samples.items():
        grouped: dict[str, list[float]] = {}
        for case, t in zip(order, ts, strict=True):
            grouped.setdefault(case.case_id, []).append(t)
        per_case[key] = {cid: statistics.median(v) for cid, v in grouped.items()}
    return per_case


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


def have_indexed_gzip() -> bool:
    """Return nibabel's ``HAVE_INDEXED_GZIP`` (``nibabel.openers`` or ``nibabel._compression``)."""
    from nibabel import openers

    flag = getattr(openers, "HAVE_INDEXED_GZIP", None)
    if flag is None:
        from nibabel import _compression

        flag = getattr(_compression, "HAVE_INDEXED_GZIP", False)
    return bool(flag)
