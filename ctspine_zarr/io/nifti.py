"""The only nibabel user: read a NIfTI pair exactly, reorient it, capture its header.

Voxels leave this module in closest-canonical RAS+ orientation (as
``nibabel.as_closest_canonical``) and indexed ``[z, y, x]``, so that
``stored[z, y, x] == canonical[x, y, z]``. Each step has its own module: the memory cap
and bounded reads in :mod:`~ctspine_zarr.io.limits`, the header's claims in
:mod:`~ctspine_zarr.io.niftiheader`, the voxel values in :mod:`~ctspine_zarr.io.voxels`,
the geometry and reorientation in :mod:`~ctspine_zarr.io.geometry`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, cast

import fsspec
import numpy as np

from ..errors import InvalidCaseError
from .geometry import check_geometry, source_affine_mm, to_canonical_zyx
from .layout import RawCase
from .limits import default_max_voxel_bytes, gunzip, head, read_bytes
from .niftiheader import check_claim, check_length, header_claim, image_from_bytes
from .remote import url_to_fs
from .voxels import label_values, smallest_exact_dtype, voxel_values

__all__ = ["CanonicalVolume", "FileFingerprint", "read_case", "read_pair", "read_volume"]

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


def read_volume(
    path: str,
    *,
    case_id: str,
    fs: fsspec.AbstractFileSystem | None = None,
    label: bool = False,
    max_voxel_bytes: int | None = None,
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
    max_voxel_bytes
        Memory cap: the most bytes the file may hold once decompressed (header included).
        Default: :func:`default_max_voxel_bytes` (``$CTSPINE_MAX_VOLUME_BYTES``, else
        min(16 GiB, RAM / 4)).

    Returns
    -------
    CanonicalVolume

    Raises
    ------
    InvalidCaseError
        When the file is not a regular file, unreadable, corrupt, 4D, larger than the cap,
        its header claims more voxels than it holds, or its values cannot be stored exactly.
        Size claims are checked before any voxel is allocated.
    """
    fs = fs or fsspec.filesystem("file")
    cap = default_max_voxel_bytes() if max_voxel_bytes is None else int(max_voxel_bytes)
    raw, fingerprint = _decompressed(path, fs, case_id, cap)
    img = image_from_bytes(raw, path, case_id)
    notes = check_geometry(img, raw, path, case_id)
    values = voxel_values(img, raw, path, case_id)
    # the file's own bytes before the voxels (header and extensions); nibabel resets
    # vox_offset and scl_slope/scl_inter in the header of a loaded image
    header_bytes = raw[: int(cast(Any, img.dataobj).offset)]
    del raw
    if label:
        values = label_values(values, path, case_id)
        target = np.dtype("uint8")
    else:
        target = smallest_exact_dtype(values)
    source_affine = source_affine_mm(img)
    data, affine, ornt = to_canonical_zyx(values, source_affine, target)
    return CanonicalVolume(
        data=data,
        affine=affine,
        source_affine=source_affine,
        ornt=ornt,
        source_shape=tuple(int(n) for n in img.shape),
        header_bytes=bytes(header_bytes),
        fingerprint=fingerprint,
        warnings=notes,
    )


def _decompressed(
    path: str, fs: fsspec.AbstractFileSystem, case_id: str, cap: int
) -> tuple[bytes, FileFingerprint]:
    """The file decompressed up to the end of the voxels its header claims, and its fingerprint.

    The header's claim is checked against the cap and the file's size before the file is
    decompressed, and the decompressed bytes against the claim after.
    """
    data, info = read_bytes(path, fs, case_id, cap)
    claim = header_claim(head(data, 540), path, case_id)
    check_claim(claim, data, path, case_id, cap)
    fingerprint = FileFingerprint(
        path=path,
        size=len(data),
        mtime=_mtime(info),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    raw = gunzip(data, path, case_id, claim.offset + claim.voxel_bytes, cap)
    del data
    check_length(claim, raw, path, case_id)
    return raw, fingerprint


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


def read_pair(
    image_path: str,
    label_path: str,
    *,
    case_id: str,
    fs: fsspec.AbstractFileSystem | None = None,
    max_voxel_bytes: int | None = None,
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
    max_voxel_bytes
        Memory cap per file, as in :func:`read_volume`.

    Returns
    -------
    tuple of CanonicalVolume
        ``(image, label)``, both in canonical ``[z, y, x]`` orientation.

    Raises
    ------
    InvalidCaseError
        When either file is bad or the two do not match in shape or affine.
    """
    image = read_volume(image_path, case_id=case_id, fs=fs, max_voxel_bytes=max_voxel_bytes)
    label = read_volume(
        label_path, case_id=case_id, fs=fs, label=True, max_voxel_bytes=max_voxel_bytes
    )
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


def read_case(
    case: RawCase, storage_options: dict[str, Any] | None = None
) -> tuple[CanonicalVolume, CanonicalVolume]:
    """Read and validate the image and label map of a raw case with :func:`read_pair`.

    Parameters
    ----------
    case
        A case of the raw tree with both files (local paths or fsspec URLs).
    storage_options
        fsspec options for URL files.

    Returns
    -------
    tuple of CanonicalVolume
        ``(image, label)``, as :func:`read_pair` returns them (and raises).
    """
    assert case.image is not None and case.label is not None
    fs, image_path = url_to_fs(case.image, storage_options)
    _, label_path = url_to_fs(case.label, storage_options)
    return read_pair(image_path, label_path, case_id=case.case_id, fs=fs)
