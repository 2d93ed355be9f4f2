"""The dask-backed volume: chunks read by the lean reader, dask kept in every respect."""

from __future__ import annotations

import pickle
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
import zarr

import ctspine_zarr
from ctspine_zarr import compat
from ctspine_zarr.io import volume as volume_module
from ctspine_zarr.io.volume import LeanSlices, LeanVariable


def _arrays(store: Path, case: str) -> tuple[zarr.Array, zarr.Array]:
    group = zarr.open_group(store, path=f"cases/{case}", mode="r")
    image, label = group["image"], group["label"]
    assert isinstance(image, zarr.Array) and isinstance(label, zarr.Array)
    return image, label


KEYS = [
    0,
    -1,
    np.int64(3),
    slice(None),
    slice(2, 9),
    slice(30, 70),  # across a shard border
    slice(5, 5),
    slice(None, None, 2),  # a step: zarr reads it
    (4, slice(3, 20), 7),
    (slice(1, 40), slice(None), slice(10, 12)),
    (Ellipsis, 2),  # not basic in our sense: zarr reads it
]


@pytest.mark.parametrize("key", KEYS, ids=repr)
def test_lean_slices_read_what_zarr_reads(store: Path, key: object) -> None:
    ds = ctspine_zarr.open(store)
    case = max(ds.ctspine.case_ids(), key=lambda c: ds.ctspine.volume(c).sizes["z"])
    for array in _arrays(store, case):
        np.testing.assert_array_equal(LeanSlices(array)[key], array[key])  # type: ignore[index]


def test_volume_values_through_every_route_equal_zarr(store: Path) -> None:
    ds = ctspine_zarr.open(store)
    for case in ds.ctspine.case_ids():
        vol = ds.ctspine.volume(case)
        image, label = _arrays(store, case)
        assert type(vol.image.data) is da.Array  # a plain dask array: mixes with any other
        assert isinstance(vol.image.variable, LeanVariable)
        np.testing.assert_array_equal(vol.image.values, image[...])
        np.testing.assert_array_equal(vol.label.compute().values, label[...])
        z = vol.sizes["z"] // 2
        np.testing.assert_array_equal(vol.image.isel(z=z).values, image[z])
        np.testing.assert_array_equal(vol.label.isel(z=-1).values, label[-1])
        np.testing.assert_array_equal(vol.image.isel(z=slice(3, 9)).values, image[3:9])
        np.testing.assert_array_equal(vol.image.isel(z=z, y=slice(2, 5)).values, image[z, 2:5])
        # the same views through the dask scheduler
        np.testing.assert_array_equal(vol.image.isel(z=z).compute().values, image[z])
        np.testing.assert_array_equal(vol.image.isel(z=z).data.compute(), image[z])
        rechunked = vol.image.chunk({"z": 5})
        assert rechunked.chunks is not None and rechunked.chunks[0][0] == 5
        np.testing.assert_array_equal(rechunked.values, image[...])
        assert float(vol.image.mean()) == pytest.approx(float(np.mean(image[...])))
        masked = vol.image.where(vol.label > 0, 0).isel(z=z).values
        np.testing.assert_array_equal(masked, np.where(label[z] > 0, image[z], 0))
        with compat.forced_fallbacks():
            np.testing.assert_array_equal(vol.image.isel(z=z).values, image[z])
        transposed = vol.image.isel(z=slice(0, 4)).transpose("x", "y", "z")
        np.testing.assert_array_equal(transposed.values, image[0:4].transpose(2, 1, 0))


def test_loaded_or_changed_data_is_never_read_again_from_the_store(store: Path) -> None:
    ds = ctspine_zarr.open(store)
    case = ds.ctspine.case_ids()[0]
    vol = ds.ctspine.volume(case)
    for variable in (vol.image.isel(z=2), vol.image):
        loaded = variable.load()
        corner = (0,) * loaded.ndim
        loaded.values[corner] = 1234
        assert loaded.values[corner] == 1234
    view = ds.ctspine.volume(case).label.isel(z=1)
    view.data = np.zeros(view.shape, dtype=view.dtype)
    assert not view.values.any()


def test_a_view_reads_without_the_scheduler_only_when_local(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = ctspine_zarr.open(store)
    case = ds.ctspine.case_ids()[0]
    vol = ds.ctspine.volume(case)
    view = vol.image.isel(z=2)
    computed: list[int] = []
    original = da.Array.compute

    def counting(self: da.Array, **kwargs: object) -> object:
        computed.append(1)
        return original(self, **kwargs)

    monkeypatch.setattr(da.Array, "compute", counting)
    expected = _arrays(store, case)[0][2]
    np.testing.assert_array_equal(view.values, expected)
    assert computed == []  # read straight through LeanSlices
    with dask.config.set(scheduler="processes"):
        assert not volume_module._scheduler_is_local()
        np.testing.assert_array_equal(view.values, expected)
    assert computed == [1]  # another scheduler: dask computes it
    with compat.forced_fallbacks():
        np.testing.assert_array_equal(view.values, expected)
    assert computed == [1, 1]


def test_the_volume_pickles_and_computes_on_a_local_cluster(store: Path) -> None:
    from distributed import Client, LocalCluster

    ds = ctspine_zarr.open(store)
    case = ds.ctspine.case_ids()[1]
    vol = ds.ctspine.volume(case)
    image, label = _arrays(store, case)
    again = pickle.loads(pickle.dumps(vol))
    np.testing.assert_array_equal(again.image.values, image[...])
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster),
    ):
        assert not volume_module._scheduler_is_local()
        loaded = vol.compute()
        np.testing.assert_array_equal(loaded.image.values, image[...])
        np.testing.assert_array_equal(vol.label.isel(z=3).values, label[3])
        total = int(vol.label.astype("int64").sum().compute())
    assert total == int(label[...].astype("int64").sum())


def test_a_case_opens_with_plain_xarray_too(store: Path) -> None:
    ds = ctspine_zarr.open(store)
    case = ds.ctspine.case_ids()[0]
    plain = xr.open_zarr(store / "cases" / case)
    vol = ds.ctspine.volume(case)
    np.testing.assert_array_equal(plain.image.values, vol.image.values)
    np.testing.assert_array_equal(plain.label.isel(z=1).values, vol.label.isel(z=1).values)
