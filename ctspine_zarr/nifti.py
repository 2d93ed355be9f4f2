"""The only nibabel user: read a NIfTI pair exactly, reorient it, capture its header.

Voxels leave this module in closest-canonical RAS+ orientation (as
``nibabel.as_closest_canonical``) and indexed ``[z, y, x]``, so that
``stored[z, y, x] == canonical[x, y, z]``.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from dataclasses import dataclass, field
from typing import Any, cast

import fsspec
import nibabel as nib
import numpy as np
from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation

from .errors import InvalidCaseError

__all__ = [
    "CanonicalVolume",
    "FileFingerprint",
    "read_pair",
    "read_volume",
    "smallest_exact_dtype",
]

#: Integer types tried in order for integral voxel values: the first that holds them wins.
_INT_CANDIDATES = tuple(
    np.dtype(t) for t in ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64")
)
_UNIT_TO_MM = {"mm": 1.0, "unknown": 1.0, "meter": 1000.0, "micron": 0.001}
_AFFINE_ATOL_MM = 1e-3


@dataclass(frozen=True)
class FileFingerprint:
    """What identifies a source file: its path, size, modification time and SHA-256."""

    path: str
    size: int
    mtime: float | None
    sha256: str

    def to_json(self) -> dict[str, Any]:
        """Return the fingerprint as a JSON-able dict."""
        return {"path": self.path, "size": self.size, "mtime": self.mtime, "sha256": self.sha256}


@dataclass
class CanonicalVolume:
    """One NIfTI file read in full and reoriented to closest-canonical RAS+, ``[z, y, x]``."""

    #: ``[z, y, x]`` voxels; may be a read-only, non-contiguous view of the file's bytes
    data: np.ndarray
    affine: np.ndarray
    source_affine: np.ndarray
    ornt: np.ndarray
    source_shape: tuple[int, ...]
    header_bytes: bytes
    fingerprint: FileFingerprint
    warnings: list[str] = field(default_factory=list)

    @property
    def spacing_zyx(self) -> tuple[float, float, float]:
        """Voxel size in mm along ``(z, y, x)``."""
        sx, sy, sz = np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))
        return float(sz), float(sy), float(sx)

    @property
    def has_nonfinite(self) -> bool:
        """Whether a float image holds NaN or Inf (kept exactly, flagged in the catalogue)."""
        return self.data.dtype.kind == "f" and not bool(np.isfinite(self.data).all())


def smallest_exact_dtype(values: np.ndarray) -> np.dtype:
    """Return the smallest dtype that holds every value of ``values`` exactly.

    Integral values get the first of int8, uint8, int16, uint16, int32, uint32, int64,
    uint64 that holds their range; other values float32 when that is exact, else float64.

    Parameters
    ----------
    values
        Scaled voxel values, of any real dtype.

    Returns
    -------
    numpy.dtype
    """
    if values.size == 0:
        return np.dtype("int16")
    if values.dtype == np.bool_:
        return np.dtype("uint8")
    if values.dtype.kind in "iu":
        low, high = int(values.min()), int(values.max())
    elif values.dtype.kind == "f":
        finite = bool(np.isfinite(values).all())
        if not finite or not np.array_equal(np.trunc(values), values):
            if values.dtype.itemsize <= 4:
                return np.dtype("float32")
            as32 = values.astype(np.float32)
            exact = np.array_equal(as32.astype(values.dtype), values, equal_nan=True)
            return np.dtype("float32") if exact else np.dtype("float64")
        low, high = int(values.min()), int(values.max())
    else:
        raise TypeError(f"voxel values must be real numbers, but the dtype is {values.dtype}")
    for candidate in _INT_CANDIDATES:
        info = np.iinfo(candidate)
        if info.min <= low and high <= info.max:
            return candidate
    return np.dtype("float64")


def _read_bytes(path: str, fs: fsspec.AbstractFileSystem, case_id: str) -> tuple[bytes, Any]:
    try:
        data = fs.cat_file(path)
        info = fs.info(path)
    except FileNotFoundError as err:
        raise InvalidCaseError(case_id, path, "file not found", "check the raw tree") from err
    return data, info


try:  # ISA-L's inflate is about twice as fast as zlib's; both check every member's CRC
    from isal.igzip import decompress as _decompress
except ImportError:  # pragma: no cover - isal is a dependency; keep working without it
    _decompress = gzip.decompress


def _gunzip(data: bytes, path: str, case_id: str) -> bytes:
    """Decompress every gzip member, so that the CRC and length of each are checked."""
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return _decompress(data)
    except EOFError as err:
        raise InvalidCaseError(
            case_id,
            path,
            f"truncated gzip stream ({len(data)} bytes on disk): {err}",
            "download the file again",
        ) from err
    except (gzip.BadGzipFile, zlib.error, OSError) as err:
        raise InvalidCaseError(
            case_id, path, f"corrupt gzip stream: {err}", "download the file again"
        ) from err


def _image_from_bytes(raw: bytes, path: str, case_id: str) -> nib.Nifti1Image:
    if len(raw) < 348:
        raise InvalidCaseError(
            case_id,
            path,
            f"only {len(raw)} bytes, shorter than a NIfTI header",
            "download the file again",
        )
    sizes = {int.from_bytes(raw[:4], "little"), int.from_bytes(raw[:4], "big")}
    klass: type[nib.Nifti1Image]
    if 348 in sizes:
        klass = nib.Nifti1Image
    elif 540 in sizes:
        klass = nib.Nifti2Image
    else:
        raise InvalidCaseError(
            case_id,
            path,
            "not a NIfTI-1 or NIfTI-2 file (sizeof_hdr is neither 348 nor 540)",
            "convert it to NIfTI",
        )
    try:
        img = klass.from_bytes(raw)
    except Exception as err:  # nibabel raises many kinds for a bad header
        raise InvalidCaseError(case_id, path, f"unreadable NIfTI header: {err}") from err
    return img


def _voxel_values(img: nib.Nifti1Image, raw: bytes, path: str, case_id: str) -> np.ndarray:
    shape = img.shape
    if len(shape) > 3 and any(n != 1 for n in shape[3:]):
        raise InvalidCaseError(
            case_id,
            path,
            f"a {len(shape)}D series of shape {shape}, not a single volume",
            "split the series and ingest one volume per case",
        )
    if len(shape) < 3:
        raise InvalidCaseError(case_id, path, f"{len(shape)}D data of shape {shape}, not 3D")
    dtype = img.get_data_dtype()
    if dtype.kind not in "iufb" or dtype.names is not None:
        raise InvalidCaseError(
            case_id, path, f"voxel type {dtype} is not a real scalar", "store one real channel"
        )
    try:
        values = _integral_scaled(img, raw)
        if values is None:
            values = np.asanyarray(img.dataobj)
    except Exception as err:
        raise InvalidCaseError(
            case_id, path, f"voxel data unreadable: {err}", "download the file again"
        ) from err
    return values.reshape(shape[:3])


def _integral_scaled(img: nib.Nifti1Image, raw: bytes) -> np.ndarray | None:
    """Return ``raw * slope + inter`` in integers when that equals nibabel's float result.

    For 8- and 16-bit raw voxels with integral slope and intercept, nibabel's float
    scaling is exact, so integer arithmetic gives the same values without a float copy
    of the volume and without the float passes of :func:`smallest_exact_dtype`. Without
    scaling the result is a read-only view of ``raw`` (no copy). Returns None for every
    other case (nibabel then scales).
    """
    proxy = cast(Any, img.dataobj)
    slope, inter = float(proxy.slope), float(proxy.inter)
    raw_dtype = img.get_data_dtype()
    if raw_dtype.kind not in "iu" or raw_dtype.itemsize > 2:
        return None
    if not (slope.is_integer() and inter.is_integer()) or slope == 0:
        return None
    unscaled = _unscaled_view(img, raw)
    if unscaled is None:
        return None
    if slope == 1 and inter == 0:
        return unscaled
    lowest, highest = int(unscaled.min()), int(unscaled.max())
    low, high = sorted((lowest * int(slope) + int(inter), highest * int(slope) + int(inter)))
    # a dtype that holds the result, the stored values, and the slope and intercept
    work = smallest_exact_dtype(np.array([low, high, lowest, highest, int(slope), int(inter)]))
    values = unscaled.astype(work)
    if slope != 1:
        values *= work.type(int(slope))
    values += work.type(int(inter))
    return values


def _unscaled_view(img: nib.Nifti1Image, raw: bytes) -> np.ndarray | None:
    """The file's stored voxels as a read-only view of ``raw`` (None: let nibabel read)."""
    proxy = cast(Any, img.dataobj)
    shape = tuple(int(n) for n in img.shape)
    dtype = img.get_data_dtype()
    offset, count = int(proxy.offset), int(np.prod(shape))
    if getattr(proxy, "order", "F") != "F" or offset + count * dtype.itemsize > len(raw):
        return None  # nibabel's own read then raises its message for a short file
    return np.frombuffer(raw, dtype=dtype, count=count, offset=offset).reshape(shape, order="F")


