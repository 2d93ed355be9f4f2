"""One axial slice pair (image + label), through the accessor and the training loader."""

from __future__ import annotations

from typing import Any

from . import _data


class SliceRead:
    """Read slice pairs of the store at fixed places."""

    def setup(self) -> None:
        import ctspine_zarr
        from ctspine_zarr.sampling import SliceSequence

        self.ds: Any = ctspine_zarr.open_catalogue(_data.store())
        self.case = self.ds.ctspine.case_ids()[0]
        self.sequence = SliceSequence(_data.store(), split=None)
        self.ds.ctspine.slice(self.case, 0)  # the case's metadata, read once as a reader does

    def time_accessor_slice(self) -> None:
        self.ds.ctspine.slice(self.case, 20)

    def time_accessor_slice_lazy_compute(self) -> None:
        self.ds.ctspine.slice(self.case, 20, lazy=True).compute()

    def time_sequence_item(self) -> None:
        self.sequence[len(self.sequence) // 2]
