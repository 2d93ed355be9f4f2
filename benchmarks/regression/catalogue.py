"""Opening the catalogue and listing the cases of a split."""

from __future__ import annotations

from typing import Any

from . import _data


class Catalogue:
    """Open the store's catalogue; list its training cases."""

    def setup(self) -> None:
        import ctspine_zarr

        self.store = _data.store()
        self.ds: Any = ctspine_zarr.open_catalogue(self.store)

    def time_open_catalogue(self) -> None:
        import ctspine_zarr
        from ctspine_zarr.io.store import forget

        forget(self.store)
        ctspine_zarr.open_catalogue(self.store)

    def time_case_ids_train(self) -> None:
        self.ds.ctspine.case_ids(split="train")
