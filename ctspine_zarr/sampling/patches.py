"""Random 3D training patches, a fixed fraction of them forced to hold a vertebra (nnU-Net style).

:class:`PatchSequence` plans each item from a seeded generator (case, vertebra, patch start),
reads only the boxes it needs (the tiles they touch), and cuts and pads the patch out of
them. The window
placement, clipping and padding helpers are here too.
"""

from __future__ import annotations

import multiprocessing.context
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from multiprocessing.sharedctypes import RawValue
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from ..io.slicereader import Request, read_blocks
from ..vertebrae import VERTEBRA_LABELS
from .cases import VERTEBRA_COLUMN
from .sequences import _StoreSequence

if TYPE_CHECKING:  # the inherited fields' annotations, resolved by the API reference
    import numpy.typing as npt  # noqa: F401

    from ..selection import Names, Vertebrae  # noqa: F401
    from .sequences import Location, Transform  # noqa: F401

__all__ = ["PAD_IMAGE", "PAD_LABEL", "PatchSequence"]

#: Value of image voxels a patch gets outside the volume (air, HU).
PAD_IMAGE: Final = -1024.0
#: Value of label voxels a patch gets outside the volume (background).
PAD_LABEL: Final = 0

_FOREGROUND_TRIES: Final = 16


class _SharedEpoch:
    """The ``epoch`` field: an int in shared memory, so that a forked or spawned worker sees
    the parent's :meth:`PatchSequence.set_epoch` (a dataclass field whose default is this
    descriptor: ``__init__`` and assignments go through ``__set__``)."""

    def __get__(self, obj: Any, owner: type | None = None) -> int:
        if obj is None:
            return 0  # the field's default
        return int(obj._epoch.value)

    def __set__(self, obj: Any, value: int) -> None:
        shared = obj.__dict__.get("_epoch")
        if shared is None or isinstance(shared, int):
            obj._epoch = _shared_int(value)
        else:
            shared.value = int(value)


