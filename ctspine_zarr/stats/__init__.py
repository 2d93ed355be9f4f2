"""Dataset statistics: per-vertebra and per-case tables, split summaries, intensity fingerprint.

Everything is computed in one dask graph over the requested cases, out of core: one task
reads a block of :data:`~ctspine_zarr.schema.SLICES_PER_SHARD` axial slices (one shard) of a
case's ``image`` and ``label`` and returns a small partial result; partials are merged per case
by a tree reduction, cases per split by another. Peak memory is a few blocks per worker plus
the (small) partials, whatever the size of the dataset.

Exactness
---------
Integer images (CT: ``int16``) give *exact, mergeable histograms* per label: the distinct HU
values of the label's voxels and their counts. From them

* ``min``, ``max``, the counts and every percentile equal numpy's on the full arrays,
  bit for bit: :meth:`Histogram.percentile` is numpy's default ``method="linear"``
  (``np.percentile(values, q)``) evaluated on the cumulative histogram;
* ``mean`` is the exact sum divided by the count, which is what ``np.mean`` returns for
  integer arrays (its float64 partial sums of integers are exact);
* ``std`` is the *population* standard deviation (``ddof=0``, like ``np.std``), from the
  exact sum and sum of squares, rounded once; ``np.std`` accumulates float64 rounding errors,
  so the two agree to ~1e-13 relative, not bit for bit.

Float images (``float32``/``float64`` in the catalogue's ``image_dtype``) use histograms of
the exact distinct float values instead (exact percentiles, min and max; mean and std in
float64). NaN and Inf voxels are skipped by every HU statistic (the catalogue's
``has_nonfinite`` says which cases hold them); they still count as label voxels for
``voxels``, ``volume_ml``, the z extent and the centroid, and ``hu_voxels`` gives the count
the HU statistics are over.

Intensity fingerprint
---------------------
``DatasetStats.fingerprint`` has, for all requested cases (``overall``) and per split, the
foreground (``label > 0``) intensity statistics nnU-Net v2 uses for CT normalisation:
``mean``, ``median``, ``std``, ``min``, ``max``, ``percentile_00_5``, ``percentile_99_5``.

``exact``
    Over *every* foreground voxel, from the merged histograms (numbers as above).
``nnunet``
    nnU-Net v2's sampled estimate (``DatasetFingerprintExtractor``): per case,
    ``int(10e7 // n_cases)`` foreground voxels drawn with replacement by
    ``np.random.RandomState(1234).choice(foreground, n, replace=True)`` (a new generator with
    the same seed for every case), concatenated over the cases. Here the foreground voxels are
    taken in the store's canonical ``[z, y, x]`` C order; nnU-Net takes them in the order of
    the file's voxel array, so the drawn voxels are the same for a file stored in RAS order and
    an equally distributed but different draw otherwise. ``n_cases`` is the number of cases of
    the group (the split, or all requested cases for ``overall``); the draws of the overall
    group are a prefix of the split's draws of each case (same seed, same stream). The
    statistics of the sample are then computed exactly (nnU-Net computes them in float32 on
    the concatenated sample, which differs in the last digits). Non-finite samples are dropped.
    nnU-Net reads images as float32 and crops to the nonzero box first; neither changes the
    foreground values of an integer CT (a foreground voxel outside the box of nonzero
    intensities, which cropping would drop, does not occur in CT).

    Each block task keeps its foreground values (2 bytes a voxel for int16) and the case's
    final task draws its samples, so a case's foreground is held once, until its draws are
    made. There are as many draws as nnU-Net makes: ``10e7`` per group (each split, the
    overall group being a prefix), whatever the dataset size. They are drawn as ``uint32``
    (the same values, ~7x faster than ``int64``) and, when there are more draws than a
    quarter of the case's foreground voxels, counted per voxel before the values are looked
    up: about 1.5 CPU-seconds per ``10e7`` draws. One case's draws are one random stream, so
    a split of one case costs that on one core; with many cases they spread over the
    workers. Pass ``fingerprint_samples=None`` to skip them.

Layout
------
Per case there is one task per ``slices_per_task`` slices (default: the shard, 32 slices),
``ceil(blocks / 8)`` merges when it has more than 8 blocks, and one final task; per split one
merge per 8 cases. CTSpine1K (1,005 cases of ~500 slices) is ~2e4 tasks. A block task reads
its slices through :mod:`ctspine_zarr.io.slicereader` (a whole shard is one read, decoded in the
task's own thread): through ``zarr.Array`` the event-loop hand-offs were 65% of the time.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import pandas as pd
import zarr
from dask.base import tokenize
from dask.delayed import Delayed, delayed

from .. import __version__
from ..errors import CaseNotFoundError, StoreError
from ..io.slicereader import case_readers, read_blocks
from ..io.store import case_group, forget, open_catalogue, to_store
from ..parallel import progress_bar, run_tasks
from ..schema import IMAGE, SLICES_PER_SHARD, SPLITS
from ..vertebrae import (
    ANATOMICAL_ORDER,
    L6_LABEL,
    T13_LABEL,
    VERTEBRA_LABELS,
    VERTEBRA_NAMES,
    vertebra_name,
)

__all__ = [
    "ANATOMICAL_ORDER",
    "NNUNET_SEED",
    "NNUNET_TOTAL_SAMPLES",
    "DatasetStats",
    "Histogram",
    "StatsGraph",
    "build_graph",
    "add_arguments",
    "block_stats",
    "compute_stats",
    "merge_histograms",
    "nnunet_samples",
    "run_command",
    "vertebra_name",
]

#: nnU-Net v2's ``num_foreground_voxels_for_intensitystats``: foreground voxels sampled in all.
NNUNET_TOTAL_SAMPLES: Final = 10e7
#: nnU-Net v2's seed of ``collect_foreground_intensities`` (a new RandomState per case).
NNUNET_SEED: Final = 1234
#: Percentiles of the vertebra table and the fingerprint (nnU-Net's 0.5 / 50 / 99.5).
PERCENTILES: Final = (0.5, 50.0, 99.5)
#: Key of the statistics in the store's root attrs (``--write-to-store``).
STORE_ATTR: Final = "stats"
#: Name of the group of all requested cases in the fingerprint and the summaries.
OVERALL: Final = "all"

_RANK: Final = {label: i for i, label in enumerate(ANATOMICAL_ORDER)}
_DENSE_BINS: Final = 1 << 22  # largest dense value range of an integer histogram
_DRAW_CHUNK: Final = 1 << 22  # random draws generated at once
_BLOCK_HIST_BINS: Final = 1 << 24  # largest labels x value-range of a block's bincount

SchedulerLike = Any  # "threads" | "processes" | "sync" | "distributed" | address | Client


# --------------------------------------------------------------------------------------------
# Exact histograms
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Histogram:
    """An exact histogram: the sorted distinct ``values`` and their ``counts``.

    ``values`` are ``int64`` for integer images, the image's float dtype otherwise; non-finite
    values are never held. Histograms merge exactly (:func:`merge_histograms`), and every
    statistic below equals numpy's on the values they were built from.
    """

    values: np.ndarray
    counts: np.ndarray

    @classmethod
    def empty(cls, dtype: Any = np.int64) -> Histogram:
        """Return a histogram of no values."""
        return cls(np.empty(0, dtype=dtype), np.empty(0, dtype=np.int64))

    @classmethod
    def from_values(cls, values: np.ndarray) -> Histogram:
        """Build the histogram of an array's finite values."""
        values = np.asarray(values).ravel()
        if values.dtype.kind in "iub":
            return _int_histogram(values.astype(np.int64, copy=False))
        values = values[np.isfinite(values)]
        uniq, counts = np.unique(values, return_counts=True)
        return cls(uniq, counts.astype(np.int64))

    @property
    def total(self) -> int:
        """Number of values."""
        return int(self.counts.sum())

    @property
    def is_integer(self) -> bool:
        """Whether the values are integers."""
        return self.values.dtype.kind in "iub"

    def min(self) -> float:
        """Smallest value (NaN when empty)."""
        return float(self.values[0]) if self.values.size else math.nan

    def max(self) -> float:
        """Largest value (NaN when empty)."""
        return float(self.values[-1]) if self.values.size else math.nan

    def power_sum(self, power: int) -> int | float:
        """Return ``sum(v ** power)`` over the values: exact for integers, float64 otherwise."""
        if not self.values.size:
            return 0
        if self.is_integer:
            return _exact_power_sum(self.values, self.counts, power)
        v = self.values.astype(np.float64)
        return math.fsum((v**power * self.counts).tolist())

    def mean(self) -> float:
        """Mean, as ``np.mean`` (exact sum over count for integers)."""
        n = self.total
        if n == 0:
            return math.nan
        s = self.power_sum(1)
        return s / n

    def std(self) -> float:
        """Population standard deviation (``ddof=0``, as ``np.std``).

        Exact for integer values (rounded once); two-pass float64 for float values.
        """
        n = self.total
        if n == 0:
            return math.nan
        if self.is_integer:
            s = int(self.power_sum(1))
            ss = int(self.power_sum(2))
            return math.sqrt(Fraction(n * ss - s * s, n * n))
        v = self.values.astype(np.float64)
        mean = self.mean()
        return math.sqrt(math.fsum((self.counts * (v - mean) ** 2).tolist()) / n)

    def value_at(self, rank: int) -> Any:
        """Return the value of 0-based ``rank`` in the sorted values (a numpy scalar)."""
        cum = np.cumsum(self.counts)
        return self.values[int(np.searchsorted(cum, rank, side="right"))]

    def percentile(self, q: float) -> float:
        """Return ``np.percentile(values, q)`` (default ``method="linear"``), exactly.

        The two order statistics around the virtual index ``(n - 1) * q / 100`` are read off
        the cumulative counts and interpolated with numpy's own arithmetic (same dtypes, same
        rounding), so the result is bit-identical.
        """
        n = self.total
        if n == 0:
            return math.nan
        cum = np.cumsum(self.counts)
        virtual = float(n - 1) * (float(q) / 100.0)
        if virtual >= n - 1:
            return float(self.values[-1])
        previous = math.floor(virtual)
        gamma = virtual - previous
        ranks = np.array([previous, previous + 1])
        a, b = self.values[np.searchsorted(cum, ranks, side="right")]
        dtype = self.values.dtype
        lo, hi = np.array([a], dtype=dtype), np.array([b], dtype=dtype)
        diff = hi - lo
        result = lo + diff * gamma
        if gamma >= 0.5:
            result = hi - diff * (1 - gamma)
        return float(result[0])

    def summary(self) -> dict[str, float | int]:
        """Return nnU-Net's intensity properties of the values (and their count)."""
        return {
            "mean": self.mean(),
            "median": self.percentile(50.0),
            "std": self.std(),
            "min": self.min(),
            "max": self.max(),
            "percentile_99_5": self.percentile(99.5),
            "percentile_00_5": self.percentile(0.5),
            "n_voxels": self.total,
        }


