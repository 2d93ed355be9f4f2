"""Per-vertebra and per-case statistics of the whole small store."""

from __future__ import annotations

from . import _data


class Statistics:
    """``compute_stats`` without the sampled fingerprint, in-process threads."""

    number = 1
    repeat = 3

    def setup(self) -> None:
        self.store = _data.store()

    def time_compute_stats(self) -> None:
        from ctspine_zarr.stats import compute_stats

        compute_stats(self.store, progress=False, fingerprint_samples=None)