@dataclass(eq=False, repr=False, kw_only=True)
class PatchSequence(_StoreSequence):
    """Random 3D patches, a fixed fraction of them forced to hold a vertebra (nnU-Net style).

    Item ``i`` of epoch ``e`` is a pure function of ``(seed, e, i)``: it draws from
    ``np.random.default_rng([seed, e, i])``. Each epoch exactly
    ``round(foreground_fraction * samples_per_epoch)`` items are foreground: the first ones of
    a permutation of the indices seeded by ``(seed, e, samples_per_epoch)``.

    A foreground item picks a case holding a vertebra (one of the ``vertebra`` filter, or any),
    one of those vertebrae, a slice holding it (stored ``slice_vertebrae`` index) and a point in the
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
        As for :class:`ctspine_zarr.sampling.SliceSequence`.
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

    patch_size: Sequence[int]
    foreground_fraction: float = 0.33
    samples_per_epoch: int = 1000
    seed: int | None = None
    epoch: _SharedEpoch = _SharedEpoch()
    _epoch: Any = field(init=False, repr=False)  # the shared value behind ``epoch``

    def __post_init__(self) -> None:
        super().__post_init__()
        patch_size, foreground_fraction = self.patch_size, self.foreground_fraction
        samples_per_epoch, seed = self.samples_per_epoch, self.seed
        size = tuple(int(s) for s in patch_size)
        if len(size) != 3 or min(size) < 1:
            raise ValueError(f"patch_size must be 3 positive ints (z, y, x); got {patch_size!r}")
        if not 0.0 <= foreground_fraction <= 1.0:
            raise ValueError(f"foreground_fraction must lie in [0, 1]; got {foreground_fraction}")
        if samples_per_epoch < 0:
            raise ValueError(f"samples_per_epoch must be >= 0; got {samples_per_epoch}")
        if not self.case_ids and samples_per_epoch:
            given = self._selection().rstrip(", ") or "every case: the store holds none"
            raise ValueError(f"no case matches the filters ({given})")
        self.patch_size: tuple[int, int, int] = (size[0], size[1], size[2])
        self.foreground_fraction = float(foreground_fraction)
        self.samples_per_epoch = int(samples_per_epoch)
        #: The seed in use (``seed`` is normalised to it): drawn here when None was given.
        self.rng_seed: int = int(np.random.SeedSequence().entropy if seed is None else seed)  # type: ignore[arg-type]
        self.seed = self.rng_seed
        self.n_foreground = round(self.foreground_fraction * self.samples_per_epoch)
        holds = self.has_vertebra.copy()
        if self.labels is not None:
            holds[:] = False
            holds[:, self._columns()] = self.has_vertebra[:, self._columns()]
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
        self._plan: tuple[int, np.ndarray] | None = None

    # -- epochs ------------------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch; workers started from this object (fork, spawn, persistent) see it."""
        self.epoch = epoch

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
        order = np.random.default_rng(
            [self.rng_seed, epoch, self.samples_per_epoch, 1]
        ).permutation(self.samples_per_epoch)
        flags = np.zeros(self.samples_per_epoch, dtype=bool)
        flags[order[: self.n_foreground]] = True
        self._plan = (epoch, flags)
        return flags

    def __len__(self) -> int:
        return self.samples_per_epoch

    # -- items -------------------------------------------------------------------------------

    def getitems(self, indices: Iterable[Any]) -> list[Any]:
        """Return the patches at ``indices`` of the current epoch.

        Only the boxes the patches need are read (the tiles they touch): a random patch's
        image and label in one batch; for a foreground patch first the label over the
        region its window may move to (the patch and the vertebra's stored box), then, once
        the window holds the vertebra, its image box, in a second batch.
        """
        epoch = self.epoch
        flags = self.is_foreground(epoch)
        picks = [self._index(i) for i in indices]
        plans = [self._draw(i, epoch, bool(flags[i])) for i in picks]
        image_dtype, label_dtype = self.dtypes
        first: list[Request] = []
        label_at: list[int] = []
        image_at: dict[int, int] = {}
        origins: list[tuple[int, ...]] = []
        for n, (case, vertebra, start, _, _) in enumerate(plans):
            image_reader, label_reader, _ = self._arrays(case)
            region = self._region(case, vertebra, start)
            origins.append(tuple(lo for lo, _ in region))
            label_at.append(len(first))
            first.append(_request(label_reader, region, label_dtype))
            if not vertebra:
                image_at[n] = len(first)
                first.append(_request(image_reader, region, image_dtype))
        blocks = read_blocks(first)
        starts: list[list[int]] = []
        second: list[Request] = []
        for n, (case, vertebra, start, centre, rng) in enumerate(plans):
            if vertebra:
                label = blocks[label_at[n]]
                start = self._hold(case, vertebra, start, centre, label, origins[n], rng)
                box = self._region(case, 0, start)
                image_at[n] = len(first) + len(second)
                second.append(_request(self._arrays(case).image, box, image_dtype))
            starts.append(start)
        blocks += read_blocks(second)
        items = []
        for n, (case, vertebra, _, _, _) in enumerate(plans):
            start = starts[n]
            item = self._base(case)
            item["patch_start"] = np.asarray(start, dtype=np.int64)
            item["foreground"] = bool(vertebra)
            item["vertebra"] = vertebra
            shape = tuple(int(s) for s in self.shapes[case])
            image_block = blocks[image_at[n]]
            image_origin = tuple(max(s, 0) for s in start)
            image = _crop(image_block, image_origin, start, self.patch_size, shape, PAD_IMAGE)
            label = _crop(blocks[label_at[n]], origins[n], start, self.patch_size, shape, PAD_LABEL)
            items.append(self._finish(item, image, label))
        return items

    def _region(self, case: int, vertebra: int, start: Sequence[int]) -> list[tuple[int, int]]:
        """``[lo, hi)`` per axis of what to read for a patch at ``start``, clipped to the case.

        For a foreground patch (``vertebra`` not 0), y and x cover every window
        :meth:`_hold` may move to: windows placed on the vertebra's stored box.
        """
        shape = [int(v) for v in self.shapes[case]]
        region = [
            _clip(s, size, n) for s, size, n in zip(start, self.patch_size, shape, strict=True)
        ]
        if vertebra:
            column = VERTEBRA_COLUMN[vertebra]
            lo, hi = self.bbox_start[case, column], self.bbox_stop[case, column]
            for axis in (1, 2):
                size, n = self.patch_size[axis], shape[axis]
                first = _place(int(lo[axis]), size, n)
                last = _place(int(hi[axis]) - 1, size, n) + size
                low, high = min(start[axis], first), max(start[axis] + size, last)
                region[axis] = _clip(low, high - low, n)
        return region

    def _draw(
        self, i: int, epoch: int, foreground: bool
    ) -> tuple[int, int, list[int], list[int], np.random.Generator]:
        """Case, vertebra (0: random patch), patch start and centre of item ``i``."""
        rng = np.random.default_rng([self.rng_seed, epoch, i])
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
        label: np.ndarray,
        origin: Sequence[int],
        rng: np.random.Generator,
    ) -> list[int]:
        """Move the y/x window until the patch holds ``vertebra``.

        Uses only ``label``, the label read from ``origin`` over :meth:`_region`.
        """
        sz, sy, sx = self.patch_size
        nz, ny, nx = (int(v) for v in self.shapes[case])
        column = VERTEBRA_COLUMN[vertebra]
        lo, hi = self.bbox_start[case, column], self.bbox_stop[case, column]
        z0, y0, x0 = origin
        rows = slice(max(start[0], 0) - z0, min(start[0] + sz, nz) - z0)
        for attempt in range(_FOREGROUND_TRIES + 1):
            ys = slice(max(start[1], 0) - y0, min(start[1] + sy, ny) - y0)
            xs = slice(max(start[2], 0) - x0, min(start[2] + sx, nx) - x0)
            if (label[rows, ys, xs] == vertebra).any():
                return start
            if attempt < _FOREGROUND_TRIES:
                y, x = int(rng.integers(lo[1], hi[1])), int(rng.integers(lo[2], hi[2]))
            else:  # last resort: a voxel of the vertebra on the centre slice
                where = np.argwhere(label[centre[0] - z0] == vertebra)
                y, x = (int(v) for v in where[rng.integers(len(where))])
                y, x = y + y0, x + x0
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


def _request(reader: Any, region: Sequence[tuple[int, int]], dtype: Any) -> Request:
    (z0, z1), (y0, y1), (x0, x1) = region
    return (reader, z0, z1, dtype, (y0, y1, x0, x1))


def _crop(
    block: np.ndarray,
    origin: Sequence[int],
    start: Sequence[int],
    size: Sequence[int],
    shape: Sequence[int],
    fill: float,
) -> np.ndarray:
    """Cut the patch at ``start`` out of ``block`` (read from ``origin``), padding with ``fill``."""
    if tuple(origin) == tuple(start) and block.shape == tuple(size):
        return block  # the read is the patch (inside the volume): no copy
    out = np.full(tuple(size), fill, dtype=block.dtype)
    src, dst = [], []
    for axis in range(3):
        lo, hi = max(start[axis], 0), min(start[axis] + size[axis], shape[axis])
        src.append(slice(lo - origin[axis], hi - origin[axis]))
        dst.append(slice(lo - start[axis], hi - start[axis]))
    out[tuple(dst)] = block[tuple(src)]
    return out