def _int_histogram(values: np.ndarray) -> Histogram:
    if values.size == 0:
        return Histogram.empty()
    lo, hi = int(values.min()), int(values.max())
    if hi - lo < _DENSE_BINS:
        counts = np.bincount(values - lo, minlength=hi - lo + 1)
        nz = np.flatnonzero(counts)
        return Histogram(nz.astype(np.int64) + lo, counts[nz].astype(np.int64))
    uniq, counts = np.unique(values, return_counts=True)
    return Histogram(uniq.astype(np.int64), counts.astype(np.int64))


def _exact_power_sum(values: np.ndarray, counts: np.ndarray, power: int) -> int:
    biggest = max(abs(int(values[0])), abs(int(values[-1])))
    if biggest**power * int(counts.sum()) < 2**62:
        return int(np.dot(values**power, counts))
    return sum(
        int(v) ** power * int(c) for v, c in zip(values.tolist(), counts.tolist(), strict=True)
    )


def merge_histograms(hists: Iterable[Histogram]) -> Histogram:
    """Merge histograms exactly (integer and float values promote to float).

    Parameters
    ----------
    hists
        Histograms to add up.

    Returns
    -------
    Histogram
    """
    parts = [h for h in hists if h.values.size]
    if not parts:
        return Histogram.empty()
    if len(parts) == 1:
        return parts[0]
    if all(h.is_integer for h in parts):
        lo = min(int(h.values[0]) for h in parts)
        hi = max(int(h.values[-1]) for h in parts)
        if hi - lo < _DENSE_BINS:
            acc = np.zeros(hi - lo + 1, dtype=np.int64)
            for h in parts:
                acc[h.values - lo] += h.counts
            nz = np.flatnonzero(acc)
            return Histogram(nz.astype(np.int64) + lo, acc[nz])
    dtype = np.result_type(*[h.values.dtype for h in parts])
    if dtype.kind != "f":
        dtype = np.dtype(np.int64)
    values = np.concatenate([h.values.astype(dtype) for h in parts])
    counts = np.concatenate([h.counts for h in parts])
    uniq, inverse = np.unique(values, return_inverse=True)
    merged = np.bincount(inverse.ravel(), weights=counts, minlength=uniq.size)
    if int(counts.sum()) >= 2**53:  # float weights would round: add up exactly
        exact = np.zeros(uniq.size, dtype=np.int64)
        np.add.at(exact, inverse.ravel(), counts)
        return Histogram(uniq, exact)
    return Histogram(uniq, np.rint(merged).astype(np.int64))


