"""One whole case (image + label) read into memory through the accessor."""

from __future__ import annotations

from typing import Any

from . import _data


class VolumeRead:
    """Read the first case of the store whole."""

    def setup(self) -> None:
        import ctspine_zarr

        self.ds: Any = ctspine_zarr.open_catalogue(_data.store())
        self.case = self.ds.ctspine.case_ids()[0]

    def time_volume_values(self) -> object:
        vol = self.ds.ctspine.volume(self.case)
        return vol.image.values, vol.label.values

    def time_one_slice_of_lazy_volume(self) -> object:
        return self.ds.ctspine.volume(self.case).image.isel(z=10).values
