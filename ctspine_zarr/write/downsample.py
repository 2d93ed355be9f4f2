"""The arithmetic of the levels: the image by block mean, the labels by block mode.

Both reductions run over a case one slab of axial slices at a time (a multiple of the
coarsest factor thick, so no block straddles two slabs) and keep only the levels in memory:
2x and 4x together are 9/64 of the volume. Sums and label counts are additive, so the 4x
level is pooled from the 2x level's sums and counts, never from its rounded values: both
levels are exact reductions of the full-resolution voxels.

Image: the mean of the voxels of each ``f x f x f`` block, over the voxels present (a block
at the far edge of an axis whose length is not a multiple of ``f`` holds fewer), rounded half
to even (:func:`numpy.rint`) for integer dtypes and stored in the image's dtype. Float images
keep the float mean; a block with a NaN is NaN.

Labels: the most frequent *non-zero* value of the block; on a tie, the smaller value; 0 only
when every voxel of the block is 0. Background never outvotes a vertebra, so a thin process
or a vertebra cut by the edge of the volume stays visible at the coarse levels (each
vertebra grows by at most one level voxel at its border) instead of vanishing, and two
vertebrae meeting in a block never produce a value neither holds, as a mean would.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from ..io.levels import level_shape

__all__ = ["LevelBuilder", "block_counts", "build_levels", "pool2"]


def pool2(values: np.ndarray) -> np.ndarray:
    """Sum ``2 x 2 x 2`` blocks of a 3D array (zero-padded at the far edges)."""
    out = values
    for axis in range(3):
        if out.shape[axis] % 2:
            pad = [(0, 0)] * 3
            pad[axis] = (0, 1)
            out = np.pad(out, pad)
        even = [slice(None)] * 3
        odd = [slice(None)] * 3
        even[axis], odd[axis] = slice(0, None, 2), slice(1, None, 2)
        out = out[tuple(even)] + out[tuple(odd)]
    return out


def block_counts(shape: Sequence[int], factor: int) -> np.ndarray:
    """Voxels of each ``factor``-block of a volume of ``shape`` (fewer at the far edges)."""
    axes = []
    for n in shape:
        starts = factor * np.arange(-(-int(n) // factor))
        axes.append(np.minimum(factor, int(n) - starts).astype(np.int64))
    return axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]


def _sum_dtype(dtype: np.dtype) -> np.dtype:
    if dtype.kind == "f":
        return np.dtype(np.float64)
    if dtype.kind in "iu" and dtype.itemsize <= 2:
        return np.dtype(np.int32)  # at most 64 voxels of 16 bits: no overflow
    return np.dtype(np.int64)


class LevelBuilder:
    """Accumulates the levels of one case, slab by slab.

    Parameters
    ----------
    shape
        The case's ``(z, y, x)`` shape.
    image_dtype
        The dtype the image levels are stored in.
    factors
        Powers of two, each twice the one before (``(2, 4)``).
    boxes
        ``{label value: [z0, y0, x0, z1, y1, x1]}`` (half-open) of the labels, as the case
        attrs record them: each label's counts are taken inside its box only (checked: a
        label found outside its box is counted over the whole slab).
    """

    def __init__(
        self,
        shape: tuple[int, int, int],
        image_dtype: np.dtype,
        factors: Sequence[int],
        boxes: Mapping[int, Sequence[int]] | None = None,
    ) -> None:
        expected = [2 ** (k + 1) for k in range(len(factors))]
        if list(factors) != expected:
            raise ValueError(f"factors must be {tuple(expected)}, but are {tuple(factors)}")
        self.shape = shape
        self.factors = tuple(factors)
        self.step = max(factors)
        self.image_dtype = np.dtype(image_dtype)
        self.boxes = dict(boxes or {})
        self.image = {f: np.zeros(level_shape(shape, f), self.image_dtype) for f in factors}
        self.label = {f: np.zeros(level_shape(shape, f), np.uint8) for f in factors}
        self._best = {f: np.zeros(level_shape(shape, f), np.uint16) for f in factors}

    def slab_starts(self, shards: int) -> range:
        """Starts of the slabs to add: whole shards of ``shards`` slices, cut at the factor."""
        step = int(np.lcm(max(1, shards), self.step))
        return range(0, self.shape[0], step)

    def add(self, z0: int, image: np.ndarray, label: np.ndarray) -> None:
        """Add slices ``z0 : z0 + len(image)`` (``z0`` a multiple of the coarsest factor).

        The slab must end at a multiple of that factor or at the end of the volume.
        """
        z1 = z0 + image.shape[0]
        if z0 % self.step or (z1 % self.step and z1 != self.shape[0]):
            raise ValueError(f"slab {z0}:{z1} is not aligned to blocks of {self.step}")
        self._add_image(z0, image)
        self._add_label(z0, label)

    def _add_image(self, z0: int, image: np.ndarray) -> None:
        sums = image.astype(_sum_dtype(image.dtype))
        for f in self.factors:
            sums = pool2(sums)
            counts = block_counts(image.shape, f)
            mean = sums / counts
            if self.image_dtype.kind in "iu":
                info = np.iinfo(self.image_dtype)
                mean = np.clip(np.rint(mean), info.min, info.max)
            self.image[f][z0 // f : z0 // f + mean.shape[0]] = mean.astype(self.image_dtype)

    def _add_label(self, z0: int, label: np.ndarray) -> None:
        totals = np.bincount(label.ravel(), minlength=256)
        whole = (0, 0, 0) + tuple(label.shape)
        for value in np.flatnonzero(totals[1:]).tolist():
            value += 1
            counts = self._counts(label, value, self._region(z0, label.shape, value))
            if int(counts[self.factors[0]][1].sum()) != int(totals[value]):
                counts = self._counts(label, value, whole)  # the box misses voxels
            for f in self.factors:
                (oz, oy, ox), count = counts[f]
                offset = (oz + z0 // f, oy, ox)
                where = tuple(slice(o, o + n) for o, n in zip(offset, count.shape, strict=True))
                best, chosen = self._best[f][where], self.label[f][where]
                wins = count > best  # values come in increasing order: a tie keeps the smaller
                best[wins] = count[wins]
                chosen[wins] = value

    def _region(self, z0: int, shape: tuple[int, ...], value: int) -> tuple[int, ...]:
        """The slab's part of the label's box, widened to whole blocks of the coarsest factor."""
        box = self.boxes.get(value)
        if box is None or len(box) != 6:
            return (0, 0, 0) + tuple(shape)
        low = [int(box[0]) - z0, int(box[1]), int(box[2])]
        high = [int(box[3]) - z0, int(box[4]), int(box[5])]
        out_low, out_high = [], []
        for lo, hi, n in zip(low, high, shape, strict=True):
            lo = max(0, min(n, lo)) // self.step * self.step
            hi = min(n, -(-max(0, hi) // self.step) * self.step)
            out_low.append(lo)
            out_high.append(max(lo, hi))
        return tuple(out_low + out_high)

    def _counts(
        self, label: np.ndarray, value: int, region: tuple[int, ...]
    ) -> dict[int, tuple[tuple[int, ...], np.ndarray]]:
        """Per level: where the slab-relative ``region`` starts, and the voxels of ``value``."""
        z0, y0, x0, z1, y1, x1 = region
        counts = (label[z0:z1, y0:y1, x0:x1] == value).astype(np.uint16)
        out: dict[int, tuple[tuple[int, ...], np.ndarray]] = {}
        for f in self.factors:
            counts = pool2(counts)
            out[f] = ((z0 // f, y0 // f, x0 // f), counts)
        return out

    def finish(self) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
        """The ``({factor: image level}, {factor: label level})`` of the slabs added."""
        return self.image, self.label


def build_levels(
    shape: tuple[int, int, int],
    image_dtype: np.dtype,
    read: Callable[[int, int], tuple[np.ndarray, np.ndarray]],
    *,
    shards: int,
    factors: Sequence[int],
    boxes: Mapping[int, Sequence[int]] | None = None,
) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """Compute the levels of one case from ``read(z0, z1) -> (image, label)`` slabs.

    Parameters
    ----------
    shape, image_dtype, factors, boxes
        As for :class:`LevelBuilder`.
    read
        Returns the full-resolution slices ``z0:z1`` of the image and the label.
    shards
        Slices per shard of the stored arrays: slabs are whole shards (and whole blocks).

    Returns
    -------
    tuple of dict
        ``{factor: image level}`` and ``{factor: label level}``.
    """
    builder = LevelBuilder(shape, image_dtype, factors, boxes)
    starts = builder.slab_starts(shards)
    for z0 in starts:
        z1 = min(shape[0], z0 + starts.step)
        image, label = read(z0, z1)
        builder.add(z0, np.asarray(image), np.asarray(label))
    return builder.finish()
