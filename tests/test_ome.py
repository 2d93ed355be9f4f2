"""Every case is an OME-Zarr 0.5 image with a vertebra label image, as viewers read it.

Checked with the OME-Zarr validator ``ome-zarr-models`` and with ``ome-zarr``'s
``Reader`` (what napari-ome-zarr uses), not with our own idea of the spec.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader
from ome_zarr_models.v05 import Image
from ome_zarr_models.v05.image_label import ImageLabel

import ctspine_zarr
from ctspine_zarr.info import describe
from ctspine_zarr.io.ome import OBLIQUE_KEY, image_attrs, oblique_note
from ctspine_zarr.schema import CASES_GROUP, OME_LABEL
from ctspine_zarr.testing.synthetic import make_raw_tree
from ctspine_zarr.vertebrae import VERTEBRA_COLOURS, VERTEBRA_LABELS, VERTEBRA_NAMES


def _cases(store: Path) -> list[str]:
    return ctspine_zarr.open(store).ctspine.case_ids()


def test_every_case_is_a_valid_ome_zarr_image_with_its_label_image(store: Path) -> None:
    for case_id in _cases(store):
        group = zarr.open_group(store / CASES_GROUP / case_id, mode="r")
        image = Image.from_zarr(group)
        multiscale = image.attributes.ome.multiscales[0]
        assert [d.path for d in multiscale.datasets] == ["image"]  # the voxels stored once
        assert [a.name for a in multiscale.axes] == ["z", "y", "x"]
        assert {a.unit for a in multiscale.axes} == {"millimeter"}
        assert image.labels is not None and list(image.labels.label_paths) == ["vertebrae"]
        label_group = zarr.open_group(store / CASES_GROUP / case_id / "labels/vertebrae")
        ImageLabel.from_zarr(label_group)


def test_ome_scale_and_translation_give_the_volume_coordinates(store: Path) -> None:
    ds = ctspine_zarr.open(store)
    for case_id in _cases(store):
        vol = ds.ctspine.volume(case_id)
        group = zarr.open_group(store / CASES_GROUP / case_id, mode="r")
        scale, translation = group.attrs["ome"]["multiscales"][0]["datasets"][0][
            "coordinateTransformations"
        ]
        for axis, s, t in zip("zyx", scale["scale"], translation["translation"], strict=True):
            index = np.arange(vol.sizes[axis])
            np.testing.assert_allclose(t + s * index, vol[axis].values, atol=1e-4)


def test_napari_s_reader_finds_the_image_and_the_named_coloured_labels(store: Path) -> None:
    case_id = _cases(store)[0]
    nodes = list(Reader(parse_url(str(store / CASES_GROUP / case_id)))())
    image = nodes[0]
    assert image.metadata["name"] == case_id
    assert image.data[0].shape == zarr.open_array(store / CASES_GROUP / case_id / "image").shape
    labels = [n for n in nodes if n.data and n.metadata.get("name") == "vertebrae"]
    assert len(labels) == 1
    label = labels[0]
    np.testing.assert_array_equal(
        np.asarray(label.data[0]), ctspine_zarr.open(store).ctspine.label(case_id).values
    )
    colours = label.metadata["color"]
    names = label.metadata["properties"]
    for value in VERTEBRA_LABELS:
        expected = [int(VERTEBRA_COLOURS[value][i : i + 2], 16) / 255 for i in (1, 3, 5)]
        np.testing.assert_allclose(colours[value][:3], expected)
        assert names[value]["name"] == VERTEBRA_NAMES[value]


def test_xarray_still_opens_a_case_as_image_and_label(store: Path) -> None:
    case_id = _cases(store)[0]
    ds = xr.open_zarr(store / CASES_GROUP / case_id)
    assert {"image", "label"} <= set(ds.data_vars)
    assert ds.image.dims == ds.label.dims == ("z", "y", "x")


def test_the_label_copy_costs_under_three_percent_of_the_store(tmp_path: Path) -> None:
    # a case of the dataset's in-plane size (the session's tiny cases are mostly metadata)
    make_raw_tree(tmp_path / "raw", n_cases=1, shape=(512, 512), n_slices=(40, 40), seed=3)
    store = tmp_path / "s.zarr"
    assert ctspine_zarr.ingest(tmp_path / "raw", store, workers=1).ok

    def size(path: Path) -> int:
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())

    copies = sum(size(store / CASES_GROUP / c / OME_LABEL) for c in _cases(store))
    assert 0 < copies / size(store) < 0.03


def test_an_oblique_affine_is_said_in_the_attrs() -> None:
    straight = np.diag([0.8, 0.8, 2.5, 1.0])
    assert oblique_note(straight) is None
    angle = np.deg2rad(10)
    rotation = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    oblique = np.eye(4)
    oblique[:3, :3] = rotation @ np.diag([0.8, 0.8, 2.5])
    oblique[:3, 3] = [10.0, -20.0, 30.0]
    assert "oblique" in (oblique_note(oblique) or "")
    transforms = image_attrs("c", "image", oblique)["multiscales"][0]["datasets"][0][
        "coordinateTransformations"
    ]
    np.testing.assert_allclose(transforms[0]["scale"], [2.5, 0.8, 0.8])
    np.testing.assert_allclose(transforms[1]["translation"], [30.0, -20.0, 10.0])
    assert OBLIQUE_KEY == "ome_geometry_note"


@pytest.fixture(scope="module")
def compact_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("imagecodecs")
    root = tmp_path_factory.mktemp("ome-compact")
    make_raw_tree(
        root / "raw", n_cases=2, shape=(192, 192), n_slices=(10, 14), seed=4
    )  # JPEG-LS wins
    store = root / "c.zarr"
    assert ctspine_zarr.ingest(root / "raw", store, workers=1, codec="compact").ok
    return store


def test_info_and_verify_name_the_cases_other_readers_cannot_decode(compact_store: Path) -> None:
    ds = ctspine_zarr.open(compact_store)
    ids = [
        c for c, k in zip(ds.case.values, ds.image_codec.values, strict=True) if "jpeg" in str(k)
    ]
    assert ids
    text = describe(ctspine_zarr.open(compact_store))
    assert "cannot decode the images of these cases (compact codec)" in text
    assert all(case_id in text for case_id in ids)
    report = ctspine_zarr.verify(compact_store)
    assert report.ok
    warned = sorted(p.case_id for p in report.problems if p.kind == "codec")
    assert warned == sorted(ids)


def test_a_damaged_label_copy_is_an_error_and_a_case_without_ome_a_warning(
    tmp_path: Path, store: Path
) -> None:
    import shutil

    copy = tmp_path / "s.zarr"
    shutil.copytree(store, copy)
    first, second = _cases(copy)[:2]
    ome_label = zarr.open_array(copy / CASES_GROUP / first / OME_LABEL, mode="r+")
    z = ome_label.shape[0] // 2
    ome_label[z] = np.where(ome_label[z] == 0, 0, 1)  # relabelled: viewers would lie
    report = ctspine_zarr.verify(copy)
    assert [(p.case_id, p.kind) for p in report.problems if p.severity == "error"][-1] == (
        first,
        "label",
    )
    path = copy / CASES_GROUP / second / "zarr.json"
    document = json.loads(path.read_bytes())
    del document["attributes"]["ome"]  # as format 2 wrote it
    path.write_text(json.dumps(document))
    report = ctspine_zarr.verify(copy)
    assert any(p.case_id == second and "format 2" in str(p) for p in report.problems)
