"""The block kernels of the statistics: what one task computes and how its results merge.

:func:`block_stats` turns a block of slices of a case's image and label into a small partial
result (:class:`_Partial`: HU moments of every voxel, and per label its voxel count, index
sums, z range and HU histogram); :func:`merge_partials` merges the partials of one case, and
:func:`nnunet_samples` draws a case's nnU-Net foreground samples (see :mod:`ctspine_zarr.stats`,
"Intensity fingerprint").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Final

import numpy as np

from .histogram import Histogram, _int_histogram, merge_histograms

__all__ = [
    "NNUNET_SEED",
    "NNUNET_TOTAL_SAMPLES",
    "block_stats",
    "merge_boxes",
    "merge_partials",
    "nnunet_samples",
    "nonzero_box",
]

#: nnU-Net v2's ``num_foreground_voxels_for_intensitystats``: foreground voxels sampled in all.
NNUNET_TOTAL_SAMPLES: Final = 10e7
#: nnU-Net v2's seed of ``collect_foreground_intensities`` (a new RandomState per case).
NNUNET_SEED: Final = 1234

_DRAW_CHUNK: Final = 1 << 22  # random draws generated at once
_BLOCK_HIST_BINS: Final = 1 << 24  # largest labels x value-range of a block's bincount


@dataclass
class _LabelPart:
    """What one block knows of one label: voxels, index sums, z range, HU histogram."""

    count: int
    sum_zyx: tuple[int, int, int]
    z_start: int
    z_stop: int
    hist: Histogram


@dataclass
class _Moments:
    """HU of every finite voxel: count, extremes, and sums (exact ints) or mean/M2 (floats)."""

    n: int = 0
    minimum: float = math.inf
    maximum: float = -math.inf
    total: int = 0  # integer images: exact sum
    total_sq: int = 0  # integer images: exact sum of squares
    mean: float = 0.0  # float images: running mean (Chan et al.)
    m2: float = 0.0  # float images: sum of squared deviations
    integer: bool = True

    def merge(self, other: _Moments) -> _Moments:
        n = self.n + other.n
        if n == 0:
            return _Moments(integer=self.integer and other.integer)
        out = _Moments(
            n=n,
            minimum=min(self.minimum, other.minimum),
            maximum=max(self.maximum, other.maximum),
            total=self.total + other.total,
            total_sq=self.total_sq + other.total_sq,
            integer=self.integer and other.integer,
        )
        if not out.integer:
            a, b = self._float_view(), other._float_view()
            delta = b.mean - a.mean
            out.mean = a.mean + delta * b.n / n
            out.m2 = a.m2 + b.m2 + delta * delta * a.n * b.n / n
        return out

    def _float_view(self) -> _Moments:
        if not self.integer or self.n == 0:
            return self
        mean = self.total / self.n
        m2 = float(Fraction(self.n * self.total_sq - self.total * self.total, self.n))
        return _Moments(n=self.n, mean=mean, m2=m2, integer=False)

    def stats(self) -> tuple[float, float, float, float]:
        """Return (min, max, mean, population std); NaN when there are no voxels."""
        if self.n == 0:
            return math.nan, math.nan, math.nan, math.nan
        if self.integer:
            mean = self.total / self.n
            var = Fraction(self.n * self.total_sq - self.total * self.total, self.n * self.n)
            return float(self.minimum), float(self.maximum), mean, math.sqrt(var)
        return float(self.minimum), float(self.maximum), self.mean, math.sqrt(self.m2 / self.n)


@dataclass
class _Partial:
    """The partial result of some blocks of one case."""

    voxels: int
    hu: _Moments
    labels: dict[int, _LabelPart]
    foreground: int
    #: ``(first slice, foreground values in C order)`` per block, for the nnU-Net sampling
    pieces: list[tuple[int, np.ndarray]] = field(default_factory=list)
    #: half-open ``(z0, y0, x0, z1, y1, x1)`` box of the nonzero image voxels (None: none)
    nonzero: tuple[int, ...] | None = None


def nonzero_box(image: np.ndarray, z_offset: int = 0) -> tuple[int, ...] | None:
    """The half-open ``(z0, y0, x0, z1, y1, x1)`` box of the voxels of ``image`` that are not 0.

    It is the box nnU-Net crops every case to (``crop_to_nonzero``: NaN counts as nonzero).
    CT holds no zero border, so the faces are looked at first: when each holds a nonzero
    voxel, the box is the whole block without a pass over it.
    """
    if image.size == 0:
        return None
    nz = image.shape[0]
    faces = (image[0], image[-1], image[:, 0], image[:, -1], image[:, :, 0], image[:, :, -1])
    if all(face.any() for face in faces):
        return (z_offset, 0, 0, z_offset + nz, image.shape[1], image.shape[2])
    mask = image != 0
    plane = mask.any(axis=0)
    if not plane.any():
        return None
    bounds = []
    for along in (mask.reshape(nz, -1).any(axis=1), plane.any(axis=1), plane.any(axis=0)):
        where = np.flatnonzero(along)
        bounds.append((int(where[0]), int(where[-1]) + 1))
    (z0, z1), (y0, y1), (x0, x1) = bounds
    return (z0 + z_offset, y0, x0, z1 + z_offset, y1, x1)


def merge_boxes(boxes: Sequence[tuple[int, ...] | None]) -> tuple[int, ...] | None:
    """The smallest box holding every box of ``boxes`` (None: no box)."""
    found = [b for b in boxes if b is not None]
    if not found:
        return None
    return tuple(min(b[i] for b in found) for i in range(3)) + tuple(
        max(b[i] for b in found) for i in range(3, 6)
    )


def _moments(image: np.ndarray) -> _Moments:
    flat = image.ravel()
    if flat.dtype.kind in "iub":
        if flat.size == 0:
            return _Moments()
        if flat.dtype.itemsize <= 2:
            total = int(flat.sum(dtype=np.int64))
            total_sq = 0
            wide_type = np.uint32 if flat.dtype.kind in "ub" else np.int32  # squares fit
            step = 1 << 18  # squares of a cache-sized piece at a time (exact)
            for start in range(0, flat.size, step):
                wide = flat[start : start + step].astype(wide_type)
                np.multiply(wide, wide, out=wide)
                total_sq += int(wide.sum(dtype=np.int64))
        else:
            hist = _int_histogram(flat.astype(np.int64))
            total, total_sq = int(hist.power_sum(1)), int(hist.power_sum(2))
        return _Moments(
            n=int(flat.size),
            minimum=int(flat.min()),
            maximum=int(flat.max()),
            total=total,
            total_sq=total_sq,
        )
    finite = flat[np.isfinite(flat)]
    if finite.size == 0:
        return _Moments(integer=False)
    values = finite.astype(np.float64)
    mean = float(values.mean())
    return _Moments(
        n=int(values.size),
        minimum=float(values.min()),
        maximum=float(values.max()),
        mean=mean,
        m2=float(np.square(values - mean).sum()),
        integer=False,
    )


def block_stats(
    image: np.ndarray,
    label: np.ndarray,
    z_offset: int = 0,
    keep_foreground: bool = False,
) -> _Partial:
    """Return the partial statistics of one block of slices of a case.

    Parameters
    ----------
    image, label
        ``[z, y, x]`` blocks of the case's image and label map.
    z_offset
        Index of the block's first slice in the case.
    keep_foreground
        Keep the foreground values in C order (for the nnU-Net sampling of the case).

    Returns
    -------
    _Partial
    """
    nz, ny, nx = label.shape
    partial = _Partial(voxels=int(label.size), hu=_moments(image), labels={}, foreground=0)
    partial.nonzero = nonzero_box(image, z_offset)
    flat_label = label.reshape(-1)
    index = _flat_nonzero(flat_label)
    partial.foreground = int(index.size)
    if index.size == 0:
        if keep_foreground:
            partial.pieces.append((z_offset, image.reshape(-1)[:0]))
        return partial
    fg_label = flat_label[index]
    fg_value = image.reshape(-1)[index]
    per_label = np.bincount(fg_label)
    labels = np.flatnonzero(per_label)
    lut = np.zeros(per_label.size, dtype=np.int64)
    lut[labels] = np.arange(labels.size)
    li = lut[fg_label]
    n_labels = int(labels.size)
    plane = ny * nx
    z = index // plane
    rest = index - z * plane
    y = rest // nx
    x = rest - y * nx
    sums = [np.bincount(li, weights=c, minlength=n_labels) for c in (z, y, x)]
    present = np.zeros((n_labels, nz), dtype=bool)
    present[li, z] = True
    hists = _label_histograms(fg_value, li, n_labels)
    for i, value in enumerate(labels.tolist()):
        slices = np.flatnonzero(present[i])
        partial.labels[int(value)] = _LabelPart(
            count=int(per_label[value]),
            sum_zyx=(
                int(sums[0][i]) + z_offset * int(per_label[value]),
                int(sums[1][i]),
                int(sums[2][i]),
            ),
            z_start=int(slices[0]) + z_offset,
            z_stop=int(slices[-1]) + 1 + z_offset,
            hist=hists[i],
        )
    if keep_foreground:
        partial.pieces.append((z_offset, fg_value))
    return partial


def _flat_nonzero(flat: np.ndarray) -> np.ndarray:
    """``np.flatnonzero`` of a mostly-zero 1-byte array, 8 bytes at a time (~10x faster)."""
    if flat.dtype.itemsize != 1 or flat.size % 8 or not flat.flags.c_contiguous:
        return np.flatnonzero(flat)
    words = np.flatnonzero(flat.view(np.uint64))
    row, col = np.nonzero(flat.reshape(-1, 8)[words])
    return words[row] * 8 + col


def _label_histograms(values: np.ndarray, li: np.ndarray, n_labels: int) -> list[Histogram]:
    if values.dtype.kind in "iub":
        v = values.astype(np.int64)
        lo, hi = int(v.min()), int(v.max())
        width = hi - lo + 1
        if n_labels * width <= _BLOCK_HIST_BINS:
            counts = np.bincount(li * width + (v - lo), minlength=n_labels * width)
            counts = counts.reshape(n_labels, width)
            out = []
            for i in range(n_labels):
                nz = np.flatnonzero(counts[i])
                out.append(Histogram(nz.astype(np.int64) + lo, counts[i, nz].astype(np.int64)))
            return out
        return [_int_histogram(v[li == i]) for i in range(n_labels)]
    return [Histogram.from_values(values[li == i]) for i in range(n_labels)]


def merge_partials(parts: Sequence[_Partial]) -> _Partial:
    """Merge partial statistics of blocks of one case."""
    out = _Partial(
        voxels=0, hu=_Moments(integer=all(p.hu.integer for p in parts)), labels={}, foreground=0
    )
    by_label: dict[int, list[_LabelPart]] = {}
    for p in parts:
        out.voxels += p.voxels
        out.hu = out.hu.merge(p.hu)
        out.foreground += p.foreground
        for value, lp in p.labels.items():
            by_label.setdefault(value, []).append(lp)
    for value, lps in by_label.items():
        out.labels[value] = _LabelPart(
            count=sum(lp.count for lp in lps),
            sum_zyx=(
                sum(lp.sum_zyx[0] for lp in lps),
                sum(lp.sum_zyx[1] for lp in lps),
                sum(lp.sum_zyx[2] for lp in lps),
            ),
            z_start=min(lp.z_start for lp in lps),
            z_stop=max(lp.z_stop for lp in lps),
            hist=merge_histograms(lp.hist for lp in lps),
        )
    out.pieces = [piece for p in parts for piece in p.pieces]
    out.nonzero = merge_boxes([p.nonzero for p in parts])
    return out


def nnunet_samples(
    foreground: np.ndarray, n_overall: int, n_split: int, seed: int = NNUNET_SEED
) -> tuple[Histogram, Histogram]:
    """Draw nnU-Net v2's foreground samples of one case; return their histograms.

    nnU-Net's ``np.random.RandomState(seed).choice(foreground, n, replace=True)`` is
    ``foreground[rs.randint(0, len(foreground), n)]``; the draws are generated in chunks from
    the same stream (identical values) and only their histogram is kept.

    Parameters
    ----------
    foreground
        The case's foreground values in the store's C order.
    n_overall, n_split
        Draws of the overall group (a prefix) and of the case's split (all draws).
    seed
        Seed of the case's ``RandomState``.

    Returns
    -------
    tuple of Histogram
        Histograms of the first ``n_overall`` draws and of all ``max(n_overall, n_split)``
        draws (non-finite values dropped).
    """
    if foreground.size == 0 or max(n_overall, n_split) == 0:
        return Histogram.empty(), Histogram.empty()
    if foreground.dtype.kind in "iub":
        lo = int(foreground.min())
        codes = foreground.astype(np.intp) - lo
        n_codes = int(codes.max()) + 1
        values = np.arange(lo, lo + n_codes, dtype=np.int64)
    else:
        values, inverse = np.unique(foreground, return_inverse=True)
        codes = inverse.ravel().astype(np.intp)
        n_codes = int(values.size)
    rs = np.random.RandomState(seed)
    n_fg = int(codes.size)
    # RandomState.randint draws a value below 2**32 from one masked 32-bit output whatever
    # the dtype, so uint32 draws are nnU-Net's int64 draws, generated ~7x faster.
    dtype = np.uint32 if n_fg <= 1 << 32 else np.int64
    # Many draws: count how often each voxel is drawn (a sequential bincount), then weight
    # the voxels' codes by it; few draws: look the codes up (random access, no O(n_fg) work).
    # (measured: per voxel wins for 2M voxels and 30M draws, loses from ~10M voxels on)
    by_voxel = n_fg <= _DRAW_CHUNK and max(n_overall, n_split) >= n_fg // 4
    drawn = np.zeros(n_fg if by_voxel else n_codes, dtype=np.int64)
    out = []
    for n in (n_overall, max(n_split - n_overall, 0)):
        done = 0
        while done < n:
            size = min(_DRAW_CHUNK, n - done)
            index = rs.randint(0, n_fg, size=size, dtype=dtype).astype(np.intp)  # bincount's
            if by_voxel:
                drawn += np.bincount(index, minlength=n_fg)
            else:
                drawn += np.bincount(codes[index], minlength=n_codes)
            done += size
        counts = (
            np.bincount(codes, weights=drawn, minlength=n_codes).astype(np.int64)
            if by_voxel
            else drawn
        )
        keep = np.flatnonzero(counts)
        keep = keep[np.isfinite(values[keep])] if values.dtype.kind == "f" else keep
        out.append(Histogram(values[keep], counts[keep].copy()))
    return out[0], out[1]