# --------------------------------------------------------------------------------------------
# Partial results
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Per case and per group results
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CaseMeta:
    case: str
    split: str
    source: str
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    affine: tuple[tuple[float, ...], ...]
    image_dtype: str


@dataclass
class _Group:
    """Merged results of some cases: table rows, per-label histograms, fingerprint samples."""

    cases: list[dict[str, Any]]
    vertebrae: list[dict[str, Any]]
    label_hists: dict[int, Histogram]
    sample_overall: Histogram
    sample_split: Histogram


def finalize_case(
    parts: Sequence[_Partial],
    meta: _CaseMeta,
    n_overall: int = 0,
    n_split: int = 0,
    seed: int = NNUNET_SEED,
) -> _Group:
    """Merge a case's block partials, draw its nnU-Net samples, and make its table rows."""
    part = merge_partials(parts)
    sample_overall, sample_split = Histogram.empty(), Histogram.empty()
    if part.pieces:
        pieces = sorted(part.pieces, key=lambda piece: piece[0])
        foreground = np.concatenate([values for _, values in pieces])
        part.pieces = []
        sample_overall, sample_split = nnunet_samples(foreground, n_overall, n_split, seed)
        del foreground
    affine = np.asarray(meta.affine, dtype=np.float64)
    sz, sy, sx = meta.spacing
    rows = []
    for value in sorted(part.labels, key=lambda v: (_RANK.get(v, 1000 + v), v)):
        lp = part.labels[value]
        mean_zyx = [s / lp.count for s in lp.sum_zyx]
        world = affine[:3, :3] @ np.array(mean_zyx[::-1]) + affine[:3, 3]
        h = lp.hist
        rows.append(
            {
                "case": meta.case,
                "label": int(value),
                "name": vertebra_name(value),
                "split": meta.split,
                "source": meta.source,
                "voxels": lp.count,
                "volume_ml": lp.count * sz * sy * sx / 1000.0,
                "hu_voxels": h.total,
                "hu_mean": h.mean(),
                "hu_std": h.std(),
                "hu_min": h.min(),
                "hu_max": h.max(),
                "hu_p005": h.percentile(0.5),
                "hu_p50": h.percentile(50.0),
                "hu_p995": h.percentile(99.5),
                "z_start": lp.z_start,
                "z_stop": lp.z_stop,
                "z_extent_slices": lp.z_stop - lp.z_start,
                "z_extent_mm": (lp.z_stop - lp.z_start) * sz,
                "centroid_x_mm": float(world[0]),
                "centroid_y_mm": float(world[1]),
                "centroid_z_mm": float(world[2]),
            }
        )
    vertebrae = [v for v in ANATOMICAL_ORDER if v in part.labels]
    hu_min, hu_max, hu_mean, hu_std = part.hu.stats()
    case_row = {
        "case": meta.case,
        "split": meta.split,
        "source": meta.source,
        "slices": meta.shape[0],
        "n_y": meta.shape[1],
        "n_x": meta.shape[2],
        "spacing_z": sz,
        "spacing_y": sy,
        "spacing_x": sx,
        "image_dtype": meta.image_dtype,
        "voxels": part.voxels,
        "hu_voxels": part.hu.n,
        "nonfinite_voxels": part.voxels - part.hu.n,
        "hu_min": hu_min,
        "hu_max": hu_max,
        "hu_mean": hu_mean,
        "hu_std": hu_std,
        "foreground_voxels": part.foreground,
        "foreground_fraction": part.foreground / part.voxels if part.voxels else math.nan,
        "n_vertebrae": len(vertebrae),
        "vertebrae": vertebrae,
        "vertebra_names": " ".join(vertebra_name(v) for v in vertebrae),
        "first_vertebra": vertebra_name(vertebrae[0]) if vertebrae else None,
        "last_vertebra": vertebra_name(vertebrae[-1]) if vertebrae else None,
        "has_l6": L6_LABEL in part.labels,
        "has_t13": T13_LABEL in part.labels,
        "other_labels": sorted(v for v in part.labels if v not in VERTEBRA_NAMES),
    }
    return _Group(
        cases=[case_row],
        vertebrae=rows,
        label_hists={v: lp.hist for v, lp in part.labels.items()},
        sample_overall=sample_overall,
        sample_split=sample_split,
    )


