"""The ds.ctspine accessor: lazy, one chunk per slice, close-match errors, both openers."""

from __future__ import annotations

from pathlib import Path

import dask
import numpy as np
import pytest
import xarray as xr

import ctspine_zarr
from ctspine_zarr import compat
from ctspine_zarr.errors import CaseNotFoundError, SelectionError, StoreError
from ctspine_zarr.io.vertebracoords import vertebra_coordinates


class _RaiseIfComputes(dask.callbacks.Callback):
    def _start(self, dsk: object) -> None:
        raise AssertionError("a lazy call computed a dask graph")


def test_open_zarr_and_ctspine_open_give_the_same_catalogue(store: Path) -> None:
    a = xr.open_zarr(store)
    b = ctspine_zarr.open(store)
    # the one difference: ctspine_zarr.open indexes vertebra and vertebra_name for sel
    assert "vertebra_name" in a.coords and "vertebra_name" not in a.xindexes
    named = a.load().assign_coords(vertebra_coordinates(a.vertebra.attrs, a.vertebra_name.attrs))
    xr.testing.assert_identical(named, b)
    assert a.load().equals(b)
    case = b.ctspine.case_ids()[0]
    xr.testing.assert_identical(a.ctspine.volume(case).load(), b.ctspine.volume(case).load())


def test_volume_is_lazy_and_has_mm_coordinates(store: Path) -> None:
    ds = xr.open_zarr(store)
    case = ds.ctspine.case_ids()[0]
    with _RaiseIfComputes():
        vol = ds.ctspine.volume(case)
        image = ds.ctspine.image(case)
        labels = ds.ctspine.label(case)
        two_d = ds.ctspine.slice(case, 3, lazy=True)
    assert isinstance(vol.image.data, dask.array.Array)
    assert isinstance(two_d.image.data, dask.array.Array)
    assert image.dims == labels.dims == ("z", "y", "x")
    assert set(two_d.data_vars) == {"image", "label"} and two_d.image.dims == ("y", "x")
    assert vol.z.attrs["units"] == "mm"
    spacing = vol.attrs["spacing_zyx"]
    np.testing.assert_allclose(np.diff(vol.z.values), spacing[0])
    np.testing.assert_allclose(np.diff(vol.x.values), spacing[2])
    assert vol.attrs["affine"].shape == (4, 4)


def test_label_is_named_as_its_array_and_labels_is_a_deprecated_alias(store: Path) -> None:
    ds = ctspine_zarr.open(store)
    case = ds.ctspine.case_ids()[0]
    label = ds.ctspine.label(case)
    assert label.name == "label"
    with pytest.warns(FutureWarning, match=r"renamed ds\.ctspine\.label\(\)"):
        old = ds.ctspine.labels(case)
    xr.testing.assert_identical(old, label)


def test_opening_reads_no_case_data(counting_store) -> None:
    ds = ctspine_zarr.open(counting_store)
    assert not [key for key, *_ in counting_store.reads if key.startswith("cases/")]
    # two reads: the root document (consolidated metadata) and the case ids
    # (the catalogue's chunk key encoding rotates per ingest: c/0, c.0 or 0)
    keys = sorted(key for key, *_ in counting_store.reads)
    assert len(keys) == 2 and keys[1] == "zarr.json"
    assert keys[0] in ("case/c/0", "case/c.0", "case/0")
    counting_store.reads.clear()
    case = ds.ctspine.case_ids()[0]
    ds.ctspine.volume(case)
    # one metadata document, the case's own consolidated zarr.json; no chunk
    assert [key for key, *_ in counting_store.reads] == [f"cases/{case}/zarr.json"]
    counting_store.reads.clear()
    ds.ctspine.volume(case)
    assert counting_store.reads == []


def test_a_slice_reads_one_chunk_per_array(counting_store) -> None:
    ds = ctspine_zarr.open(counting_store)
    case = ds.ctspine.case_ids()[1]
    vol = ds.ctspine.volume(case)
    counting_store.reads.clear()
    values = ds.ctspine.slice(case, 5).compute()
    keys = {key for key, *_ in counting_store.reads}
    assert keys == {f"cases/{case}/image/c/0/0/0", f"cases/{case}/label/c/0/0/0"}
    # per array: the shard index and one inner chunk, never the whole shard
    assert len(counting_store.reads) <= 4
    shard_bytes = vol.image.isel(z=slice(0, 32)).nbytes
    assert sum(n or 0 for *_, n in counting_store.reads) < shard_bytes / 4
    np.testing.assert_array_equal(values.image.values, vol.image.values[5])


