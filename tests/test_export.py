"""Export back to NIfTI: the original header, orientation, data type and raw values."""

from __future__ import annotations

import gzip
import io
import itertools
import shutil
import warnings
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import zarr
from nibabel.orientations import apply_orientation, io_orientation

import ctspine_zarr
from ctspine_zarr.errors import CaseNotFoundError, StoreError
from ctspine_zarr.io.export import header_from_bytes, source_layout, to_nifti, unscale
from ctspine_zarr.schema import CASES_GROUP, COMPLETE_KEY, IMAGE_HEADER
from ctspine_zarr.testing.synthetic import SyntheticCase

NIBABEL_DATA = Path(nib.__file__).parent / "tests" / "data"
#: nibabel's own 3D single-volume test files.
NIBABEL_FILES = (
    "anatomical.nii",
    "standard.nii.gz",
    "reoriented_anat_moved.nii",
    "resampled_anat_moved.nii",
)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _file_bytes(path: Path) -> bytes:
    data = Path(path).read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def _write_nifti(
    path: Path,
    raw: np.ndarray,
    affine: np.ndarray,
    *,
    klass: type[nib.Nifti1Header] = nib.Nifti1Header,
    endianness: str = "<",
    slope: float = np.nan,
    inter: float = np.nan,
    units: tuple[str, str] = ("mm", "sec"),
    codes: tuple[int, int] = (1, 1),
    extensions: tuple[bytes, ...] = (),
    descrip: bytes = b"",
    pad: int = 0,
) -> Path:
    """Write a single-file NIfTI byte by byte, so that every header field is the one given."""
    hdr = klass(endianness=endianness)
    hdr.set_data_dtype(raw.dtype)
    hdr.set_data_shape(raw.shape)
    hdr.set_qform(affine, code=codes[0])
    hdr.set_sform(affine, code=codes[1])
    hdr.set_xyzt_units(*units)
    hdr["scl_slope"] = slope
    hdr["scl_inter"] = inter
    hdr["descrip"] = descrip
    hdr["magic"] = hdr.single_magic
    for text in extensions:
        hdr.extensions.append(nib.nifti1.Nifti1Extension("comment", text))
    offset = int(klass.single_vox_offset + hdr.extensions.get_sizeondisk() + pad)
    hdr.set_data_offset(offset)
    buf = io.BytesIO()
    buf.write(hdr.binaryblock)
    buf.write(b"\x01\x00\x00\x00" if extensions else b"\x00\x00\x00\x00")
    hdr.extensions.write_to(buf, byteswap=endianness != nib.volumeutils.native_code)
    buf.write(b"\x00" * (offset - buf.tell()))
    buf.write(raw.astype(hdr.get_data_dtype()).tobytes(order="F"))
    path.parent.mkdir(parents=True, exist_ok=True)
    data = buf.getvalue()
    path.write_bytes(gzip.compress(data, mtime=0) if path.name.endswith(".gz") else data)
    return path


