"""Ingest of the small raw tree into a fresh store, one worker (the sync scheduler)."""

from __future__ import annotations

import shutil

from . import _data


class Ingest:
    """Write a fresh store of the regression tree on every call."""

    number = 1
    repeat = 3

    def setup(self) -> None:
        self.raw = _data.raw_tree()
        self.out = _data.workdir() / "ingest-regression.zarr"

    def teardown(self) -> None:
        shutil.rmtree(self.out, ignore_errors=True)

    def time_ingest_one_worker(self) -> None:
        import ctspine_zarr

        shutil.rmtree(self.out, ignore_errors=True)
        ctspine_zarr.ingest(self.raw, self.out, workers=1, progress=False)
