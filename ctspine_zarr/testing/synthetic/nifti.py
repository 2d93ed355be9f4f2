"""Writing synthetic cases as NIfTI files with the header quirks of the real data.

A case is written as an image and a ``_seg`` label file into the raw-tree folders of its
source. Each :data:`VARIANTS` entry sets how the files are stored: the orientation of the
voxel axes (RAS, LPS, descending z, sagittal), the image and label dtypes (``uint16`` with
``scl_inter = -1024``, float labels) and the qform/sform codes.
"""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass
from typing import Final

import nibabel as nib
import numpy as np
import numpy.typing as npt
from nibabel import orientations as nio

from .defects import Defect
from .volume import HU_MIN

__all__ = ["VARIANTS", "SyntheticCase", "nifti_name", "write_case"]


@dataclass(frozen=True)
class _Variant:
    name: str
    axcodes: tuple[str, str, str]
    image_dtype: type[np.generic]
    slope_inter: tuple[float, float] | None
    label_dtype: type[np.generic]
    qform_code: int
    sform_code: int


_VARIANT_SPECS: Final[tuple[_Variant, ...]] = (
    _Variant("ras-int16", ("R", "A", "S"), np.int16, (1.0, 0.0), np.uint8, 1, 1),
    _Variant("lps-uint16-inter", ("L", "P", "S"), np.uint16, (1.0, -1024.0), np.uint8, 1, 1),
    _Variant("descending-z", ("R", "A", "I"), np.int16, None, np.uint8, 1, 2),
    _Variant("float-label", ("L", "P", "S"), np.int16, None, np.float32, 0, 2),
    _Variant("qform-only", ("L", "A", "S"), np.int16, None, np.uint8, 1, 0),
    _Variant("sagittal", ("P", "I", "L"), np.int16, (1.0, 0.0), np.uint8, 1, 2),
)
_VARIANTS_BY_NAME: Final = {v.name: v for v in _VARIANT_SPECS}

#: Header-quirk variants, in the order :func:`make_raw_tree` cycles through them.
#:
#: ``ras-int16``
#:     RAS affine, ``int16`` image with ``scl_slope=1, scl_inter=0``, qform and sform (1/1).
#: ``lps-uint16-inter``
#:     LPS affine, image stored as ``uint16`` with ``scl_inter=-1024``; qform and sform (1/1).
#: ``descending-z``
#:     slices stored inferior-first (negative z step); qform 1, sform 2.
#: ``float-label``
#:     LPS affine, label stored as ``float32``; sform only (qform code 0).
#: ``qform-only``
#:     LAS affine (negative determinant, qfac -1); qform only (sform code 0).
#: ``sagittal``
#:     voxel axes permuted to P, I, L (sagittal slices along the last axis); qform 1, sform 2.
VARIANTS: Final[tuple[str, ...]] = tuple(v.name for v in _VARIANT_SPECS)


@dataclass(frozen=True)
class SyntheticCase:
    """One written case of a synthetic raw tree.

    Attributes
    ----------
    case_id
        Case id, the file name without ``.nii.gz`` (may contain dots).
    source
        Source folder name, one of :data:`ctspine_zarr.schema.SOURCES`.
    split
        Split-file section listing the case, or ``""`` when no section lists it.
    image_path, label_path
        Paths of the written image and label files.
    variant
        Name of the header-quirk variant, one of :data:`VARIANTS`.
    defects
        The label defects injected into the case (``make_raw_tree(defects=...)``): what
        the audit must find in it.
    """

    case_id: str
    source: str
    split: str
    image_path: pathlib.Path
    label_path: pathlib.Path
    variant: str
    defects: tuple[Defect, ...] = ()


def nifti_name(stem: str, gz: bool) -> str:
    """File name of ``stem`` as ``.nii.gz`` (``gz``) or ``.nii``."""
    return f"{stem}.nii.gz" if gz else f"{stem}.nii"


def write_case(
    root: str | os.PathLike[str],
    case_id: str,
    source: str,
    *,
    image_zyx: npt.ArrayLike,
    label_zyx: npt.ArrayLike,
    spacing_zyx: tuple[float, float, float],
    variant: str = "ras-int16",
    split: str = "",
    offset_mm: tuple[float, float, float] = (0.0, 0.0, 0.0),
    gz: bool = True,
) -> SyntheticCase:
    """Write one case (image and ``_seg`` label) into a raw tree, with a header quirk.

    Parameters
    ----------
    root
        Tree root; files go to ``rawdata/volumes/<source>/`` and ``rawdata/labels/<source>/``.
    case_id
        Case id, the file name stem (dots are kept as they are).
    source
        Source folder name.
    image_zyx, label_zyx
        HU and label arrays ``[z, y, x]`` in RAS voxel order, as from :func:`make_volume`.
    spacing_zyx
        Voxel spacing in mm.
    variant
        Header-quirk variant, one of :data:`VARIANTS`; it sets the stored orientation, dtypes
        and qform/sform codes. The label file always gets the image's shape and affine.
    split
        Split-file section recorded in the returned case (the split file is not written here).
    offset_mm
        RAS world position (x, y, z) of the centre of the field of view.
    gz
        Write ``.nii.gz`` (else ``.nii``).

    Returns
    -------
    SyntheticCase
        The written case.

    Raises
    ------
    ValueError
        On an unknown variant, mismatching shapes, or HU values outside the stored dtype.
    """
    try:
        spec = _VARIANTS_BY_NAME[variant]
    except KeyError:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}") from None
    hu = np.asarray(image_zyx)
    lab = np.asarray(label_zyx)
    if hu.ndim != 3 or hu.shape != lab.shape:
        raise ValueError(
            f"image and label must be 3-D of one shape, got {hu.shape} and {lab.shape}"
        )
    image_path, label_path = _case_paths(pathlib.Path(root), case_id, source, gz)
    affine, hu_data, lab_data = _stored_orientation(hu, lab, spacing_zyx, offset_mm, spec)
    image = _image(hu, hu_data, affine, spec)
    label = _label(lab_data, affine, spec)
    for im in (image, label):
        _set_units_and_codes(im, affine, spec)
    nib.save(image, image_path)
    nib.save(label, label_path)
    return SyntheticCase(
        case_id=case_id,
        source=source,
        split=split,
        image_path=image_path,
        label_path=label_path,
        variant=spec.name,
    )


