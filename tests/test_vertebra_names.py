"""Vertebrae by name: the indexed ``vertebra_name`` of the catalogue and the volumes (#16, 4)."""

from __future__ import annotations

import pickle
from pathlib import Path

import dask
import numpy as np
import pytest
import xarray as xr
import zarr.storage
from zarr.storage import WrapperStore

import ctspine_zarr
from ctspine_zarr.errors import CTSpineError, VertebraNotFoundError
from ctspine_zarr.sampling import PatchSequence, VolumeSequence
from ctspine_zarr.testing.synthetic import make_raw_tree
from ctspine_zarr.vertebrae import VERTEBRA_LABELS, VERTEBRA_NAMES, vertebra_name


class _RaiseIfComputes(dask.callbacks.Callback):
    def _start(self, dsk: object) -> None:
        raise AssertionError("a lazy call computed a dask graph")


def _held(ds: xr.Dataset) -> list[tuple[str, int]]:
    """``(case, label)`` of every vertebra some case of the catalogue holds."""
    rows, columns = np.nonzero(ds.has_vertebra.values)
    cases, labels = ds.case.values[rows], ds.vertebra.values[columns]
    return [(str(c), int(v)) for c, v in zip(cases, labels, strict=True)]


@pytest.fixture(params=["ctspine_zarr.open", "xr.open_zarr"])
def opened(request: pytest.FixtureRequest, store: Path) -> xr.Dataset:
    """The catalogue through either opener (volumes come through the accessor of both)."""
    return ctspine_zarr.open(store) if request.param == "ctspine_zarr.open" else xr.open_zarr(store)


def test_names_are_the_vocabulary_in_the_store_the_catalogue_and_every_volume(store: Path) -> None:
    expected = [VERTEBRA_NAMES[v] for v in VERTEBRA_LABELS]
    assert expected[:3] == ["C1", "C2", "C3"] and expected[-3:] == ["sacrum", "coccyx", "T13"]
    ds = ctspine_zarr.open(store)
    assert [vertebra_name(v) for v in ds.vertebra.values] == expected
    assert ds.vertebra_name.values.tolist() == expected
    assert ds.vertebra_name.dims == ("vertebra",)
    # stored too, for readers without this package
    assert xr.open_zarr(store).vertebra_name.values.tolist() == expected
    assert zarr.open_array(store / "vertebra_name", mode="r")[...].tolist() == expected
    for case in ds.ctspine.case_ids():
        vol = ds.ctspine.volume(case)
        assert vol.vertebra_name.values.tolist() == expected
        assert vol.slice_vertebrae.vertebra_name.values.tolist() == expected


def test_the_catalogue_selects_by_name(store: Path) -> None:
    ds = ctspine_zarr.open(store)
    held = _held(ds)
    assert held
    for case, label in held:
        name = VERTEBRA_NAMES[label]
        by_name = ds.sel(vertebra_name=name)
        xr.testing.assert_identical(by_name, ds.sel(vertebra=label))
        assert int(by_name.voxel_count.sel(case=case)) > 0
        assert int(ds.voxel_count.sel(case=case, vertebra_name=name)) == int(
            ds.voxel_count.sel(case=case, vertebra=label)
        )
    names = ["L3", "C1", "T13"]
    picked = ds.sel(vertebra_name=names)
    assert picked.vertebra.values.tolist() == [22, 1, 28]
    assert picked.vertebra_name.values.tolist() == names
    # the index survives subsetting and pickling
    lumbar = ds.isel(vertebra=slice(19, 25))
    assert int(lumbar.sel(vertebra_name="L3").vertebra) == 22
    vol = ds.ctspine.volume(ds.ctspine.case_ids()[0])
    again = pickle.loads(pickle.dumps(vol))  # as dask.distributed ships it
    assert int(again.sel(vertebra_name="sacrum").vertebra) == 26


def test_slice_vertebrae_of_a_volume_select_by_name(opened: xr.Dataset) -> None:
    held = _held(opened)
    assert held
    for case, label in held:
        vol = opened.ctspine.volume(case)
        name = VERTEBRA_NAMES[label]
        with _RaiseIfComputes():  # still lazy: selecting reads nothing
            rows = vol.slice_vertebrae.sel(vertebra_name=name)
        assert rows.dims == ("z",) and str(rows.vertebra_name.values) == name
        holds = (vol.label == label).any(("y", "x")).values
        assert holds.any()
        np.testing.assert_array_equal(rows.values, holds)
        np.testing.assert_array_equal(rows.values, vol.slice_vertebrae.sel(vertebra=label).values)
        box = vol.bbox_start.sel(vertebra_name=name).values
        assert box[0] == int(np.flatnonzero(holds)[0])