def assert_same_nifti(exported: Path, source: Path) -> None:
    """The export must read back as the source does, down to the header bytes."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, src = nib.load(exported), nib.load(source)
    assert type(out) is type(src)
    assert out.shape == src.shape
    assert out.get_data_dtype() == src.get_data_dtype()
    assert out.header.binaryblock == src.header.binaryblock
    assert out.dataobj.offset == src.dataobj.offset
    raw_out, raw_src = _file_bytes(exported), _file_bytes(source)
    assert raw_out[: out.dataobj.offset] == raw_src[: src.dataobj.offset], "file header bytes"
    assert out.header.extensions == src.header.extensions
    assert (out.dataobj.slope, out.dataobj.inter) == (src.dataobj.slope, src.dataobj.inter)
    np.testing.assert_array_equal(out.affine, src.affine)
    unscaled_out, unscaled_src = out.dataobj.get_unscaled(), src.dataobj.get_unscaled()
    assert unscaled_out.dtype == unscaled_src.dtype
    np.testing.assert_array_equal(unscaled_out, unscaled_src)
    scaled_out, scaled_src = np.asanyarray(out.dataobj), np.asanyarray(src.dataobj)
    assert scaled_out.dtype == scaled_src.dtype
    np.testing.assert_array_equal(scaled_out, scaled_src)
    assert raw_out == raw_src, "the whole decompressed file is the source's, byte for byte"


# --------------------------------------------------------------------------------------------
# Orientation and scaling
# --------------------------------------------------------------------------------------------

ORIENTATIONS = [
    np.array([[axis, flip] for axis, flip in zip(perm, flips, strict=True)], dtype=float)
    for perm in itertools.permutations(range(3))
    for flips in itertools.product((1, -1), repeat=3)
]


@pytest.mark.parametrize("ornt", ORIENTATIONS, ids=lambda o: str(o.astype(int).tolist()))
def test_source_layout_inverts_apply_orientation(ornt: np.ndarray) -> None:
    source = np.arange(2 * 3 * 5).reshape(2, 3, 5)
    # an affine of exactly this orientation, slightly oblique
    rotation = np.zeros((3, 3))
    for i, (axis, flip) in enumerate(ornt):
        rotation[int(axis), i] = flip * (0.5 + i)
    angle = np.deg2rad(7.0)
    tilt = np.array(
        [[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]]
    )
    affine = np.eye(4)
    affine[:3, :3] = tilt @ rotation
    found = io_orientation(affine)
    np.testing.assert_array_equal(found, ornt)
    canonical = apply_orientation(source, found)
    back = source_layout(canonical, found)
    assert back.shape == source.shape
    np.testing.assert_array_equal(back, source)


@pytest.mark.parametrize(
    ("raw_dtype", "slope", "inter"),
    [
        ("<i2", 2.5, -10.0),
        (">i2", 2.5, -10.0),
        ("<u2", 1.0, -1024.0),
        ("<i2", 0.1, 3.0),
        ("<u1", 1.0, 0.0),
        ("<i4", 3.0, 0.5),
        ("<f4", 0.5, 1.25),
        (">f4", 0.1, -7.3),
        ("<f8", 1.0, 0.0),
    ],
)
def test_unscale_gives_back_the_raw_values(raw_dtype: str, slope: float, inter: float) -> None:
    rng = np.random.default_rng(3)
    dtype = np.dtype(raw_dtype)
    if dtype.kind == "f":
        raw = rng.normal(0, 300, size=(6, 7)).astype(dtype)
        raw[0, :3] = [np.nan, np.inf, -np.inf]
    else:
        info = np.iinfo(dtype)
        raw = rng.integers(info.min, info.max, size=(6, 7), endpoint=True).astype(dtype)
    scaled = nib.volumeutils.apply_read_scaling(raw, np.float64(slope), np.float64(inter))
    back = unscale(scaled, dtype, slope, inter)
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, raw)


def test_unscale_refuses_values_the_type_cannot_hold() -> None:
    with pytest.raises(ValueError, match="cannot be written as uint16"):
        unscale(np.array([-5, 3], dtype=np.int16), np.dtype("<u2"), 1.0, 0.0)
    with pytest.raises(ValueError, match="cannot be written as int16"):
        unscale(np.array([0.5, 2.0]), np.dtype("<i2"), 1.0, 0.0)


def test_header_from_bytes_reads_both_versions_and_byte_orders() -> None:
    for klass in (nib.Nifti1Header, nib.Nifti2Header):
        for endianness in ("<", ">"):
            hdr = klass(endianness=endianness)
            hdr.set_data_offset(klass.single_vox_offset)
            parsed = header_from_bytes(hdr.binaryblock + b"\x00" * 4)
            assert type(parsed) is klass
            assert parsed.endianness == endianness
            # the stored bytes are exactly [0, vox_offset): nothing missing, nothing extra
            for wrong in (hdr.binaryblock, hdr.binaryblock + b"\x00" * 8):
                with pytest.raises(ValueError, match="vox_offset is"):
                    header_from_bytes(wrong)
    with pytest.raises(ValueError, match="neither 348 nor 540"):
        header_from_bytes(b"\x00" * 400)
    with pytest.raises(ValueError, match="sizeof_hdr is 348"):
        header_from_bytes(nib.Nifti1Header().binaryblock[:100])


# --------------------------------------------------------------------------------------------
# The fixture store
# --------------------------------------------------------------------------------------------

ROLES = ("image", "label")


def _source(case: SyntheticCase, role: str) -> Path:
    return case.image_path if role == "image" else case.label_path


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("index", range(6))
def test_fixture_case_exports_exactly(
    store: Path, raw_tree, tmp_path: Path, index: int, role: str
) -> None:
    case = raw_tree[1][index]
    out = to_nifti(store, case.case_id, tmp_path / "out.nii.gz", label=role == "label")
    assert_same_nifti(out, _source(case, role))


def test_fixture_case_exports_from_a_url(store: Path, raw_tree, s3, tmp_path: Path) -> None:
    """A store on S3: the storage options reach the store; the output stays local."""
    import s3fs

    bucket, options, _ = s3
    url = f"{bucket}/s.zarr"
    s3fs.S3FileSystem(**options).put(str(store), url, recursive=True)
    try:
        for case in raw_tree[1][:2]:
            for role in ROLES:
                out = tmp_path / f"{case.case_id}-{role}.nii.gz"
                to_nifti(url, case.case_id, out, label=role == "label", storage_options=options)
                assert_same_nifti(out, _source(case, role))
        with pytest.raises(CaseNotFoundError):
            to_nifti(url, "no-such-case", tmp_path / "x.nii", storage_options=options)
    finally:
        ctspine_zarr.io.store.forget(url)


def test_export_refuses_bad_requests(store: Path, raw_tree, tmp_path: Path) -> None:
    case = raw_tree[1][0]
    with pytest.raises(ValueError, match=r"\.nii or \.nii\.gz"):
        to_nifti(store, case.case_id, tmp_path / "out.img")
    with pytest.raises(CaseNotFoundError, match="did you mean"):
        to_nifti(store, case.case_id[:-1], tmp_path / "out.nii.gz")
    unfinished = tmp_path / "unfinished.zarr"
    shutil.copytree(store, unfinished)
    group = zarr.open_group(unfinished, path=f"{CASES_GROUP}/{case.case_id}", mode="r+")
    group.attrs[COMPLETE_KEY] = False
    with pytest.raises(StoreError, match="unfinished write"):
        to_nifti(unfinished, case.case_id, tmp_path / "out.nii.gz")
    assert list(tmp_path.glob("*.nii*")) == []


def test_header_that_does_not_fit_the_voxels_is_refused(
    store: Path, raw_tree, tmp_path: Path
) -> None:
    """A stored header whose data type cannot hold the voxels: an error, and no file left."""
    case = raw_tree[1][0]
    copy = tmp_path / "copy.zarr"
    shutil.copytree(store, copy)
    group = zarr.open_group(copy, path=f"{CASES_GROUP}/{case.case_id}", mode="r+")
    stored = group[IMAGE_HEADER]
    assert isinstance(stored, zarr.Array)
    data = stored[...].tobytes()
    header = header_from_bytes(data)
    header.set_data_dtype(np.uint8)  # CT values run from -1024
    stored[...] = np.frombuffer(header.binaryblock + data[len(header.binaryblock) :], np.uint8)
    out = tmp_path / "out" / "image.nii.gz"
    out.parent.mkdir()
    with pytest.raises(StoreError, match="cannot be written as uint8"):
        to_nifti(copy, case.case_id, out)
    assert list(out.parent.iterdir()) == []  # the temporary file is gone too


def test_gzip_export_is_deterministic(store: Path, raw_tree, tmp_path) -> None:
    case = raw_tree[1][1]
    first = to_nifti(store, case.case_id, tmp_path / "a.nii.gz")
    second = to_nifti(store, case.case_id, tmp_path / "b.nii.gz")
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes()[4:8] == b"\x00\x00\x00\x00"  # gzip mtime 0
    plain = to_nifti(store, case.case_id, tmp_path / "c.nii")
    assert plain.read_bytes() == gzip.decompress(first.read_bytes())
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    reference = tmp_path / "reference"
    reference.write_bytes(b"")
    assert first.stat().st_mode == reference.stat().st_mode  # the umask's permissions


# --------------------------------------------------------------------------------------------
# Header variants and nibabel's own files
# --------------------------------------------------------------------------------------------


def _oblique(zooms: tuple[float, float, float], shift: tuple[float, float, float]) -> np.ndarray:
    a, b = np.deg2rad(20.0), np.deg2rad(10.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ rx @ np.diag(zooms)
    affine[:3, 3] = shift
    return affine


def _axis_affine(axcodes: str, zooms: tuple[float, float, float]) -> np.ndarray:
    """An affine whose voxel axes point along ``axcodes`` (e.g. ``"PIL"``)."""
    world = {"R": (0, 1), "L": (0, -1), "A": (1, 1), "P": (1, -1), "S": (2, 1), "I": (2, -1)}
    affine = np.eye(4)
    affine[:3, :3] = 0
    for i, code in enumerate(axcodes):
        axis, sign = world[code]
        affine[axis, i] = sign * zooms[i]
    affine[:3, 3] = (-30.0, 12.5, -400.0)
    return affine


def _ct(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(-1024, 2000, size=shape).astype(np.int16)


def _labels(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.choice(np.array([0, 0, 0, 20, 21, 22], dtype=np.uint8), size=shape)


VARIANTS = (
    "nifti2-extension",
    "big-endian",
    "plain-nii",
    "int16-slope-inter",
    "float64",
    "float32-scaled",
    "singleton-4d",
    "sagittal-flipped",
    "oblique",
    "extensions",
    "padded-offset",
    "metres",
    *(f"nibabel-{name.split('.')[0]}" for name in NIBABEL_FILES),
)


def _variant_tree(root: Path) -> dict[str, tuple[Path, Path]]:
    """Lay out one case per variant in a raw tree; return ``{case_id: (image, label)}``."""
    rng = np.random.default_rng(11)
    vol = root / "rawdata" / "volumes" / "COLONOG"
    lab = root / "rawdata" / "labels" / "COLONOG"
    files: dict[str, tuple[Path, Path]] = {}
    shape = (7, 6, 5)
    ras = _axis_affine("RAS", (0.8, 0.7, 2.5))

    def pair(case_id: str, image: dict[str, Any], label: dict[str, Any], ext: str = ".nii.gz"):
        files[case_id] = (
            _write_nifti(vol / f"{case_id}{ext}", **image),
            _write_nifti(lab / f"{case_id}_seg{ext}", **label),
        )

    def simple(affine: np.ndarray, data_shape=shape, **kw: Any) -> tuple[dict, dict]:
        image = {"raw": _ct(rng, data_shape), "affine": affine, **kw}
        label = {"raw": _labels(rng, data_shape), "affine": affine}
        return image, label

    image, label = simple(ras, klass=nib.Nifti2Header, extensions=(b"ctspine nifti-2 test",))
    label["klass"] = nib.Nifti2Header
    pair("nifti2-extension", image, label)
    image, label = simple(ras, endianness=">", descrip=b"big endian")
    label["endianness"] = ">"
    pair("big-endian", image, label)
    pair("plain-nii", *simple(ras), ext=".nii")
    raw16 = rng.integers(-400, 1200, size=shape).astype(np.int16)
    pair(
        "int16-slope-inter",
        {"raw": raw16, "affine": ras, "slope": 2.5, "inter": -10.0},
        {"raw": _labels(rng, shape), "affine": ras},
    )
    pair(
        "float64",
        {"raw": rng.normal(0, 100, size=shape), "affine": ras},
        {"raw": _labels(rng, shape).astype(np.float32), "affine": ras},
    )
    pair(
        "float32-scaled",
        {
            "raw": rng.normal(0, 100, size=shape).astype(np.float32),
            "affine": ras,
            "slope": 0.1,
            "inter": 3.0,
        },
        {"raw": _labels(rng, shape).astype(np.int16), "affine": ras, "slope": 1.0, "inter": 0},
    )
    image, label = simple(ras, data_shape=(*shape, 1))
    pair("singleton-4d", image, label)
    pair("sagittal-flipped", *simple(_axis_affine("PIL", (0.7, 2.5, 0.8)), codes=(1, 2)))
    image, label = simple(_oblique((0.8, 0.7, 2.5), (10.0, -5.0, 3.0)), codes=(1, 0))
    label["codes"] = (1, 0)
    pair("oblique", image, label)
    extensions = (b"first", b"second extension, longer than sixteen bytes")
    pair("extensions", *simple(_axis_affine("LPI", (0.8, 0.7, 2.5)), extensions=extensions))
    pair("padded-offset", *simple(ras, pad=48))
    image, label = simple(ras * np.r_[0.001, 0.001, 0.001, 1.0][:, None], units=("meter", "sec"))
    label["units"] = ("meter", "sec")
    pair("metres", image, label)

    for name in NIBABEL_FILES:
        case_id = f"nibabel-{name.split('.')[0]}"
        source = NIBABEL_DATA / name
        ext = ".nii.gz" if name.endswith(".gz") else ".nii"
        image_path = vol / f"{case_id}{ext}"
        shutil.copyfile(source, image_path)
        img = nib.load(source)
        label_path = _write_nifti(
            lab / f"{case_id}_seg.nii.gz",
            np.zeros(img.shape, dtype=np.uint8),
            img.affine,
            codes=(int(img.header["qform_code"]), int(img.header["sform_code"]) or 2),
        )
        files[case_id] = (image_path, label_path)
    assert sorted(files) == sorted(VARIANTS)
    return files


@pytest.fixture(scope="module")
def variants(tmp_path_factory) -> tuple[Path, dict[str, tuple[Path, Path]]]:
    """The variants' store, as the ingest writes it, and ``{case_id: (image, label)}``."""
    root = tmp_path_factory.mktemp("variants")
    files = _variant_tree(root / "raw")
    store = root / "variants.zarr"
    report = ctspine_zarr.ingest(root / "raw", store, workers=1, progress=False)
    assert report.ok, report.summary()
    return store, files


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("case_id", VARIANTS)
def test_variant_exports_exactly(variants, tmp_path: Path, case_id: str, role: str) -> None:
    store, files = variants
    source = files[case_id][ROLES.index(role)]
    suffix = ".nii.gz" if source.name.endswith(".gz") else ".nii"
    out = to_nifti(store, case_id, tmp_path / f"out{suffix}", label=role == "label")
    assert_same_nifti(out, source)


