"""Reading NIfTI files exactly: dtype choice, scaling, canonical orientation, refusals."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from ctspine_zarr.errors import InvalidCaseError
from ctspine_zarr.io.nifti import read_pair, read_volume
from ctspine_zarr.io.voxels import smallest_exact_dtype

NIBABEL_DATA = Path(nib.__file__).parent / "tests" / "data"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (np.array([-1024, 3071], dtype=np.float32), "int16"),
        (np.array([0, 200], dtype=np.int32), "uint8"),
        (np.array([-3, 100], dtype=np.int64), "int8"),
        (np.array([0, 60000], dtype=np.float64), "uint16"),
        (np.array([0.5, 1.0], dtype=np.float64), "float32"),
        (np.array([0.1, 1.0], dtype=np.float64), "float64"),
        (np.array([np.nan, 1.0], dtype=np.float32), "float32"),
        (np.array([True, False]), "uint8"),
    ],
)
def test_smallest_exact_dtype(values: np.ndarray, expected: str) -> None:
    assert smallest_exact_dtype(values) == np.dtype(expected)


def _save(path: Path, data: np.ndarray, affine: np.ndarray | None = None, **slope) -> Path:
    img = nib.Nifti1Image(data, np.diag([0.8, 0.8, 2.0, 1.0]) if affine is None else affine)
    if slope:
        img.header.set_slope_inter(slope["slope"], slope["inter"])
    nib.save(img, path)
    return path


def test_uint16_with_intercept_becomes_int16_hu(tmp_path: Path) -> None:
    hu = np.random.default_rng(0).integers(-1024, 3000, (6, 5, 4)).astype(np.int16)
    path = _save(tmp_path / "a.nii.gz", (hu + 1024).astype(np.uint16), slope=1.0, inter=-1024.0)
    vol = read_volume(str(path), case_id="a")
    assert vol.data.dtype == np.int16
    np.testing.assert_array_equal(vol.data, hu.transpose(2, 1, 0))


@pytest.mark.parametrize(
    ("stored", "slope", "inter"),
    [
        (np.zeros((3, 4, 2), dtype=np.uint8), 100000.0, 0.0),  # slope beyond the stored dtype
        (np.arange(100, 124, dtype=np.uint8).reshape(3, 4, 2), 300.0, -36000.0),
        (np.arange(-12, 12, dtype=np.int16).reshape(3, 4, 2), 1.0, 40000.0),
    ],
)
def test_integral_scaling_equals_nibabel_whatever_the_slope(
    tmp_path: Path, stored: np.ndarray, slope: float, inter: float
) -> None:
    path = _save(tmp_path / "s.nii.gz", stored, slope=slope, inter=inter)
    expected = np.asanyarray(nib.as_closest_canonical(nib.load(path)).dataobj)
    vol = read_volume(str(path), case_id="s")
    assert vol.data.dtype.kind in "iu"
    np.testing.assert_array_equal(vol.data, expected.transpose(2, 1, 0))


def test_reorientation_equals_as_closest_canonical(tmp_path: Path) -> None:
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    lps = np.array([[0, 0, -0.7, 5], [-0.9, 0, 0, 6], [0, 2.5, 0, 7], [0, 0, 0, 1.0]])
    path = _save(tmp_path / "b.nii", data, lps)
    vol = read_volume(str(path), case_id="b")
    canonical = nib.as_closest_canonical(nib.load(path))
    np.testing.assert_array_equal(vol.data, np.asanyarray(canonical.dataobj).transpose(2, 1, 0))
    np.testing.assert_allclose(vol.affine, canonical.affine)


def test_real_4d_series_is_refused() -> None:
    with pytest.raises(InvalidCaseError, match="4D series"):
        read_volume(str(NIBABEL_DATA / "example4d.nii.gz"), case_id="x")


def test_nifti2_series_is_refused_and_its_first_volume_reads_exactly(tmp_path: Path) -> None:
    path = NIBABEL_DATA / "example_nifti2.nii.gz"
    with pytest.raises(InvalidCaseError, match="series"):
        read_volume(str(path), case_id="n2")
    img = nib.load(path)
    first = nib.Nifti2Image(np.asanyarray(img.dataobj)[..., 0], img.affine, img.header)
    nib.save(first, tmp_path / "n2.nii.gz")
    vol = read_volume(str(tmp_path / "n2.nii.gz"), case_id="n2")
    expected = np.asanyarray(nib.as_closest_canonical(first).dataobj).transpose(2, 1, 0)
    np.testing.assert_array_equal(vol.data, expected)


@pytest.mark.parametrize("name", ["anatomical.nii", "functional.nii", "standard.nii.gz"])
def test_nibabel_test_files_read_exactly(name: str) -> None:
    img = nib.load(NIBABEL_DATA / name)
    if len(img.shape) > 3 and any(n > 1 for n in img.shape[3:]):
        with pytest.raises(InvalidCaseError, match="series"):
            read_volume(str(NIBABEL_DATA / name), case_id=name)
        return
    vol = read_volume(str(NIBABEL_DATA / name), case_id=name)
    canonical = nib.as_closest_canonical(nib.squeeze_image(img))
    expected = np.asanyarray(canonical.dataobj)
    np.testing.assert_array_equal(vol.data, expected.reshape(expected.shape[:3]).transpose(2, 1, 0))


def test_corrupt_gzip_is_refused_by_name(tmp_path: Path) -> None:
    path = _save(tmp_path / "c.nii.gz", np.ones((8, 8, 8), dtype=np.int16))
    raw = bytearray(path.read_bytes())
    raw[-6] ^= 0xFF  # inside the CRC/length trailer
    path.write_bytes(bytes(raw))
    with pytest.raises(InvalidCaseError, match=r"c\.nii\.gz: corrupt gzip"):
        read_volume(str(path), case_id="c")


def test_truncated_gzip_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.nii.gz"
    payload = gzip.compress(nib.Nifti1Image(np.ones((8, 8, 8), np.int16), np.eye(4)).to_bytes())
    path.write_bytes(payload[: len(payload) // 2])
    with pytest.raises(InvalidCaseError, match="truncated"):
        read_volume(str(path), case_id="d")


def test_label_checks(tmp_path: Path) -> None:
    image = _save(tmp_path / "i.nii.gz", np.zeros((4, 4, 4), np.int16))
    nan_label = np.zeros((4, 4, 4), np.float32)
    nan_label[0, 0, 0] = np.nan
    with pytest.raises(InvalidCaseError, match="NaN"):
        read_pair(str(image), str(_save(tmp_path / "n.nii.gz", nan_label)), case_id="n")
    big = np.full((4, 4, 4), 300, np.int16)
    with pytest.raises(InvalidCaseError, match=r"0\.\.255"):
        read_pair(str(image), str(_save(tmp_path / "b.nii.gz", big)), case_id="b")
    half = np.full((4, 4, 4), 1.5, np.float32)
    with pytest.raises(InvalidCaseError, match="integral"):
        read_pair(str(image), str(_save(tmp_path / "h.nii.gz", half)), case_id="h")
    other = _save(tmp_path / "s.nii.gz", np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(InvalidCaseError, match="shape"):
        read_pair(str(image), str(other), case_id="s")
    moved = _save(tmp_path / "m.nii.gz", np.zeros((4, 4, 4), np.uint8), np.diag([1, 1, 1, 1.0]))
    with pytest.raises(InvalidCaseError, match="affine"):
        read_pair(str(image), str(moved), case_id="m")
    ok = _save(tmp_path / "f.nii.gz", np.full((4, 4, 4), 22.0, np.float32))
    _, label = read_pair(str(image), str(ok), case_id="f")
    assert label.data.dtype == np.uint8 and (label.data == 22).all()


def test_disagreeing_qform_and_sform_are_refused(tmp_path: Path) -> None:
    img = nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.diag([1.0, 1.0, 2.0, 1.0]))
    shifted = img.affine.copy()
    shifted[0, 3] += 5.0
    img.set_qform(img.affine, code=1)
    img.set_sform(shifted, code=2)
    nib.save(img, tmp_path / "q.nii.gz")
    with pytest.raises(InvalidCaseError, match="qform and sform disagree"):
        read_volume(str(tmp_path / "q.nii.gz"), case_id="q")


def test_zero_voxel_size_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "z.nii"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), None), path)
    raw = bytearray(path.read_bytes())
    raw[88:92] = np.float32(0.0).tobytes()  # pixdim[3], the slice thickness
    path.write_bytes(bytes(raw))
    # nibabel itself repairs a zero voxel size to 1 on load, silently
    assert nib.load(path).header["pixdim"][3] == 1
    with pytest.raises(InvalidCaseError, match="positive and finite"):
        read_volume(str(path), case_id="z")


def test_nan_and_inf_in_a_float_image_are_kept_and_flagged(tmp_path: Path) -> None:
    data = np.random.default_rng(1).normal(0, 100, (5, 4, 3)).astype(np.float32)
    data[0, 0, 0], data[1, 2, 0] = np.nan, np.inf
    vol = read_volume(str(_save(tmp_path / "f.nii.gz", data)), case_id="f")
    assert vol.has_nonfinite and vol.data.dtype == np.float32
    np.testing.assert_array_equal(vol.data, data.transpose(2, 1, 0))  # NaN positions equal


def test_no_geometry_is_noted(tmp_path: Path) -> None:
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), None), tmp_path / "g.nii.gz")
    header = nib.load(tmp_path / "g.nii.gz").header
    assert header["qform_code"] == header["sform_code"] == 0
    vol = read_volume(str(tmp_path / "g.nii.gz"), case_id="g")
    assert any("no geometry" in note for note in vol.warnings)


@pytest.mark.parametrize("dtype", ["int16", "uint16", "int32", "float32"])
def test_integer_labels_in_range_become_uint8_in_canonical_order(
    tmp_path: Path, dtype: str
) -> None:
    rng = np.random.default_rng(4)
    values = rng.integers(0, 256, size=(5, 4, 3)).astype(dtype)
    values[0, 0, 0], values[1, 0, 0] = 0, 255
    affine = np.array([[0, 0, -2.0, 0], [-1.0, 0, 0, 0], [0, 1.5, 0, 0], [0, 0, 0, 1]])
    path = _save(tmp_path / "l.nii.gz", values, affine)
    label = read_volume(str(path), case_id="l", label=True)
    expected = np.asanyarray(nib.as_closest_canonical(nib.load(path)).dataobj).transpose(2, 1, 0)
    assert label.data.dtype == np.uint8
    np.testing.assert_array_equal(label.data, expected)
    values[2, 1, 1] = 256 if np.dtype(dtype).kind == "u" else -1
    with pytest.raises(InvalidCaseError, match=r"0\.\.255"):
        read_volume(str(_save(tmp_path / "bad.nii.gz", values, affine)), case_id="l", label=True)