@pytest.mark.parametrize(
    ("selection", "message"),
    [
        (
            {"vertebra": "L3"},
            r"not names: select by name with \.sel\(vertebra_name='L3'\), "
            r"or by value with \.sel\(vertebra=22\)",
        ),
        (
            {"vertebra": ["l3", "S1"]},
            r"'S1' is no vertebra: 'vertebra' holds the VerSe label values 1-28",
        ),
        (
            {"vertebra": ["l3", "sacrum"]},
            r"\.sel\(vertebra_name=\['L3', 'sacrum'\]\).*\.sel\(vertebra=\[22, 26\]\)",
        ),
        (
            {"vertebra": slice("C1", "C7")},
            r"\.sel\(vertebra_name=slice\('C1', 'C7'\)\).*\.sel\(vertebra=slice\(1, 7\)\)",
        ),
        ({"vertebra": 40}, r"no vertebra 40 here \(VerSe label values here: 1, 2, .*, 28\)"),
        ({"vertebra_name": "l3"}, r"no vertebra named 'l3' here; did you mean 'L3'\?"),
        ({"vertebra_name": "L9"}, r"no vertebra named 'L9' here \(names here: C1, C2, .*, T13\)"),
        (
            {"vertebra_name": 22},
            r"no vertebra named 22 here; for a label value select \.sel\(vertebra=22\)",
        ),
    ],
    ids=repr,
)
def test_a_failed_selection_says_what_to_select(
    store: Path, selection: dict[str, object], message: str
) -> None:
    ds = ctspine_zarr.open(store)
    vol = ds.ctspine.volume(ds.ctspine.case_ids()[0])
    for target in (ds, ds.has_vertebra, vol, vol.slice_vertebrae):
        with pytest.raises(KeyError, match=message) as info:
            target.sel(selection)
        assert isinstance(info.value, VertebraNotFoundError)
        assert isinstance(info.value, CTSpineError)
        assert "\n" not in str(info.value)


def test_the_catalogue_aligns_with_the_plain_xarray_one(store: Path) -> None:
    ours = ctspine_zarr.open(store)
    plain = xr.open_zarr(store)
    total = ours.voxel_count + plain.voxel_count
    np.testing.assert_array_equal(total.values, 2 * plain.voxel_count.values)
    # plain xarray reads the stored names; one set_xindex makes them selectable there too
    plain_named = plain.set_xindex("vertebra_name")
    xr.testing.assert_equal(plain_named.sel(vertebra_name="L3").load(), ours.sel(vertebra=22))


class _KeysRead(WrapperStore):
    """A store wrapper that records the key of every read."""

    def __init__(self, store: zarr.storage.StoreLike) -> None:
        super().__init__(store)
        self.keys_read: list[str] = []

    async def get(self, key, prototype, byte_range=None):  # type: ignore[no-untyped-def]
        self.keys_read.append(key)
        return await self._store.get(key, prototype, byte_range)

    async def get_partial_values(self, prototype, key_ranges):  # type: ignore[no-untyped-def]
        key_ranges = list(key_ranges)
        self.keys_read.extend(key for key, _ in key_ranges)
        return await self._store.get_partial_values(prototype, key_ranges)


def _older_store(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A store as ingests wrote it before ``vertebra_name`` was stored."""
    from ctspine_zarr.write import ingest as ingest_module

    build = ingest_module.build_catalogue

    def without_names(*args: object, **kwargs: object) -> xr.Dataset:
        return build(*args, **kwargs).drop_vars("vertebra_name")  # type: ignore[arg-type]

    make_raw_tree(root / "raw", n_cases=2, shape=(24, 28), n_slices=(12, 16), seed=3)
    with monkeypatch.context() as patch:
        patch.setattr(ingest_module, "build_catalogue", without_names)
        report = ctspine_zarr.ingest(
            root / "raw", root / "old.zarr", workers=1, scheduler="sync", progress=False
        )
    assert report.ok, report.summary()
    return root / "old.zarr"


def test_a_store_without_stored_names_gets_the_coordinate_on_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _older_store(tmp_path, monkeypatch)
    assert "vertebra_name" not in xr.open_zarr(path).variables
    assert not (path / "vertebra_name").exists()
    counting = _KeysRead(zarr.storage.LocalStore(path, read_only=True))
    try:
        with _RaiseIfComputes():
            ds = ctspine_zarr.open(counting)
            l3 = ds.sel(vertebra_name="L3")
        # the same two reads as a store with the stored names: root document and case ids
        keys = sorted(counting.keys_read)
        assert len(keys) == 2 and keys[1] == "zarr.json"
        assert ds.vertebra_name.values.tolist() == [VERTEBRA_NAMES[v] for v in VERTEBRA_LABELS]
        assert int(l3.vertebra) == 22
        case, label = _held(ds)[0]
        rows = ds.ctspine.volume(case).slice_vertebrae.sel(vertebra_name=VERTEBRA_NAMES[label])
        assert rows.values.any()
    finally:
        ctspine_zarr.io.store.forget(counting)


def test_loaders_take_a_vertebra_by_name(store: Path) -> None:
    # SliceSequence: tests/test_sampling.py::test_vertebra_filter_by_label_and_name
    ds = ctspine_zarr.open(store)
    counts = ds.has_vertebra.values.sum(axis=0)
    label = int(ds.vertebra.values[np.flatnonzero((counts > 0) & (counts < ds.sizes["case"]))[0]])
    name = VERTEBRA_NAMES[label]
    holding = tuple(
        ds.ctspine.case_ids()[i] for i in np.flatnonzero(ds.has_vertebra.sel(vertebra=label).values)
    )
    by_name = VolumeSequence(store, None, vertebra=name)
    assert by_name.case_ids == VolumeSequence(store, None, vertebra=label).case_ids == holding
    assert by_name.vertebra == label
    patches = PatchSequence(
        store, None, vertebra=name.lower(), patch_size=(3, 8, 8), samples_per_epoch=6,
        foreground_fraction=1.0, seed=5,
    )  # fmt: skip
    assert patches.case_ids == holding
    for item in patches.getitems(range(len(patches))):
        assert item["vertebra"] == label and (item["segmentation"] == label).any()
    l3 = VolumeSequence(store, None, vertebra="L3")
    assert l3.vertebra == 22
    assert l3.case_ids == VolumeSequence(store, None, vertebra=22).case_ids