def test_variants_are_what_they_claim(variants) -> None:
    """Guard the generator: each variant file has the property it is named after."""
    store, files = variants

    def img(case_id: str, role: int = 0) -> Any:
        return nib.load(files[case_id][role])

    assert isinstance(img("nifti2-extension"), nib.Nifti2Image)
    assert len(img("nifti2-extension").header.extensions) == 1
    assert img("big-endian").header.endianness == ">"
    assert files["plain-nii"][0].name.endswith(".nii")
    assert (img("int16-slope-inter").dataobj.slope, img("int16-slope-inter").dataobj.inter) == (
        2.5,
        -10.0,
    )
    assert img("float64").get_data_dtype() == np.float64
    assert img("singleton-4d").shape == (7, 6, 5, 1)
    assert nib.aff2axcodes(img("sagittal-flipped").affine) == ("P", "I", "L")
    assert not np.allclose(np.abs(img("oblique").affine[:3, :3]).max(axis=0), [0.8, 0.7, 2.5])
    assert len(img("extensions").header.extensions) == 2
    assert img("padded-offset").dataobj.offset == 352 + 48
    assert img("metres").header.get_xyzt_units()[0] == "meter"
    stored = zarr.open_group(store, mode="r", use_consolidated=False)
    assert stored["cases/float64/image"].dtype == np.float64
    assert stored["cases/sagittal-flipped"].attrs["source_orientation"] != [
        [0.0, 1.0],
        [1.0, 1.0],
        [2.0, 1.0],
    ]
