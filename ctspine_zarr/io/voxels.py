"""The voxel values of a NIfTI image: read exactly, scaled, and kept in the smallest exact type.

:func:`voxel_values` returns the scaled values of a single 3D volume (in integers, without
a float copy, when nibabel's float scaling would be exact), :func:`smallest_exact_dtype` the
type they are stored in, and :func:`label_values` a label map checked to hold integers
0..255.
"""

from __future__ import annotations

from typing import Any, cast

import nibabel as nib
import numpy as np

from ..errors import InvalidCaseError

__all__ = ["label_values", "smallest_exact_dtype", "voxel_values"]

#: Integer types tried in order for integral voxel values: the first that holds them wins.
_INT_CANDIDATES = tuple(
    np.dtype(t) for t in ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64")
)


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


def voxel_values(img: nib.Nifti1Image, raw: bytes, path: str, case_id: str) -> np.ndarray:
    """The scaled voxel values of a single 3D volume, ``[x, y, z]`` as the file holds them.

    ``raw`` is the decompressed file ``img`` was parsed from: without scaling the result
    may be a read-only view of it.

    Raises
    ------
    InvalidCaseError
        When the image is a series, not 3D, not of a real scalar type, or unreadable.
    """
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


def label_values(values: np.ndarray, path: str, case_id: str) -> np.ndarray:
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