def merge_groups(groups: Sequence[_Group]) -> _Group:
    """Merge the results of disjoint sets of cases."""
    by_label: dict[int, list[Histogram]] = {}
    for g in groups:
        for value, h in g.label_hists.items():
            by_label.setdefault(value, []).append(h)
    return _Group(
        cases=[row for g in groups for row in g.cases],
        vertebrae=[row for g in groups for row in g.vertebrae],
        label_hists={v: merge_histograms(hs) for v, hs in by_label.items()},
        sample_overall=merge_histograms(g.sample_overall for g in groups),
        sample_split=merge_histograms(g.sample_split for g in groups),
    )


# --------------------------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------------------------


def _block_task(
    location: Any,
    case: str,
    storage_options: dict[str, Any] | None,
    z0: int,
    z1: int,
    keep_foreground: bool,
) -> _Partial:
    readers = case_readers(location, case, storage_options)
    image, label = read_blocks([(readers.image, z0, z1, None), (readers.label, z0, z1, None)])
    return block_stats(image, label, z0, keep_foreground)


# --------------------------------------------------------------------------------------------
# The graph
# --------------------------------------------------------------------------------------------


@dataclass
class StatsGraph:
    """The dask graph of :func:`compute_stats`, before it runs.

    Attributes
    ----------
    groups
        One delayed result per split (merged over its cases).
    metas
        Per case: id, split, source, shape, spacing, affine and image dtype.
    samples
        Per group (each split and :data:`OVERALL`): nnU-Net samples drawn per case (0: none).
    seed
        Seed of the nnU-Net sampling.
    blocks
        Number of block tasks (one per ``slices_per_task`` slices of each case).
    """

    groups: dict[str, Delayed]
    metas: list[_CaseMeta]
    samples: dict[str, int]
    seed: int
    blocks: int

    def n_tasks(self, optimize: bool = True) -> int:
        """Number of tasks the schedulers run (after dask's graph optimisation)."""
        from dask.base import collections_to_expr

        objs = list(self.groups.values())
        if not objs:
            return 0
        expr = collections_to_expr(objs, optimize_graph=optimize)
        if optimize:
            expr = expr.optimize()
        return len(expr.__dask_graph__())