def _check_geometry(img: nib.Nifti1Image, raw: bytes, path: str, case_id: str) -> list[str]:
    header = img.header
    notes: list[str] = []
    # the file's own pixdim: nibabel silently replaces a zero voxel size by 1 when it loads
    size = header.sizeof_hdr
    on_disk = type(header)(raw[:size], endianness=header.endianness, check=False)
    zooms = np.asarray(on_disk["pixdim"][1:4], dtype=float)
    if not (np.isfinite(zooms).all() and (zooms > 0).all()):
        raise InvalidCaseError(
            case_id,
            path,
            f"voxel sizes must be positive and finite, but pixdim is {zooms.tolist()}",
            "fix pixdim[1:4] in the header",
        )
    qcode, scode = int(header["qform_code"]), int(header["sform_code"])
    if qcode > 0 and scode > 0:
        qform, sform = header.get_qform(), header.get_sform()
        if not np.allclose(qform, sform, atol=1e-2, rtol=1e-4):
            raise InvalidCaseError(
                case_id,
                path,
                f"qform and sform disagree (largest difference "
                f"{np.abs(qform - sform).max():.4g} mm)",
                "set qform_code or sform_code to 0 for the one that is wrong",
            )
    if qcode == 0 and scode == 0:
        notes.append("no geometry: qform_code and sform_code are both 0")
    affine = img.affine
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InvalidCaseError(case_id, path, "the affine is singular or not finite")
    return notes