def _case_paths(
    root: pathlib.Path, case_id: str, source: str, gz: bool
) -> tuple[pathlib.Path, pathlib.Path]:
    """Image and label paths of a case in the tree; their folders are created."""
    image_path = root / "rawdata" / "volumes" / source / nifti_name(case_id, gz)
    label_path = root / "rawdata" / "labels" / source / nifti_name(f"{case_id}_seg", gz)
    image_path.parent.mkdir(parents=True, exist_ok=True)
    label_path.parent.mkdir(parents=True, exist_ok=True)
    return image_path, label_path


def _stored_orientation(
    hu: np.ndarray,
    lab: np.ndarray,
    spacing_zyx: tuple[float, float, float],
    offset_mm: tuple[float, float, float],
    spec: _Variant,
) -> tuple[npt.NDArray[np.float64], np.ndarray, np.ndarray]:
    """The affine and the image and label data of ``[z, y, x]`` RAS arrays stored as ``spec``.

    The RAS affine of the ``[x, y, z]`` arrays centres the field of view on ``offset_mm``;
    the variant's flips and permutation are then applied to the affine and both arrays.
    """
    hu_xyz = hu.transpose(2, 1, 0)
    lab_xyz = lab.transpose(2, 1, 0)
    zooms = np.array([spacing_zyx[2], spacing_zyx[1], spacing_zyx[0]], dtype=np.float64)
    affine_ras = np.diag([*zooms, 1.0])
    affine_ras[:3, 3] = np.asarray(offset_mm, np.float64) - (np.array(hu_xyz.shape) - 1) / 2 * zooms
    ornt = nio.ornt_transform(nio.axcodes2ornt(("R", "A", "S")), nio.axcodes2ornt(spec.axcodes))
    affine = affine_ras @ nio.inv_ornt_aff(ornt, hu_xyz.shape)
    return affine, nio.apply_orientation(hu_xyz, ornt), nio.apply_orientation(lab_xyz, ornt)


def _image(
    hu: np.ndarray, hu_data: np.ndarray, affine: npt.NDArray[np.float64], spec: _Variant
) -> nib.Nifti1Image:
    """The image of HU values ``hu`` (stored as ``hu_data``) in the variant's dtype and scaling.

    Raises
    ------
    ValueError
        When ``uint16`` storage with ``scl_inter = -1024`` cannot hold the HU values.
    """
    if spec.image_dtype is np.uint16:
        if hu.size and (int(hu.min()) < HU_MIN or int(hu.max()) > 65535 + HU_MIN):
            raise ValueError("HU values out of range for uint16 storage with scl_inter=-1024")
        img_arr = (hu_data.astype(np.int32) - HU_MIN).astype(np.uint16)
    else:
        img_arr = hu_data.astype(spec.image_dtype)
    image = nib.Nifti1Image(img_arr, affine)
    image.header.set_data_dtype(spec.image_dtype)
    if spec.slope_inter is not None:
        image.header.set_slope_inter(*spec.slope_inter)
    image.header["descrip"] = f"synthetic CTSpine1K-like CT ({spec.name})".encode()
    return image


def _label(
    lab_data: np.ndarray, affine: npt.NDArray[np.float64], spec: _Variant
) -> nib.Nifti1Image:
    """The label image in the variant's label dtype."""
    label = nib.Nifti1Image(lab_data.astype(spec.label_dtype), affine)
    label.header.set_data_dtype(spec.label_dtype)
    label.header["descrip"] = b"synthetic vertebra labels (VerSe)"
    return label


def _set_units_and_codes(
    im: nib.Nifti1Image, affine: npt.NDArray[np.float64], spec: _Variant
) -> None:
    """Millimetre units and the variant's qform and sform codes (0: that form is unset)."""
    im.header.set_xyzt_units("mm", "sec")
    if spec.qform_code:
        im.set_qform(affine, code=spec.qform_code)
    else:
        im.set_qform(None, code=0)
    if spec.sform_code:
        im.set_sform(affine, code=spec.sform_code)
    else:
        im.set_sform(None, code=0)
