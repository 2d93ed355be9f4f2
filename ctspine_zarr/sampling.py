"""Training datasets as plain sequences of numpy arrays; no PyTorch needed.

:class:`SliceSequence`, :class:`VolumeSequence` and :class:`PatchSequence` index a ctspine store
through its catalogue and return one ``dict`` per item with the Hugging Face CTSpine1K loader's
field names plus the geometry::

    image         float32 HU, [Y, X] (slices) or [Z, Y, X] (volumes, patches)
    segmentation  int64 VerSe labels, same shape
    patient_id    case id (str)
    index         position of the case in the dataset's case list (int)
    slice_index   z index of the slice in its case (slices only)
    spacing       float64 [3]: voxel size (z, y, x) in mm
    affine        float64 [4, 4]: the case's canonical affine, voxel (x, y, z) -> RAS+ mm

``ctspine_zarr.torch`` wraps them as ``torch.utils.data.Dataset``.

Process safety: a sequence holds only the store location, its storage options and small index
arrays built from the catalogue at construction. Zarr arrays are opened lazily, once per
process (the cache is keyed by process id and dropped when pickled), so a forked or spawned
DataLoader worker opens its own store and never uses its parent's file handles, filesystem
objects or event loop.

Item path: a slice read is one inner chunk (one axial slice) of a shard per array, read
through :mod:`ctspine_zarr.io.slicereader`: the shard index once per process, then only the
chunk's byte range, decoded synchronously in the calling thread (no xarray, no dask, no
asyncio round trip per chunk on a local store); the requests of one batch are gathered.
"""

from __future__ import annotations

import multiprocessing.context
import operator
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.sharedctypes import RawValue
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import zarr
from zarr.abc.store import Store

from .io.slicereader import CaseReaders, Request, case_readers, read_blocks
from .io.store import case_group, open_catalogue
from .schema import CASE_DIM, SLICE_VERTEBRAE, SOURCES, SPLITS, VERTEBRA_DIM
from .vertebrae import VERTEBRA_LABELS, parse_vertebra

__all__ = [
    "PAD_IMAGE",
    "PAD_LABEL",
    "Item",
    "PatchSequence",
    "SliceSequence",
    "VolumeSequence",
    "parse_vertebra",
]

#: Value of image voxels a patch gets outside the volume (air, HU).
PAD_IMAGE: Final = -1024.0
#: Value of label voxels a patch gets outside the volume (background).
PAD_LABEL: Final = 0

#: One item: field name to numpy array, str or int.
Item = dict[str, Any]
Location = str | os.PathLike[str] | Store
Transform = Callable[[Item], Any]

_FOREGROUND_TRIES: Final = 16
_COLUMN: Final = {label: i for i, label in enumerate(VERTEBRA_LABELS)}


# --------------------------------------------------------------------------------------------
# Sequences
# --------------------------------------------------------------------------------------------