def read_volume(
    path: str,
    *,
    case_id: str,
    fs: fsspec.AbstractFileSystem | None = None,
    label: bool = False,
) -> CanonicalVolume:
    """Read one NIfTI file in full, check it, and reorient it to canonical ``[z, y, x]``.

    Parameters
    ----------
    path
        Path of the ``.nii`` or ``.nii.gz`` file in ``fs`` (local by default).
    case_id
        The case the file belongs to, for error messages.
    fs
        fsspec filesystem to read from.
    label
        Whether the file is a label map (stored as uint8) rather than an image.

    Returns
    -------
    CanonicalVolume

    Raises
    ------
    InvalidCaseError
        When the file is unreadable, corrupt, 4D, or its values cannot be stored exactly.
    """
    fs = fs or fsspec.filesystem("file")
    data, info = _read_bytes(path, fs, case_id)
    fingerprint = FileFingerprint(
        path=path,
        size=len(data),
        mtime=_mtime(info),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    raw = _gunzip(data, path, case_id)
    del data
    img = _image_from_bytes(raw, path, case_id)
    notes = _check_geometry(img, raw, path, case_id)
    values = _voxel_values(img, raw, path, case_id)
    # the file's own bytes before the voxels (header and extensions); nibabel resets
    # vox_offset and scl_slope/scl_inter in the header of a loaded image
    header_bytes = raw[: int(cast(Any, img.dataobj).offset)]
    del raw
    if label:
        values = _label_values(values, path, case_id)
        target = np.dtype("uint8")
    else:
        target = smallest_exact_dtype(values)

    unit = img.header.get_xyzt_units()[0]
    scale = _UNIT_TO_MM.get(unit, 1.0)
    source_affine = img.affine.copy()
    source_affine[:3, :] *= scale
    ornt = io_orientation(source_affine)
    canonical = apply_orientation(values, ornt)
    affine = source_affine @ inv_ornt_aff(ornt, values.shape)
    zyx = canonical.transpose(2, 1, 0)
    if zyx.dtype == target:
        # no narrowing: a view of the file's voxels (read-only). A flip or an axis swap
        # costs nothing here; each slice is copied once, when it is encoded
        out = zyx
    else:
        out = np.empty(zyx.shape, dtype=target)
        np.copyto(out, zyx, casting="unsafe")
    return CanonicalVolume(
        data=out,
        affine=affine,
        source_affine=source_affine,
        ornt=ornt,
        source_shape=tuple(int(n) for n in img.shape),
        header_bytes=bytes(header_bytes),
        fingerprint=fingerprint,
        warnings=notes,
    )


def _mtime(info: dict[str, Any]) -> float | None:
    for key in ("mtime", "LastModified", "last_modified", "created"):
        value = info.get(key)
        if value is None:
            continue
        if hasattr(value, "timestamp"):
            return float(value.timestamp())
        try:
            return float(value)
        except (TypeError, ValueError):
            return None
    return None


def _label_values(values: np.ndarray, path: str, case_id: str) -> np.ndarray:
    """Return the label map, every value an integer 0..255, or raise naming what is wrong.

    Integer and boolean maps come back as they are, after a range check (the caller narrows
    them to uint8 in the copy that reorients them); float maps as uint8.
    """
    if values.dtype == np.uint8:
        return values
    if values.dtype.kind != "f":
        if values.size and (int(values.min()) < 0 or int(values.max()) > 255):
            raise _labels_out_of_range(values, path, case_id)
        return values
    # the usual float map (integers in range): one cast and one comparison
    with np.errstate(invalid="ignore"):  # NaN, inf and wrapped values: found just below
        as_uint8 = values.astype(np.uint8)
    if np.array_equal(as_uint8, values):
        return as_uint8
    if np.isnan(values).any():
        raise InvalidCaseError(
            case_id, path, "the label map holds NaN", "label voxels must be integers 0..255"
        )
    if not np.array_equal(np.trunc(values), values):
        bad = values[np.trunc(values) != values][:5]
        raise InvalidCaseError(
            case_id,
            path,
            f"label values must be integral, but found {bad.tolist()}",
            "round the label map or re-export it as an integer type",
        )
    raise _labels_out_of_range(values, path, case_id)


def _labels_out_of_range(values: np.ndarray, path: str, case_id: str) -> InvalidCaseError:
    return InvalidCaseError(
        case_id,
        path,
        f"label values must lie in 0..255, but range from {values.min()} to {values.max()}",
        "relabel with VerSe numbers (1-28)",
    )


def read_pair(
    image_path: str,
    label_path: str,
    *,
    case_id: str,
    fs: fsspec.AbstractFileSystem | None = None,
) -> tuple[CanonicalVolume, CanonicalVolume]:
    """Read and validate an image and its label map.

    Parameters
    ----------
    image_path, label_path
        Paths of the two files in ``fs``.
    case_id
        The case, for error messages.
    fs
        fsspec filesystem to read from (local by default).

    Returns
    -------
    tuple of CanonicalVolume
        ``(image, label)``, both in canonical ``[z, y, x]`` orientation.

    Raises
    ------
    InvalidCaseError
        When either file is bad or the two do not match in shape or affine.
    """
    image = read_volume(image_path, case_id=case_id, fs=fs)
    label = read_volume(label_path, case_id=case_id, fs=fs, label=True)
    if image.source_shape[:3] != label.source_shape[:3]:
        raise InvalidCaseError(
            case_id,
            label_path,
            f"label shape {label.source_shape} must equal image shape {image.source_shape}",
            "resample the label map onto the image grid",
        )
    if not np.allclose(image.source_affine, label.source_affine, atol=_AFFINE_ATOL_MM, rtol=1e-5):
        diff = np.abs(image.source_affine - label.source_affine).max()
        raise InvalidCaseError(
            case_id,
            label_path,
            f"label affine differs from the image affine by up to {diff:.4g} mm",
            "give both files the same geometry",
        )
    return image, label
