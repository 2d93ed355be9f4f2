"""Exact, mergeable histograms of intensity values.

:class:`Histogram` holds the sorted distinct values of some voxels and their counts;
:func:`merge_histograms` adds histograms up exactly, and the exact integer power sums behind
a histogram's mean and std live here too. Every statistic of a histogram equals numpy's on the
values it was built from (see :mod:`ctspine_zarr.stats`, "Exactness").
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Final

import numpy as np

__all__ = ["Histogram", "merge_histograms"]

_DENSE_BINS: Final = 1 << 22  # largest dense value range of an integer histogram


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
