"""Case references (``STORE::CASE``), the dict form, and canonical reads of z ranges."""

from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import ctspine_zarr
from ctspine_zarr.io.caseref import (
    CaseRef,
    Reference,
    foreground_slices,
    format_reference,
    parse_reference,
    read_canonical,
    transposed,
)
from ctspine_zarr.testing.synthetic import SyntheticCase


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a.zarr::liver_1", Reference("a.zarr", "liver_1")),
        ("a.zarr::liver_1::label", Reference("a.zarr", "liver_1", "label")),
        ("a.zarr::liver_1::z=3:9", Reference("a.zarr", "liver_1", "image", (3, 9))),
        ("a.zarr::liver_1::label::z=:-2", Reference("a.zarr", "liver_1", "label", (None, -2))),
        ("/d/a.zarr::1.3.6.1.4::z=4:", Reference("/d/a.zarr", "1.3.6.1.4", "image", (4, None))),
        # pathlib folds the // of a URL: restored
        ("s3:/bucket/a.zarr::x", Reference("s3://bucket/a.zarr", "x")),
        ("s3://bucket/a.zarr::x", Reference("s3://bucket/a.zarr", "x")),
        ("http:/127.0.0.1:8000::x::label", Reference("http://127.0.0.1:8000", "x", "label")),
        ("file:/data/a.zarr::x", Reference("/data/a.zarr", "x")),
    ],
)
def test_reference_strings_parse(text: str, expected: Reference) -> None:
    assert parse_reference(text) == expected
    assert parse_reference(Path(text)) == expected
    # the string form names the same reference again
    assert parse_reference(str(expected)) == expected


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("a.zarr", "not a case reference"),
        ("a.zarr::", "not a case reference"),
        ("::case", "not a case reference"),
        ("a.zarr::c::mask", "unknown part 'mask'"),
        ("a.zarr::c::z=1-4", "START:STOP"),
        ("a.zarr::c::z=a:b", "START:STOP"),
        ({"store": "a.zarr"}, "store, case"),
        ({"store": "a.zarr", "case": "c", "colour": 1}, r"unknown: \['colour'\]"),
        ({"store": "a.zarr", "case": "c", "array": "mask"}, "'image' or 'label'"),
        (42, "not a case reference"),
    ],
)
def test_bad_references_are_refused_by_name(ref: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_reference(ref)  # type: ignore[arg-type]


def test_the_dict_form_and_caseref() -> None:
    plain = {"store": "s3://b/a.zarr", "case": "c", "array": "label", "z": [2, 5]}
    assert parse_reference(plain) == Reference("s3://b/a.zarr", "c", "label", (2, 5))
    assert parse_reference({**plain, "z": "2:5"}) == parse_reference(plain)
    ref = CaseRef("s3://b/a.zarr", "c", "label", (2, 5))
    assert ref == plain and json.loads(json.dumps(ref)) == plain  # a plain dict to JSON
    assert Path(ref).as_posix() == "s3:/b/a.zarr::c::label::z=2:5"  # what MONAI makes of it
    assert parse_reference(Path(ref)) == parse_reference(ref)
    assert ref.ndim == 0
    for again in (pickle.loads(pickle.dumps(ref)), copy.deepcopy(ref)):
        assert type(again) is CaseRef and again == ref
    with pytest.raises(ValueError, match="'image' or 'label'"):
        CaseRef("a.zarr", "c", "mask")


def test_format_reference() -> None:
    assert format_reference("a.zarr", "c") == "a.zarr::c"
    assert format_reference(Path("a.zarr"), "c", "label", (1, None)) == "a.zarr::c::label::z=1:"


def test_canonical_reads_equal_the_source_files(
    store: Path, raw_tree: tuple[Path, list[SyntheticCase]]
) -> None:
    """Every variant: ``as_closest_canonical`` of the file, voxels and affine, and z ranges."""
    for case in raw_tree[1]:
        for array, path in (("image", case.image_path), ("label", case.label_path)):
            source = nib.as_closest_canonical(nib.load(path))
            expected = np.asanyarray(source.dataobj)
            whole = read_canonical(Reference(str(store), case.case_id, array))
            np.testing.assert_array_equal(whole.data, expected)
            np.testing.assert_allclose(whole.affine, source.affine, atol=1e-4)
            n_z = expected.shape[2]
            part = read_canonical(
                Reference(str(store), case.case_id, array, (3, -2)), dtype=np.float32
            )
            assert (part.z0, part.z1, part.n_z) == (3, n_z - 2, n_z)
            assert part.data.dtype == np.float32
            np.testing.assert_array_equal(part.data, expected[:, :, 3 : n_z - 2])
            copy = read_canonical(Reference(str(store), case.case_id, array), contiguous=True)
            assert copy.data.flags.c_contiguous and copy.data.dtype == whole.data.dtype
            np.testing.assert_array_equal(copy.data, expected)
            # the slab's affine places its first voxel where the whole's slice 3 is
            np.testing.assert_allclose(part.affine[:, 3], whole.affine @ [0, 0, 3, 1])


@pytest.mark.parametrize("shape", [(1, 1, 1), (17, 65, 3), (40, 130, 129), (5, 3, 200)])
@pytest.mark.parametrize("dtype", [None, np.float32, np.int32])
def test_transposed_is_a_contiguous_transpose(shape: tuple[int, int, int], dtype: object) -> None:
    zyx = np.random.default_rng(0).integers(-500, 500, size=shape).astype(np.int16)
    got = transposed(zyx, None if dtype is None else np.dtype(dtype))  # type: ignore[arg-type]
    assert got.flags.c_contiguous and got.dtype == (zyx.dtype if dtype is None else dtype)
    np.testing.assert_array_equal(got, zyx.transpose(2, 1, 0))


def test_an_empty_z_range_names_the_case(store: Path) -> None:
    case = ctspine_zarr.open(store).ctspine.case_ids()[0]
    with pytest.raises(ValueError, match=rf"z range 5:5 holds no slice of case '{case}'"):
        read_canonical(parse_reference(f"{store}::{case}::z=5:5"))


def test_foreground_slices_are_those_with_a_vertebra(store: Path) -> None:
    ds = ctspine_zarr.open(store)
    for case in ds.ctspine.case_ids():
        label = ds.ctspine.label(case).values
        expected = np.flatnonzero((label > 0).any(axis=(1, 2)))
        np.testing.assert_array_equal(foreground_slices(str(store), case), expected)