def _tree(
    items: list[Any],
    combine: Any,
    name: str,
    split_every: int,
    final: Any = None,
    final_args: tuple[Any, ...] = (),
) -> Delayed:
    """Reduce delayed ``items`` with ``combine`` in a tree; the root applies ``final``."""
    level = 0
    while len(items) > split_every:
        items = [
            delayed(combine, pure=True)(
                items[i : i + split_every], dask_key_name=(f"{name}-{level}", i // split_every)
            )
            for i in range(0, len(items), split_every)
        ]
        level += 1
    top = final or combine
    return delayed(top, pure=True)(items, *final_args, dask_key_name=f"{name}-top")


def _case_metas(
    location: Any, storage_options: dict[str, Any] | None, catalogue: Any, cases: list[str]
) -> list[_CaseMeta]:
    ids = catalogue["case"].values
    splits = {str(c): str(s) for c, s in zip(ids, catalogue["split"].values, strict=True)}
    sources = {str(c): str(s) for c, s in zip(ids, catalogue["source"].values, strict=True)}
    metas = []
    for case in cases:
        group = case_group(location, case, storage_options=storage_options)
        attrs = group.attrs
        image = group[IMAGE]
        assert isinstance(image, zarr.Array)
        affine = np.asarray(attrs["affine"], dtype=np.float64)
        spacing = np.asarray(attrs["spacing_zyx"], dtype=np.float64)
        metas.append(
            _CaseMeta(
                case=case,
                split=splits[case],
                source=sources[case],
                shape=(int(image.shape[0]), int(image.shape[1]), int(image.shape[2])),
                spacing=(float(spacing[0]), float(spacing[1]), float(spacing[2])),
                affine=tuple(tuple(float(v) for v in row) for row in affine),
                image_dtype=str(image.dtype),
            )
        )
    return metas


def _select(
    catalogue: Any, split: str | Sequence[str] | None, cases: Sequence[str] | None
) -> list[str]:
    ids = [str(c) for c in catalogue["case"].values]
    if cases is not None:
        known = set(ids)
        for case in cases:
            if case not in known:
                raise CaseNotFoundError(case, ids)
        chosen = list(dict.fromkeys(str(c) for c in cases))
    else:
        chosen = ids
    if split is not None:
        wanted = {split} if isinstance(split, str) else set(split)
        unknown = wanted - set(SPLITS)
        if unknown:
            raise ValueError(f"split must be among {SPLITS}, but is {sorted(unknown)}")
        by_case = {
            str(c): str(s)
            for c, s in zip(catalogue["case"].values, catalogue["split"].values, strict=True)
        }
        chosen = [c for c in chosen if by_case[c] in wanted]
    return chosen


def build_graph(
    location: str | os.PathLike | Any,
    *,
    split: str | Sequence[str] | None = None,
    cases: Sequence[str] | None = None,
    storage_options: dict[str, Any] | None = None,
    fingerprint_samples: int | Literal["nnunet"] | None = "nnunet",
    fingerprint_total: float = NNUNET_TOTAL_SAMPLES,
    fingerprint_seed: int = NNUNET_SEED,
    slices_per_task: int | None = None,
    split_every: int = 8,
) -> StatsGraph:
    """Build the dask graph of the statistics (see :func:`compute_stats` for the parameters).

    Per case: one task per ``slices_per_task`` slices (default: one shard, 32 slices) reading
    image and label and returning a partial result (with the block's foreground values when
    the nnU-Net sampling is on), and a tree of merges (``split_every`` at a time) whose root
    draws the case's nnU-Net samples and makes its rows. Per split: a tree of merges of its
    cases.
    """
    if isinstance(location, os.PathLike):
        location = os.fspath(location)
    catalogue = open_catalogue(location, storage_options=storage_options)
    chosen = _select(catalogue, split, cases)
    metas = _case_metas(location, storage_options, catalogue, chosen)
    by_split: dict[str, list[int]] = {}
    for i, meta in enumerate(metas):
        by_split.setdefault(meta.split, []).append(i)
    samples: dict[str, int] = {}
    if fingerprint_samples == "nnunet":
        samples[OVERALL] = int(fingerprint_total // len(metas)) if metas else 0
        for name, members in by_split.items():
            samples[name] = int(fingerprint_total // len(members))
    elif fingerprint_samples is not None:
        n = int(fingerprint_samples)
        if n < 0:
            raise ValueError(f"fingerprint_samples must be >= 0, but is {n}")
        samples = {OVERALL: n, **{name: n for name in by_split}}
    token = tokenize(
        location if isinstance(location, str) else id(location),
        storage_options,
        chosen,
        samples,
        fingerprint_seed,
        slices_per_task,
    )
    results: list[Delayed] = []
    n_blocks = 0
    for i, meta in enumerate(metas):
        step = int(slices_per_task or _shard_slices(location, meta.case, storage_options))
        n_z = meta.shape[0]
        bounds = [(z0, min(z0 + step, n_z)) for z0 in range(0, n_z, step)]
        n_blocks += len(bounds)
        parts = [
            delayed(_block_task, pure=True)(
                location,
                meta.case,
                storage_options,
                z0,
                z1,
                bool(samples),
                dask_key_name=(f"stats-block-{token}-{i}", b),
            )
            for b, (z0, z1) in enumerate(bounds)
        ]
        results.append(
            _tree(
                parts,
                merge_partials,
                f"stats-case-{token}-{i}",
                split_every,
                finalize_case,
                (meta, samples.get(OVERALL, 0), samples.get(meta.split, 0), fingerprint_seed),
            )
        )
    groups = {
        name: _tree(
            [results[i] for i in members], merge_groups, f"stats-{name}-{token}", split_every
        )
        for name, members in by_split.items()
    }
    return StatsGraph(groups, metas, samples, fingerprint_seed, n_blocks)


def _shard_slices(location: Any, case: str, storage_options: dict[str, Any] | None) -> int:
    image = case_group(location, case, storage_options=storage_options)[IMAGE]
    shards = getattr(image, "shards", None) or getattr(image, "chunks", None)
    return int(shards[0]) if shards else SLICES_PER_SHARD


# --------------------------------------------------------------------------------------------
# Running it
# --------------------------------------------------------------------------------------------


def _run(
    graph: StatsGraph, scheduler: SchedulerLike, workers: int | None, progress: bool
) -> dict[str, _Group]:
    names = list(graph.groups)
    bar = progress_bar(len(names), desc="stats", unit="group", enabled=progress)
    try:
        tasks = [graph.groups[n] for n in names]
        results = run_tasks(tasks, scheduler=scheduler, workers=workers, on_done=bar.update)
    finally:
        bar.close()
    return dict(zip(names, results, strict=True))


def compute_stats(
    location: str | os.PathLike | Any,
    *,
    split: str | Sequence[str] | None = None,
    cases: Sequence[str] | None = None,
    storage_options: dict[str, Any] | None = None,
    scheduler: SchedulerLike = "threads",
    workers: int | None = None,
    progress: bool = False,
    fingerprint_samples: int | Literal["nnunet"] | None = "nnunet",
    fingerprint_total: float = NNUNET_TOTAL_SAMPLES,
    fingerprint_seed: int = NNUNET_SEED,
    slices_per_task: int | None = None,
) -> DatasetStats:
    """Compute the dataset statistics of a store in one dask graph.

    Parameters
    ----------
    location
        Path or fsspec URL of the store.
    split
        Only cases of this split (or these splits): ``"train"``, ``"validation"``, ``"test"``,
        ``"unassigned"``.
    cases
        Only these case ids (combined with ``split``).
    storage_options
        fsspec options for a URL.
    scheduler
        ``"threads"`` (the default), ``"processes"``, ``"sync"``, ``"distributed"`` (a new
        ``distributed.LocalCluster`` of ``workers`` single-threaded processes, closed at the
        end), a scheduler address (``"tcp://host:8786"``) or a ``distributed.Client``.
    workers
        Tasks at a time on this machine (threads, processes or cluster workers; default: the
        CPUs); see :mod:`ctspine_zarr.parallel`.
    progress
        Show a progress bar on stderr (per group of cases).
    fingerprint_samples
        The nnU-Net sampled fingerprint: ``"nnunet"`` draws ``int(fingerprint_total //
        n_cases)`` foreground voxels per case (``n_cases`` of the group), an int that many per
        case, ``None`` skips it (and the label pass it needs).
    fingerprint_total
        nnU-Net's total of sampled foreground voxels (``10e7``).
    fingerprint_seed
        Seed of the per-case ``RandomState`` (nnU-Net: 1234).
    slices_per_task
        Slices per block task (default: the shard, 32 slices).

    Returns
    -------
    DatasetStats

    Raises
    ------
    CaseNotFoundError
        For a requested case the store does not hold.
    """
    graph = build_graph(
        location,
        split=split,
        cases=cases,
        storage_options=storage_options,
        fingerprint_samples=fingerprint_samples,
        fingerprint_total=fingerprint_total,
        fingerprint_seed=fingerprint_seed,
        slices_per_task=slices_per_task,
    )
    started = time.perf_counter()
    groups = _run(graph, scheduler, workers, progress)
    stats = assemble(graph, groups)
    stats.info["seconds"] = time.perf_counter() - started
    stats.info["location"] = (
        os.fspath(location) if isinstance(location, str | os.PathLike) else repr(location)
    )
    stats.info["split"] = split
    return stats


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------

_CASE_COLUMNS: Final = (
    "case",
    "split",
    "source",
    "slices",
    "n_y",
    "n_x",
    "spacing_z",
    "spacing_y",
    "spacing_x",
    "image_dtype",
    "voxels",
    "hu_voxels",
    "nonfinite_voxels",
    "hu_min",
    "hu_max",
    "hu_mean",
    "hu_std",
    "foreground_voxels",
    "foreground_fraction",
    "n_vertebrae",
    "vertebrae",
    "vertebra_names",
    "first_vertebra",
    "last_vertebra",
    "has_l6",
    "has_t13",
    "other_labels",
)
_VERTEBRA_COLUMNS: Final = (
    "case",
    "label",
    "name",
    "split",
    "source",
    "voxels",
    "volume_ml",
    "hu_voxels",
    "hu_mean",
    "hu_std",
    "hu_min",
    "hu_max",
    "hu_p005",
    "hu_p50",
    "hu_p995",
    "z_start",
    "z_stop",
    "z_extent_slices",
    "z_extent_mm",
    "centroid_x_mm",
    "centroid_y_mm",
    "centroid_z_mm",
)


@dataclass
class DatasetStats:
    """Statistics of a set of cases.

    Attributes
    ----------
    vertebrae
        One row per (case, label > 0): voxels, volume (ml), HU statistics (``hu_std`` is the
        population std, ddof=0), z extent in slices and mm, centroid in world RAS+ mm.
    cases
        One row per case: shape, spacing, HU statistics, foreground fraction, vertebrae.
    fingerprint
        Foreground intensity properties, ``exact`` and nnU-Net ``nnunet`` sampled, for all
        cases (``"all"``) and per split (see the module docstring).
    summary
        DataFrames ``label_frequency``, ``vertebra_count`` and ``spacing``, per split and for
        all cases (``split == "all"``).
    histograms
        Exact HU histogram of each label over all cases.
    info
        How the statistics were computed.
    """

    vertebrae: pd.DataFrame
    cases: pd.DataFrame
    fingerprint: dict[str, Any]
    summary: dict[str, pd.DataFrame]
    histograms: dict[int, Histogram]
    info: dict[str, Any] = field(default_factory=dict)

    def to_dir(self, path: str | os.PathLike, *, plots: bool = True) -> list[Path]:
        """Write ``vertebrae.parquet``, ``cases.parquet``, ``fingerprint.json``,
        ``summary.json``, ``hu_histograms.parquet`` and the PNG plots into ``path``.

        Returns
        -------
        list of Path
            The written files.
        """
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name, df in (("vertebrae", self.vertebrae), ("cases", self.cases)):
            target = out / f"{name}.parquet"
            df.to_parquet(target, index=False)
            written.append(target)
        target = out / "hu_histograms.parquet"
        self.histogram_table().to_parquet(target, index=False)
        written.append(target)
        target = out / "fingerprint.json"
        target.write_text(json.dumps(_json_safe(self.fingerprint), indent=2) + "\n", "utf-8")
        written.append(target)
        target = out / "summary.json"
        summary = {k: df.to_dict(orient="records") for k, df in self.summary.items()}
        payload = {"summary": summary, "info": self.info}
        target.write_text(json.dumps(_json_safe(payload), indent=2) + "\n", "utf-8")
        written.append(target)
        if plots:
            from ..viz.plots import write_stats_plots

            written.extend(write_stats_plots(self, out))
        return written

    def describe(self) -> str:
        """Return a few lines: cases, vertebrae, and the overall fingerprint."""
        lines = [
            f"{len(self.cases)} cases, {len(self.vertebrae)} labelled structures "
            f"({self.info.get('block_tasks', 0)} block tasks, "
            f"{self.info.get('seconds', math.nan):.1f} s)"
        ]
        entry = self.fingerprint.get(OVERALL, {})
        for mode in ("exact", "nnunet"):
            if mode in entry:
                f = entry[mode]
                lines.append(
                    f"fingerprint {mode:6s}: mean {f['mean']:.2f}  std {f['std']:.2f}  "
                    f"median {f['median']:.1f}  p0.5 {f['percentile_00_5']:.1f}  "
                    f"p99.5 {f['percentile_99_5']:.1f}  ({f['n_voxels']} voxels)"
                )
        return "\n".join(lines)

    def histogram_table(self) -> pd.DataFrame:
        """Return the per-label HU histograms as a long table ``label, name, hu, voxels``."""
        frames = [
            pd.DataFrame(
                {
                    "label": np.full(h.values.size, value, dtype=np.int64),
                    "name": vertebra_name(value),
                    "hu": h.values.astype(np.float64),
                    "voxels": h.counts,
                }
            )
            for value, h in sorted(self.histograms.items())
        ]
        if not frames:
            return pd.DataFrame({"label": [], "name": [], "hu": [], "voxels": []})
        return pd.concat(frames, ignore_index=True)

    def store_payload(self) -> dict[str, Any]:
        """Return what ``to_store`` records in the root attrs (JSON-able)."""
        per_case = {}
        keep = (
            "split",
            "n_vertebrae",
            "vertebra_names",
            "first_vertebra",
            "last_vertebra",
            "has_l6",
            "has_t13",
            "foreground_fraction",
            "hu_min",
            "hu_max",
            "hu_mean",
            "hu_std",
        )
        for row in self.cases.to_dict(orient="records"):
            per_case[str(row["case"])] = {k: row[k] for k in keep}
        return _json_safe(
            {
                "created_by": f"ctspine_zarr {__version__}",
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "split": self.info.get("split"),
                "n_cases": int(len(self.cases)),
                "fingerprint": self.fingerprint,
                "label_frequency": self.summary["label_frequency"].to_dict(orient="records"),
                "vertebra_count": self.summary["vertebra_count"].to_dict(orient="records"),
                "cases": per_case,
            }
        )

    def to_store(
        self, location: str | os.PathLike, *, storage_options: dict[str, Any] | None = None
    ) -> None:
        """Record the statistics in the store's root attrs under ``"stats"``.

        The fingerprint, the label frequency, the vertebra-count distribution and a summary
        per case replace an earlier ``"stats"``; every other root attribute is kept. The root
        document is rewritten once, with its consolidated metadata, so readers see either the
        old or the new attrs.
        """
        from ..io.catalogue import consolidate
        from ..io.location import Location
        from ..write.lock import WriterLock

        text = os.fspath(location) if isinstance(location, os.PathLike) else location
        store = to_store(text, storage_options=storage_options, read_only=False)
        try:
            root = zarr.open_group(store, mode="r+", zarr_format=3, use_consolidated=False)
        except (FileNotFoundError, zarr.errors.GroupNotFoundError) as err:
            raise StoreError(f"{location}: no Zarr v3 store there") from err
        with WriterLock(Location.resolve(store)):  # never beside an ingest's catalogue switch
            attrs = dict(root.attrs)
            attrs[STORE_ATTR] = self.store_payload()
            consolidate(root, attributes=attrs)
        forget(text)


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_json_safe(v) for v in obj.tolist()]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is pd.NA or obj is pd.NaT:
        return None
    return obj


def _fingerprint(groups: Mapping[str, _Group], overall: _Group, graph: StatsGraph) -> dict:
    def fg(g: _Group) -> Histogram:
        return merge_histograms(g.label_hists.values())

    def entry(g: _Group, sample: Histogram, name: str) -> dict[str, Any]:
        out: dict[str, Any] = {"n_cases": len(g.cases), "exact": fg(g).summary()}
        if graph.samples:
            out["nnunet"] = {
                **sample.summary(),
                "samples_per_case": graph.samples[name],
                "seed": graph.seed,
            }
        return out

    return {
        "definition": {
            "voxels": "foreground: label > 0; NaN/Inf voxels skipped",
            "exact": "over every foreground voxel, from exact histograms; std is the "
            "population std (ddof=0); percentiles as np.percentile (linear)",
            "nnunet": "nnU-Net v2 DatasetFingerprintExtractor: per case samples_per_case = "
            "int(10e7 // n_cases) foreground voxels (or a fixed count), drawn with "
            "np.random.RandomState(seed).choice(fg, n, replace=True), fg in the store's "
            "canonical [z, y, x] order; statistics of the concatenated sample, exact",
        },
        OVERALL: entry(overall, overall.sample_overall, OVERALL),
        "splits": {name: entry(g, g.sample_split, name) for name, g in sorted(groups.items())},
    }


def _summary(cases: pd.DataFrame) -> dict[str, pd.DataFrame]:
    freq, counts, spacing = [], [], []
    names = [*sorted(set(cases["split"])), OVERALL] if len(cases) else [OVERALL]
    for name in names:
        part = cases if name == OVERALL else cases[cases["split"] == name]
        n = len(part)
        present: dict[int, int] = {}
        for labels in part["vertebrae"]:
            for v in labels:
                present[int(v)] = present.get(int(v), 0) + 1
        for v in VERTEBRA_LABELS:
            k = present.get(v, 0)
            freq.append(
                {
                    "split": name,
                    "label": v,
                    "name": vertebra_name(v),
                    "cases": k,
                    "fraction": k / n if n else math.nan,
                }
            )
        for value, k in sorted(part["n_vertebrae"].value_counts().items()):
            counts.append({"split": name, "n_vertebrae": int(value), "cases": int(k)})
        for axis in ("z", "y", "x"):
            values = part[f"spacing_{axis}"].to_numpy(dtype=np.float64)
            row: dict[str, Any] = {"split": name, "axis": axis, "cases": n}
            for key, q in (
                ("min", 0),
                ("p05", 5),
                ("p25", 25),
                ("median", 50),
                ("p75", 75),
                ("p95", 95),
                ("max", 100),
            ):
                row[key] = float(np.percentile(values, q)) if n else math.nan
            row["mean"] = float(values.mean()) if n else math.nan
            row["distinct"] = int(np.unique(values).size)
            spacing.append(row)
    return {
        "label_frequency": pd.DataFrame(freq),
        "vertebra_count": pd.DataFrame(counts, columns=["split", "n_vertebrae", "cases"]),
        "spacing": pd.DataFrame(spacing),
    }


def assemble(graph: StatsGraph, groups: Mapping[str, _Group]) -> DatasetStats:
    """Turn the computed per-split results into a :class:`DatasetStats`."""
    overall = merge_groups(list(groups.values())) if groups else merge_groups([])
    cases = pd.DataFrame(overall.cases, columns=list(_CASE_COLUMNS))
    order = {m.case: i for i, m in enumerate(graph.metas)}
    cases = cases.sort_values("case", key=lambda s: s.map(order)).reset_index(drop=True)
    vertebrae = pd.DataFrame(overall.vertebrae, columns=list(_VERTEBRA_COLUMNS))
    if len(vertebrae):
        vertebrae["_c"] = vertebrae["case"].map(order)
        vertebrae["_r"] = vertebrae["label"].map(lambda v: _RANK.get(int(v), 1000 + int(v)))
        vertebrae = vertebrae.sort_values(["_c", "_r"]).drop(columns=["_c", "_r"])
        vertebrae = vertebrae.reset_index(drop=True)
    for df, ints in (
        (
            cases,
            (
                "slices",
                "n_y",
                "n_x",
                "voxels",
                "hu_voxels",
                "nonfinite_voxels",
                "foreground_voxels",
                "n_vertebrae",
            ),
        ),
        (vertebrae, ("label", "voxels", "hu_voxels", "z_start", "z_stop", "z_extent_slices")),
    ):
        for col in ints:
            df[col] = df[col].astype(np.int64)
    return DatasetStats(
        vertebrae=vertebrae,
        cases=cases,
        fingerprint=_fingerprint(groups, overall, graph),
        summary=_summary(cases),
        histograms=dict(sorted(overall.label_hists.items())),
        info={
            "n_cases": len(graph.metas),
            "block_tasks": graph.blocks,
            "samples_per_case": dict(graph.samples),
            "seed": graph.seed,
            "created_by": f"ctspine_zarr {__version__}",
        },
    )


# --------------------------------------------------------------------------------------------
# Command line (``ctspine-zarr stats``)
# --------------------------------------------------------------------------------------------


def add_arguments(parser: Any) -> None:
    """Add the arguments of ``ctspine-zarr stats`` to an ``argparse`` parser."""
    parser.add_argument("store", help="path or fsspec URL of the store")
    parser.add_argument(
        "--out",
        help="folder for vertebrae.parquet, cases.parquet, fingerprint.json, summary.json, "
        "hu_histograms.parquet and the PNG plots",
    )
    parser.add_argument(
        "--split",
        action="append",
        choices=SPLITS,
        help="only cases of this split (repeatable; default: every case)",
    )
    parser.add_argument("--case", action="append", dest="cases", help="only this case (repeatable)")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="tasks at a time on this machine: threads, processes or LocalCluster workers "
        "(default: the CPUs)",
    )
    parser.add_argument(
        "--scheduler",
        default="threads",
        help="threads (default), processes, sync, distributed (a new LocalCluster of "
        "--workers processes), or the address of a dask.distributed scheduler "
        "(tcp://host:8786)",
    )
    parser.add_argument(
        "--fingerprint-samples",
        default="nnunet",
        help="nnU-Net sampled fingerprint: 'nnunet' (10e7 // cases per case, the default), "
        "a number per case, or 'none'",
    )
    parser.add_argument("--seed", type=int, default=NNUNET_SEED, help="nnU-Net sampling seed")
    parser.add_argument(
        "--write-to-store",
        action="store_true",
        help="also record the results in the store's root attrs (key 'stats')",
    )
    parser.add_argument("--no-plots", action="store_true", help="write no PNG plots")
    parser.add_argument("--storage-options", help="fsspec options for STORE, as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _samples_option(text: str) -> int | Literal["nnunet"] | None:
    if text.lower() == "nnunet":
        return "nnunet"
    if text.lower() in ("none", "off", "0"):
        return None
    try:
        return int(text)
    except ValueError:
        raise SystemExit(
            f"--fingerprint-samples must be 'nnunet', a number or 'none', but is {text!r}"
        ) from None


def run_command(args: Any) -> int:
    """Run ``ctspine-zarr stats`` with parsed ``args``; print a summary; return 0."""
    options = None
    if getattr(args, "storage_options", None):
        options = json.loads(args.storage_options)
        if not isinstance(options, dict):
            raise SystemExit("--storage-options must be a JSON object")
    result = compute_stats(
        args.store,
        split=args.split,
        cases=args.cases,
        storage_options=options,
        scheduler=args.scheduler,
        workers=args.workers,
        progress=not args.quiet,
        fingerprint_samples=_samples_option(str(args.fingerprint_samples)),
        fingerprint_seed=args.seed,
    )
    print(result.describe())
    if args.out:
        written = result.to_dir(args.out, plots=not args.no_plots)
        print(f"wrote {len(written)} files to {args.out}")
    if args.write_to_store:
        result.to_store(args.store, storage_options=options)
        print(f"recorded the statistics in {args.store} (root attrs {STORE_ATTR!r})")
    return 0
