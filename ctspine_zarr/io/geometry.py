"""The geometry of a NIfTI image: its checks, its affine in mm, and the canonical reorientation.

:func:`check_geometry` refuses voxel sizes that are not positive, a qform and sform that
disagree, and a singular affine; :func:`source_affine_mm` is the image's affine in mm;
:func:`to_canonical_zyx` turns ``[x, y, z]`` voxels into closest-canonical RAS+ (as
``nibabel.as_closest_canonical``) indexed ``[z, y, x]``, so that
``stored[z, y, x] == canonical[x, y, z]``.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation

from ..errors import InvalidCaseError

__all__ = ["check_geometry", "source_affine_mm", "to_canonical_zyx"]

_UNIT_TO_MM = {"mm": 1.0, "unknown": 1.0, "meter": 1000.0, "micron": 0.001}


def check_geometry(img: nib.Nifti1Image, raw: bytes, path: str, case_id: str) -> list[str]:
    """Refuse unusable geometry by name; return notes on geometry that is merely missing.

    ``raw`` is the decompressed file: its own pixdim is checked, since nibabel silently
    replaces a zero voxel size by 1 when it loads.
    """
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


def source_affine_mm(img: nib.Nifti1Image) -> np.ndarray:
    """The image's affine (a copy), scaled from the header's spatial unit to mm."""
    unit = img.header.get_xyzt_units()[0]
    scale = _UNIT_TO_MM.get(unit, 1.0)
    source_affine = img.affine.copy()
    source_affine[:3, :] *= scale
    return source_affine


def to_canonical_zyx(
    values: np.ndarray, source_affine: np.ndarray, dtype: np.dtype
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reorient ``[x, y, z]`` voxels to closest-canonical RAS+, indexed ``[z, y, x]``.

    Parameters
    ----------
    values
        The voxels in the file's axis order.
    source_affine
        Their affine, in mm.
    dtype
        The type to store them in; when it is theirs, the result is a view of ``values``.

    Returns
    -------
    tuple of numpy.ndarray
        ``(data, affine, ornt)``: the ``[z, y, x]`` voxels, the canonical affine and the
        source orientation (``io_orientation`` of ``source_affine``).
    """
    ornt = io_orientation(source_affine)
    canonical = apply_orientation(values, ornt)
    affine = source_affine @ inv_ornt_aff(ornt, values.shape)
    zyx = canonical.transpose(2, 1, 0)
    if zyx.dtype == dtype:
        # no narrowing: a view of the file's voxels (read-only). A flip or an axis swap
        # costs nothing here; each slice is copied once, when it is encoded
        return zyx, affine, ornt
    out = np.empty(zyx.shape, dtype=dtype)
    np.copyto(out, zyx, casting="unsafe")
    return out, affine, ornt