@pytest.mark.parametrize("opener", ["path", "fsspec url"])
def test_a_read_slice_equals_the_lazy_slice(store: Path, opener: str) -> None:
    ds = ctspine_zarr.open(store if opener == "path" else f"local://{store}")
    for case in ds.ctspine.case_ids()[:2]:
        n = ds.ctspine.volume(case).sizes["z"]
        for z in sorted({0, 1, n // 2, n - 1, -1, -n}):
            with _RaiseIfComputes():  # read without a dask graph
                read = ds.ctspine.slice(case, z)
            assert isinstance(read.image.data, np.ndarray)
            xr.testing.assert_identical(read, ds.ctspine.slice(case, z, lazy=True).compute())


def test_changing_a_slice_changes_neither_the_volume_nor_the_next_slice(store: Path) -> None:
    ds = ctspine_zarr.open(store)
    case = ds.ctspine.case_ids()[0]
    first = ds.ctspine.slice(case, 1)
    first.x.attrs["units"] = "cm"
    first.attrs["case"] = "changed"
    first.image.attrs["units"] = "changed"
    assert ds.ctspine.volume(case).x.attrs["units"] == "mm"
    again = ds.ctspine.slice(case, 1)
    assert again.x.attrs["units"] == "mm" and again.attrs["case"] == case
    assert again.image.attrs["units"] == "HU"
    with pytest.raises(TypeError):
        ds.ctspine.slice(case, 2.7)  # type: ignore[arg-type]


def test_a_read_slice_does_not_need_private_xarray(store: Path) -> None:
    ds = ctspine_zarr.open(store)
    case = ds.ctspine.case_ids()[0]
    fast = ds.ctspine.slice(case, 2)

    with compat.forced_fallbacks():
        public = ds.ctspine.slice(case, 2)
    xr.testing.assert_identical(public, fast)
    xr.testing.assert_identical(public, ds.ctspine.slice(case, 2, lazy=True).compute())


def test_unknown_case_names_close_matches(store: Path) -> None:
    ds = ctspine_zarr.open(store)
    known = ds.ctspine.case_ids()[0]
    typo = known[:-1] + ("x" if known[-1] != "x" else "y")
    with pytest.raises(KeyError) as info:
        ds.ctspine.volume(typo)
    assert isinstance(info.value, CaseNotFoundError)
    assert repr(known) in str(info.value)


def test_slice_index_out_of_range(store: Path) -> None:
    ds = ctspine_zarr.open(store)
    case = ds.ctspine.case_ids()[0]
    n = int(ds.sel(case=case).n_slices)
    with pytest.raises(IndexError, match=str(n)):
        ds.ctspine.slice(case, n)


def test_case_ids_filters_by_split_and_source(store: Path) -> None:
    ds = ctspine_zarr.open(store)
    everything = ds.ctspine.case_ids()
    for source in set(ds.source.values.astype(object)):
        ids = ds.ctspine.case_ids(source=source)
        assert ids and set(ids) <= set(everything)
        assert all(str(ds.sel(case=c).source.values) == source for c in ids)
    with pytest.raises(SelectionError, match="unknown source 'nowhere'; the sources are COLONOG"):
        ds.ctspine.case_ids(split="train", source="nowhere")  # was [], silently


def test_accessor_on_a_dataset_from_elsewhere_says_how_to_open() -> None:
    ds = xr.Dataset({"case": ("case", ["a"])})
    with pytest.raises(StoreError, match="ctspine_zarr.open"):
        ds.ctspine.volume("a")


def test_opening_a_foreign_zarr_store_is_refused(tmp_path: Path) -> None:
    import zarr

    zarr.open_group(tmp_path / "x.zarr", mode="w")
    with pytest.raises(StoreError, match="not a ctspine store"):
        ctspine_zarr.open(tmp_path / "x.zarr")
    with pytest.raises(StoreError, match="no Zarr v3 store"):
        ctspine_zarr.open(tmp_path / "missing.zarr")