class _StoreSequence(Sequence[Item]):
    """Cases of a store selected through the catalogue; arrays opened lazily per process."""

    def __init__(
        self,
        store: Location,
        split: str | None = "train",
        *,
        source: str | Sequence[str] | None = None,
        vertebra: int | str | None = None,
        transform: Transform | None = None,
        image_dtype: npt.DTypeLike | None = np.float32,
        segmentation_dtype: npt.DTypeLike | None = np.int64,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        if split is not None and split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS} or None (all cases); got {split!r}")
        self.location: Location = store if isinstance(store, Store) else os.fspath(store)
        self.storage_options: dict[str, Any] = dict(storage_options or {})
        self.split = split
        self.vertebra: int | None = None if vertebra is None else parse_vertebra(vertebra)
        self.transform = transform
        self.image_dtype = None if image_dtype is None else np.dtype(image_dtype)
        self.segmentation_dtype = (
            None if segmentation_dtype is None else np.dtype(segmentation_dtype)
        )
        catalogue = open_catalogue(self.location, storage_options=self.storage_options)
        n_all = catalogue.sizes.get(CASE_DIM, 0)
        if n_all and list(catalogue[VERTEBRA_DIM].values) != list(VERTEBRA_LABELS):
            labels = np.asarray(VERTEBRA_LABELS, dtype=catalogue[VERTEBRA_DIM].dtype)
            absent = {"has_vertebra": False, "bbox_start": -1, "bbox_stop": -1}
            catalogue = catalogue.reindex({VERTEBRA_DIM: labels}, fill_value=absent)
        if n_all and "split" in catalogue:
            ids = np.array([str(c) for c in catalogue[CASE_DIM].values], dtype=object)
            splits = np.array([str(v) for v in catalogue["split"].values], dtype=object)
            sources = np.array([str(v) for v in catalogue["source"].values], dtype=object)
        else:
            n_all = 0
            ids = splits = sources = np.array([], dtype=object)
        keep = np.ones(n_all, dtype=bool)
        if split is not None:
            keep &= splits == split
        if source is not None:
            wanted = [source] if isinstance(source, str) else list(source)
            unknown = sorted(set(wanted) - set(SOURCES) - set(sources.tolist()))
            if unknown:
                raise ValueError(f"unknown source(s) {unknown}; sources are {list(SOURCES)}")
            keep &= np.isin(sources, wanted)
        if n_all:
            has = np.asarray(catalogue["has_vertebra"].values, dtype=bool)
        else:
            has = np.zeros((0, len(VERTEBRA_LABELS)), dtype=bool)
        if self.vertebra is not None:
            keep &= has[:, _COLUMN[self.vertebra]]
        rows = np.flatnonzero(keep)
        #: Case ids of the dataset; ``index`` of an item is a position in this tuple.
        self.case_ids: tuple[str, ...] = tuple(str(c) for c in ids[rows])
        self.case_sources: tuple[str, ...] = tuple(str(s) for s in sources[rows])
        self.case_splits: tuple[str, ...] = tuple(str(s) for s in splits[rows])

        def column(name: str, dtype: Any) -> np.ndarray:
            return np.asarray(catalogue[name].values, dtype=dtype)[rows] if n_all else np.zeros(0)

        n = len(rows)
        if n:
            self.shapes = np.stack(
                [column("n_slices", np.int64), column("n_y", np.int64), column("n_x", np.int64)], 1
            )
            self.spacings = np.stack(
                [column(f"spacing_{a}", np.float64) for a in ("z", "y", "x")], 1
            )
            self.has_vertebra = has[rows]
            self.bbox_start = np.asarray(catalogue["bbox_start"].values, dtype=np.int64)[rows]
            self.bbox_stop = np.asarray(catalogue["bbox_stop"].values, dtype=np.int64)[rows]
        else:
            self.shapes = np.zeros((0, 3), dtype=np.int64)
            self.spacings = np.zeros((0, 3), dtype=np.float64)
            self.has_vertebra = np.zeros((0, len(VERTEBRA_LABELS)), dtype=bool)
            self.bbox_start = np.zeros((0, len(VERTEBRA_LABELS), 3), dtype=np.int64)
            self.bbox_stop = np.zeros((0, len(VERTEBRA_LABELS), 3), dtype=np.int64)

    # -- per-process state -------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__.copy()

    def _group(self, case_id: str) -> zarr.Group:
        return case_group(self.location, case_id, storage_options=self.storage_options)

    def _arrays(self, case: int) -> CaseReaders:
        """The readers and affine of case number ``case``, opened once per process."""
        return case_readers(self.location, self.case_ids[case], self.storage_options)

    def _slice_vertebrae(self, cases: Sequence[int]) -> list[np.ndarray]:
        """Read the ``(z, vertebra)`` bool index of several cases (small arrays), concurrently."""

        def read(case: int) -> np.ndarray:
            array = self._group(self.case_ids[case])[SLICE_VERTEBRAE]
            assert isinstance(array, zarr.Array)
            return np.asarray(array[...], dtype=bool)

        if len(cases) <= 1:
            return [read(c) for c in cases]
        with ThreadPoolExecutor(max_workers=min(8, len(cases))) as pool:
            return list(pool.map(read, cases))

    # -- items -------------------------------------------------------------------------------

    def _index(self, i: Any) -> int:
        i = operator.index(i)
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {type(self).__name__} of length {n}")
        return i % n if n else i

    def _base(self, case: int) -> Item:
        return {
            "patient_id": self.case_ids[case],
            "index": case,
            "spacing": self.spacings[case].copy(),
            "affine": self._arrays(case).affine.copy(),
        }

    def _finish(self, item: Item, image: np.ndarray, label: np.ndarray) -> Any:
        item["image"] = image
        item["segmentation"] = label
        return item if self.transform is None else self.transform(item)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return self.getitems(range(len(self))[i])
        return self.getitems([i])[0]

    def getitems(self, indices: Iterable[Any]) -> list[Any]:
        """Return the items at ``indices``; their reads are batched (one round trip remotely)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.location!r}, split={self.split!r}, "
            f"{len(self.case_ids)} cases, {len(self)} items)"
        )


class SliceSequence(_StoreSequence):
    """One item per axial slice of the selected cases.

    Parameters
    ----------
    store
        Local path, fsspec URL or zarr store of a ctspine store.
    split
        ``"train"``, ``"validation"``, ``"test"``, ``"unassigned"``, or None for all cases.
    source
        Keep the cases of this source (or these sources).
    vertebra
        Keep the cases holding this vertebra (label ``22`` or name ``"L3"``); with
        ``foreground_only``, keep the slices holding it.
    foreground_only
        Keep only the slices holding a vertebra (from the stored ``slice_vertebrae`` index,
        read once per case at construction; masks are never read for it).
    transform
        Callable applied to each item dict, its result returned.
    image_dtype, segmentation_dtype
        Output dtypes (default float32 HU and int64); None keeps the stored dtype.
    storage_options
        fsspec options for a URL.

    Items are dicts: ``image`` [Y, X], ``segmentation`` [Y, X], ``patient_id``, ``index``,
    ``slice_index``, ``spacing`` (z, y, x) and ``affine`` (see :mod:`ctspine_zarr.sampling`).
    """

    def __init__(
        self,
        store: Location,
        split: str | None = "train",
        *,
        source: str | Sequence[str] | None = None,
        vertebra: int | str | None = None,
        foreground_only: bool = False,
        transform: Transform | None = None,
        image_dtype: npt.DTypeLike | None = np.float32,
        segmentation_dtype: npt.DTypeLike | None = np.int64,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            store,
            split,
            source=source,
            vertebra=vertebra,
            transform=transform,
            image_dtype=image_dtype,
            segmentation_dtype=segmentation_dtype,
            storage_options=storage_options,
        )
        self.foreground_only = foreground_only
        n = len(self.case_ids)
        if foreground_only:
            zs = []
            for index in self._slice_vertebrae(range(n)):
                rows = index[:, _COLUMN[self.vertebra]] if self.vertebra else index.any(axis=1)
                zs.append(np.flatnonzero(rows).astype(np.int32))
        else:
            zs = [np.arange(z, dtype=np.int32) for z in self.shapes[:, 0]]
        counts = np.array([len(z) for z in zs], dtype=np.int64)
        #: Case number (position in ``case_ids``) of each item.
        self.item_case = np.repeat(np.arange(n, dtype=np.int32), counts)
        #: Slice (z index) of each item.
        self.item_z = np.concatenate(zs) if zs else np.zeros(0, dtype=np.int32)

    def __len__(self) -> int:
        return len(self.item_z)

    def getitems(self, indices: Iterable[Any]) -> list[Any]:
        """Return the items at ``indices``; their reads are batched (one round trip remotely)."""
        picks = [self._index(i) for i in indices]
        requests: list[Request] = []
        image_dtype, label_dtype = self.image_dtype, self.segmentation_dtype
        for i in picks:
            image_reader, label_reader, _ = self._arrays(int(self.item_case[i]))
            z = int(self.item_z[i])
            requests += [
                (image_reader, z, z + 1, image_dtype),
                (label_reader, z, z + 1, label_dtype),
            ]
        blocks = read_blocks(requests)
        items = []
        for n, i in enumerate(picks):
            item = self._base(int(self.item_case[i]))
            item["slice_index"] = int(self.item_z[i])
            items.append(self._finish(item, blocks[2 * n][0], blocks[2 * n + 1][0]))
        return items


class VolumeSequence(_StoreSequence):
    """One item per case: the whole volume.

    Parameters are those of :class:`SliceSequence` without ``foreground_only``. Items hold
    ``image`` and ``segmentation`` as [Z, Y, X] (int64 labels take 8 bytes a voxel: pass
    ``segmentation_dtype=None`` to keep uint8).
    """

    def __len__(self) -> int:
        return len(self.case_ids)

    def getitems(self, indices: Iterable[Any]) -> list[Any]:
        """Return the volumes at ``indices``."""
        picks = [self._index(i) for i in indices]
        requests: list[Request] = []
        image_dtype, label_dtype = self.image_dtype, self.segmentation_dtype
        for case in picks:
            image_reader, label_reader, _ = self._arrays(case)
            n_z = image_reader.shape[0]
            requests += [(image_reader, 0, n_z, image_dtype), (label_reader, 0, n_z, label_dtype)]
        blocks = read_blocks(requests)
        return [
            self._finish(self._base(case), blocks[2 * n], blocks[2 * n + 1])
            for n, case in enumerate(picks)
        ]


class PatchSequence(_StoreSequence):
    """Random 3D patches, a fixed fraction of them forced to hold a vertebra (nnU-Net style).

    Item ``i`` of epoch ``e`` is a pure function of ``(seed, e, i)``: it draws from
    ``np.random.default_rng([seed, e, i])``. Each epoch exactly
    ``round(foreground_fraction * samples_per_epoch)`` items are foreground: the first ones of
    a permutation of the indices seeded by ``(seed, e, samples_per_epoch)``.

    A foreground item picks a case holding a vertebra (the ``vertebra`` filter, or any), one of
    its vertebrae, a slice holding it (stored ``slice_vertebrae`` index) and a point in the
    vertebra's box (catalogue ``bbox_start``/``bbox_stop``) as patch centre, the patch clipped
    to the volume. Only the patch's z range is read. When the patch is narrower in y/x than the
    box and misses the vertebra, the y/x centre is redrawn on the label slices already read
    (no further reads), so a foreground patch always holds its vertebra. Other items pick a
    case and a position uniformly.

    Along an axis where the patch is larger than the volume the volume is centred in the patch
    and padded: image with :data:`PAD_IMAGE` (-1024 HU), labels with :data:`PAD_LABEL` (0).

    Parameters
    ----------
    store, split, source, vertebra, transform, image_dtype, segmentation_dtype, storage_options
        As for :class:`SliceSequence`.
    patch_size
        ``(z, y, x)`` voxels.
    foreground_fraction
        Fraction of the items of an epoch forced to hold a vertebra.
    samples_per_epoch
        Length of the sequence.
    seed
        Seed; None draws one at construction (kept when pickled to workers).
    epoch
        First epoch; see :meth:`set_epoch`.

    Items also hold ``patch_start`` (int64 [3], z, y, x index of the patch's first voxel in
    the case, negative where padded), ``foreground`` (bool) and ``vertebra`` (the forced label,
    0 for a random patch).
    """

    def __init__(
        self,
        store: Location,
        split: str | None = "train",
        *,
        patch_size: Sequence[int],
        foreground_fraction: float = 0.33,
        samples_per_epoch: int = 1000,
        seed: int | None = None,
        epoch: int = 0,
        source: str | Sequence[str] | None = None,
        vertebra: int | str | None = None,
        transform: Transform | None = None,
        image_dtype: npt.DTypeLike | None = np.float32,
        segmentation_dtype: npt.DTypeLike | None = np.int64,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            store,
            split,
            source=source,
            vertebra=vertebra,
            transform=transform,
            image_dtype=image_dtype,
            segmentation_dtype=segmentation_dtype,
            storage_options=storage_options,
        )
        size = tuple(int(s) for s in patch_size)
        if len(size) != 3 or min(size) < 1:
            raise ValueError(f"patch_size must be 3 positive ints (z, y, x); got {patch_size!r}")
        if not 0.0 <= foreground_fraction <= 1.0:
            raise ValueError(f"foreground_fraction must lie in [0, 1]; got {foreground_fraction}")
        if samples_per_epoch < 0:
            raise ValueError(f"samples_per_epoch must be >= 0; got {samples_per_epoch}")
        if not self.case_ids and samples_per_epoch:
            raise ValueError("no case matches the filters")
        self.patch_size: tuple[int, int, int] = (size[0], size[1], size[2])
        self.foreground_fraction = float(foreground_fraction)
        self.samples_per_epoch = int(samples_per_epoch)
        self.seed = int(np.random.SeedSequence().entropy if seed is None else seed)  # type: ignore[arg-type]
        self.n_foreground = round(self.foreground_fraction * self.samples_per_epoch)
        holds = self.has_vertebra.copy()
        if self.vertebra is not None:
            holds[:] = False
            holds[:, _COLUMN[self.vertebra]] = self.has_vertebra[:, _COLUMN[self.vertebra]]
        #: Cases a foreground patch may come from, and the vertebra columns each holds.
        self.foreground_cases = np.flatnonzero(holds.any(axis=1))
        if self.n_foreground and not len(self.foreground_cases):
            raise ValueError("foreground_fraction > 0 but no selected case holds a vertebra")
        self._holds = holds
        # z indices holding each (case, vertebra column): the stored per-slice index
        self._vertebra_z: dict[tuple[int, int], np.ndarray] = {}
        cases = [int(c) for c in self.foreground_cases] if self.n_foreground else []
        for case, index in zip(cases, self._slice_vertebrae(cases), strict=True):
            for column in np.flatnonzero(holds[case]):
                self._vertebra_z[(case, int(column))] = np.flatnonzero(index[:, column]).astype(
                    np.int32
                )
        self._epoch: Any = _shared_int(epoch)
        self._plan: tuple[int, np.ndarray] | None = None

    # -- epochs ------------------------------------------------------------------------------

    @property
    def epoch(self) -> int:
        """The current epoch (shared with DataLoader workers started from this object)."""
        return int(self._epoch.value)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch; workers started from this object (fork, spawn, persistent) see it."""
        self._epoch.value = int(epoch)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_plan"] = None
        if multiprocessing.context.get_spawning_popen() is None:
            # plain pickling (not a worker being started): a shared value cannot travel
            state["_epoch"] = int(self._epoch.value)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if isinstance(self._epoch, int):
            self._epoch = _shared_int(self._epoch)

    def is_foreground(self, epoch: int | None = None) -> np.ndarray:
        """Return which items of ``epoch`` (default: the current one) are foreground."""
        epoch = self.epoch if epoch is None else int(epoch)
        if self._plan is not None and self._plan[0] == epoch:
            return self._plan[1]
        order = np.random.default_rng([self.seed, epoch, self.samples_per_epoch, 1]).permutation(
            self.samples_per_epoch
        )
        flags = np.zeros(self.samples_per_epoch, dtype=bool)
        flags[order[: self.n_foreground]] = True
        self._plan = (epoch, flags)
        return flags

    def __len__(self) -> int:
        return self.samples_per_epoch

    # -- items -------------------------------------------------------------------------------

    def getitems(self, indices: Iterable[Any]) -> list[Any]:
        """Return the patches at ``indices`` of the current epoch."""
        epoch = self.epoch
        flags = self.is_foreground(epoch)
        picks = [self._index(i) for i in indices]
        plans = [self._draw(i, epoch, bool(flags[i])) for i in picks]
        requests: list[Request] = []
        image_dtype, label_dtype = self.image_dtype, self.segmentation_dtype
        for case, _, start, _, _ in plans:
            image_reader, label_reader, _ = self._arrays(case)
            z0, z1 = _clip(start[0], self.patch_size[0], image_reader.shape[0])
            requests += [(image_reader, z0, z1, image_dtype), (label_reader, z0, z1, label_dtype)]
        blocks = read_blocks(requests)
        items = []
        for n, (case, vertebra, start, centre, rng) in enumerate(plans):
            image_slab, label_slab = blocks[2 * n], blocks[2 * n + 1]
            z_read = max(start[0], 0)  # first slice of the slabs
            if vertebra:
                start = self._hold(case, vertebra, start, centre, label_slab, z_read, rng)
            item = self._base(case)
            item["patch_start"] = np.asarray(start, dtype=np.int64)
            item["foreground"] = bool(vertebra)
            item["vertebra"] = vertebra
            shape = tuple(int(s) for s in self.shapes[case])
            image = _crop(image_slab, z_read, start, self.patch_size, shape, PAD_IMAGE)
            label = _crop(label_slab, z_read, start, self.patch_size, shape, PAD_LABEL)
            items.append(self._finish(item, image, label))
        return items

    def _draw(
        self, i: int, epoch: int, foreground: bool
    ) -> tuple[int, int, list[int], list[int], np.random.Generator]:
        """Case, vertebra (0: random patch), patch start and centre of item ``i``."""
        rng = np.random.default_rng([self.seed, epoch, i])
        if foreground:
            case = int(self.foreground_cases[rng.integers(len(self.foreground_cases))])
            columns = np.flatnonzero(self._holds[case])
            column = int(columns[rng.integers(len(columns))])
            zs = self._vertebra_z[(case, column)]
            lo, hi = self.bbox_start[case, column], self.bbox_stop[case, column]
            centre = [
                int(zs[rng.integers(len(zs))]),
                int(rng.integers(lo[1], hi[1])),
                int(rng.integers(lo[2], hi[2])),
            ]
            shape = self.shapes[case]
            start = [
                _place(c, s, int(n)) for c, s, n in zip(centre, self.patch_size, shape, strict=True)
            ]
            return case, VERTEBRA_LABELS[column], start, centre, rng
        case = int(rng.integers(len(self.case_ids)))
        start = []
        for s, n in zip(self.patch_size, self.shapes[case], strict=True):
            n = int(n)
            start.append(int(rng.integers(0, n - s + 1)) if s <= n else -((s - n) // 2))
        return case, 0, start, start, rng

    def _hold(
        self,
        case: int,
        vertebra: int,
        start: list[int],
        centre: list[int],
        label_slab: np.ndarray,
        z_read: int,
        rng: np.random.Generator,
    ) -> list[int]:
        """Move the y/x window until the patch holds ``vertebra`` (uses only the slab read)."""
        sz, sy, sx = self.patch_size
        nz, ny, nx = (int(v) for v in self.shapes[case])
        column = _COLUMN[vertebra]
        lo, hi = self.bbox_start[case, column], self.bbox_stop[case, column]
        rows = slice(max(start[0], 0) - z_read, min(start[0] + sz, nz) - z_read)
        for attempt in range(_FOREGROUND_TRIES + 1):
            ys = slice(max(start[1], 0), min(start[1] + sy, ny))
            xs = slice(max(start[2], 0), min(start[2] + sx, nx))
            if (label_slab[rows, ys, xs] == vertebra).any():
                return start
            if attempt < _FOREGROUND_TRIES:
                y, x = int(rng.integers(lo[1], hi[1])), int(rng.integers(lo[2], hi[2]))
            else:  # last resort: a voxel of the vertebra on the centre slice
                where = np.argwhere(label_slab[centre[0] - z_read] == vertebra)
                y, x = (int(v) for v in where[rng.integers(len(where))])
            start = [start[0], _place(y, sy, ny), _place(x, sx, nx)]
        return start  # pragma: no cover - the last resort always holds the vertebra


def _shared_int(value: int) -> Any:
    """An int in shared memory: a forked or spawned worker sees the parent's updates."""
    return RawValue("q", int(value))


def _place(centre: int, size: int, n: int) -> int:
    """First index of a window of ``size`` around ``centre`` kept inside ``[0, n)``."""
    if size >= n:
        return -((size - n) // 2)
    return min(max(centre - size // 2, 0), n - size)


def _clip(start: int, size: int, n: int) -> tuple[int, int]:
    return max(start, 0), min(start + size, n)


def _crop(
    slab: np.ndarray,
    z_read: int,
    start: Sequence[int],
    size: Sequence[int],
    shape: Sequence[int],
    fill: float,
) -> np.ndarray:
    """Cut the patch at ``start`` out of full slices read from ``z_read``, padding with ``fill``."""
    out = np.full(tuple(size), fill, dtype=slab.dtype)
    src, dst = [], []
    for axis in range(3):
        lo, hi = max(start[axis], 0), min(start[axis] + size[axis], shape[axis])
        offset = z_read if axis == 0 else 0
        src.append(slice(lo - offset, hi - offset))
        dst.append(slice(lo - start[axis], hi - start[axis]))
    out[tuple(dst)] = slab[tuple(src)]
    return out
