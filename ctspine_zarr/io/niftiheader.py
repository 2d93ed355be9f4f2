"""What a NIfTI header claims, checked against the memory cap and the file before any voxel.

:func:`header_claim` parses the dims, voxel type and data offset of a NIfTI-1 or NIfTI-2
header and refuses impossible ones by name; :func:`check_claim` refuses a claim past the
cap or past what the file can hold (before decompressing), :func:`check_length` a
decompressed file shorter than its claim; :func:`image_from_bytes` parses the whole file.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import nibabel as nib
import numpy as np

from ..errors import InvalidCaseError
from .limits import DEFLATE_MAX_RATIO, GZIP_MAGIC, RAISE_CAP, format_bytes

__all__ = ["HeaderClaim", "check_claim", "check_length", "header_claim", "image_from_bytes"]


@dataclass(frozen=True)
class HeaderClaim:
    """What a header says the file holds: shape, voxel type and where the voxels start."""

    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int

    @property
    def voxel_bytes(self) -> int:
        """The bytes of the voxels the header claims."""
        return math.prod(self.shape) * self.dtype.itemsize

    def describe(self) -> str:
        """The claim as error messages name it: ``512x512x300 int16 = 150.0 MiB of voxels``."""
        shape = "x".join(str(n) for n in self.shape)
        return f"{shape} {self.dtype.name} = {format_bytes(self.voxel_bytes)} of voxels"


def _check_header_size(data: bytes, path: str, case_id: str) -> None:
    if len(data) < 348:
        raise InvalidCaseError(
            case_id,
            path,
            f"only {len(data)} bytes, shorter than a NIfTI header",
            "download the file again",
        )


def header_claim(head: bytes, path: str, case_id: str) -> HeaderClaim:
    """Parse the header's dims, voxel type and offset, refusing impossible ones by name."""
    _check_header_size(head, path, case_id)
    klass = _header_class(head, path, case_id)
    try:
        header = klass.from_fileobj(io.BytesIO(head), check=False)
    except Exception as err:  # nibabel raises many kinds for a bad header
        raise InvalidCaseError(case_id, path, f"unreadable NIfTI header: {err}") from err
    dim = [int(v) for v in header["dim"]]
    if not 1 <= dim[0] <= 7:
        raise InvalidCaseError(
            case_id, path, f"dim[0] = {dim[0]}: the number of axes must be 1..7", "fix the header"
        )
    for axis in range(1, dim[0] + 1):
        if dim[axis] < 1:
            raise InvalidCaseError(
                case_id,
                path,
                f"dim[{axis}] = {dim[axis]}: every axis needs at least one voxel",
                "fix the header",
            )
    try:
        dtype = header.get_data_dtype()
    except Exception as err:
        raise InvalidCaseError(
            case_id, path, f"unknown voxel type (datatype code {int(header['datatype'])})"
        ) from err
    offset = max(int(header.get_data_offset()), header.sizeof_hdr)
    return HeaderClaim(tuple(dim[1 : dim[0] + 1]), dtype, offset)


def _header_class(head: bytes, path: str, case_id: str) -> type[nib.Nifti1Header]:
    sizes = {int.from_bytes(head[:4], "little"), int.from_bytes(head[:4], "big")}
    if 348 in sizes:
        return nib.Nifti1Header
    if 540 in sizes:
        return nib.Nifti2Header
    raise InvalidCaseError(
        case_id,
        path,
        "not a NIfTI-1 or NIfTI-2 file (sizeof_hdr is neither 348 nor 540)",
        "convert it to NIfTI",
    )


def check_claim(claim: HeaderClaim, data: bytes, path: str, case_id: str, cap: int) -> None:
    """Refuse a header whose voxels pass the cap or cannot fit in the file, before reading."""
    need = claim.offset + claim.voxel_bytes
    if need > cap:
        raise InvalidCaseError(
            case_id,
            path,
            f"the header claims {claim.describe()}, more than the {format_bytes(cap)} memory "
            "cap per volume",
            RAISE_CAP,
        )
    gzipped = data[:2] == GZIP_MAGIC
    most = len(data) * DEFLATE_MAX_RATIO if gzipped else len(data)
    if need > most:
        held = format_bytes(len(data))
        what = f"{held} of gzip can hold at most" if gzipped else "the file holds"
        raise InvalidCaseError(
            case_id,
            path,
            f"the header claims {claim.describe()} from byte {claim.offset}, but "
            f"{what} {format_bytes(most)}",
            "the header is wrong or the file is truncated; download it again",
        )


def check_length(claim: HeaderClaim, raw: bytes, path: str, case_id: str) -> None:
    """Refuse a decompressed file shorter than its header's claim."""
    need = claim.offset + claim.voxel_bytes
    if len(raw) < need:
        raise InvalidCaseError(
            case_id,
            path,
            f"the header claims {claim.describe()} from byte {claim.offset}, but the "
            f"decompressed file holds only {len(raw)} bytes ({need - len(raw)} missing)",
            "the header is wrong or the file is truncated; download it again",
        )


def image_from_bytes(raw: bytes, path: str, case_id: str) -> nib.Nifti1Image:
    """Parse a whole decompressed NIfTI-1 or NIfTI-2 file, refusing a bad header by name."""
    _check_header_size(raw, path, case_id)
    klass: type[nib.Nifti1Image] = (
        nib.Nifti2Image
        if _header_class(raw, path, case_id) is nib.Nifti2Header
        else nib.Nifti1Image
    )
    try:
        img = klass.from_bytes(raw)
    except Exception as err:  # nibabel raises many kinds for a bad header
        raise InvalidCaseError(case_id, path, f"unreadable NIfTI header: {err}") from err
    return img
