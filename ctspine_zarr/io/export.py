"""Write a stored case back to NIfTI, in its original orientation, with its original header.

The store keeps the source file's bytes ``[0, vox_offset)`` (after gunzip: the header,
extensions and any padding) in ``image_nifti_header`` / ``label_nifti_header``, and the
scaled voxel values in closest-canonical ``[z, y, x]`` order. :func:`to_nifti` writes those
header bytes unchanged, then the voxels back in the source's axis order, unscaled to the
header's data type and byte order, in Fortran order: nibabel reads the export exactly as it
read the source (same header block, shape, affine, raw and scaled values).
:func:`export_cases` writes every case of a selection (:mod:`ctspine_zarr.selection`) so.
"""

from __future__ import annotations

import gzip
import io
import itertools
import os
import pathlib
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import nibabel as nib
import numpy as np
import zarr
from nibabel.orientations import apply_orientation, io_orientation, ornt_transform
from nibabel.volumeutils import apply_read_scaling
from zarr.abc.store import Store

from ..errors import StoreError
from ..schema import COMPLETE_KEY, IMAGE, IMAGE_HEADER, LABEL, LABEL_HEADER
from ..selection import Names, Vertebrae, selected_ids
from .store import case_group, open_catalogue

__all__ = ["export_cases", "header_from_bytes", "source_layout", "to_nifti", "unscale"]

#: How many neighbouring floats :func:`unscale` tries for a float type that does not invert.
_MAX_ULP_STEPS = 4


def header_from_bytes(header_bytes: bytes) -> nib.Nifti1Header:
    """Parse stored NIfTI header bytes (NIfTI-1 or NIfTI-2, either byte order).

    Parameters
    ----------
    header_bytes
        Bytes ``[0, vox_offset)`` of the source file after gunzip.

    Returns
    -------
    nibabel.Nifti1Header or nibabel.Nifti2Header
        The header as nibabel reads it from the file, extensions included.

    Raises
    ------
    ValueError
        When the bytes are not a NIfTI-1 or NIfTI-2 header, or not exactly the bytes before
        the header's ``vox_offset``.
    """
    sizes = {int.from_bytes(header_bytes[:4], order) for order in ("little", "big")}
    klass = nib.Nifti1Header if 348 in sizes else nib.Nifti2Header if 540 in sizes else None
    if klass is None:
        raise ValueError("not a NIfTI-1 or NIfTI-2 header (sizeof_hdr is neither 348 nor 540)")
    size = klass.template_dtype.itemsize
    if len(header_bytes) < size:
        raise ValueError(f"{len(header_bytes)} header bytes, but sizeof_hdr is {size}")
    header = klass.from_fileobj(io.BytesIO(header_bytes))
    offset = int(header.get_data_offset())
    if offset != len(header_bytes):
        raise ValueError(f"{len(header_bytes)} header bytes, but vox_offset is {offset}")
    return header


def source_layout(canonical_xyz: np.ndarray, ornt: np.ndarray) -> np.ndarray:
    """Undo ``apply_orientation(source, ornt)``: return the array in its source voxel order.

    Parameters
    ----------
    canonical_xyz
        Array indexed ``[x, y, z]`` in closest-canonical orientation.
    ornt
        The source orientation (``io_orientation`` of the source affine) that turned the
        source array into ``canonical_xyz``.

    Returns
    -------
    numpy.ndarray
        A view of ``canonical_xyz`` in the source's axis order and directions.
    """
    ornt = np.asarray(ornt, dtype=float)
    identity = np.column_stack([np.arange(len(ornt)), np.ones(len(ornt))])
    return apply_orientation(canonical_xyz, ornt_transform(identity, ornt))


def _rescale(raw: np.ndarray, slope: float, inter: float) -> np.ndarray:
    """Scale raw values exactly as nibabel's ArrayProxy does when reading."""
    return apply_read_scaling(raw, np.float64(slope), np.float64(inter))


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise equality that treats NaN as equal to NaN."""
    eq = np.asarray(a == b)
    if a.dtype.kind == "f" or b.dtype.kind == "f":
        eq |= np.isnan(a) & np.isnan(b)
    return eq


def unscale(values: np.ndarray, dtype: np.dtype, slope: float, inter: float) -> np.ndarray:
    """Return the raw values of ``dtype`` that nibabel scales to ``values`` (exactly).

    nibabel reads ``raw * slope + inter`` (no scaling when the slope is 0 or NaN, which
    callers pass as ``slope=1, inter=0``). Integer raw types are rounded from
    ``(values - inter) / slope``; float raw types are nudged by a few ulps when the division
    does not invert the scaling exactly. Whatever the type, the result is checked by
    scaling it again.

    Parameters
    ----------
    values
        Scaled voxel values, any real dtype.
    dtype
        Raw data type of the file, with its byte order.
    slope, inter
        The header's scaling, as nibabel applies it.

    Returns
    -------
    numpy.ndarray
        Raw values of ``dtype``, same shape as ``values``.

    Raises
    ------
    ValueError
        When no raw values of ``dtype`` give ``values`` back.
    """
    dtype = np.dtype(dtype)
    if dtype.kind not in "iuf":
        raise ValueError(f"cannot write voxels of type {dtype}")
    estimate = values
    if (slope, inter) != (1.0, 0.0):
        estimate = (values.astype(np.float64) - inter) / slope
    if dtype.kind in "iu" and estimate.dtype.kind == "f":
        estimate = np.rint(estimate)
    # a value out of the type's range casts to garbage, which the check below refuses
    with np.errstate(over="ignore", invalid="ignore"):
        raw = estimate.astype(dtype)
    ok = _same(_rescale(raw, slope, inter), values)
    for _ in range(_MAX_ULP_STEPS if dtype.kind == "f" else 0):
        if ok.all():
            break
        bad = ~ok
        got = _rescale(raw[bad], slope, inter).astype(np.float64)
        up = (values[bad].astype(np.float64) > got) == (slope > 0)
        raw[bad] = np.nextafter(raw[bad], np.where(up, np.inf, -np.inf).astype(dtype))
        ok = _same(_rescale(raw, slope, inter), values)
    if not ok.all():
        raise ValueError(
            f"{int((~ok).sum())} voxel value(s) cannot be written as {dtype} with slope "
            f"{slope} and intercept {inter} so that they read back exactly"
        )
    return raw


def _write(path: pathlib.Path, parts: Iterable[bytes], *, compresslevel: int) -> None:
    """Write ``parts`` to ``path`` (gzip for ``.gz``, mtime 0) atomically, through a new
    hidden file next to it (created with the umask's permissions) renamed at the end."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
    try:
        handle = open(tmp, "xb")  # noqa: SIM115 - closed below; an error names the user's path
    except OSError as err:
        raise type(err)(err.errno, err.strerror, os.fspath(path)) from None
    try:
        with handle:
            out: io.BufferedIOBase = handle
            if path.name.endswith(".gz"):
                out = gzip.GzipFile(
                    filename="", mode="wb", fileobj=handle, compresslevel=compresslevel, mtime=0
                )
            with out:
                for part in parts:
                    out.write(part)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _read(group: zarr.Group, name: str) -> np.ndarray:
    array = group[name]
    if not isinstance(array, zarr.Array):
        raise StoreError(f"{group.path}/{name} is a group, not an array")
    return np.asarray(array[...])


def to_nifti(
    location: str | os.PathLike[str] | Store,
    case_id: str,
    path: str | os.PathLike[str],
    *,
    label: bool = False,
    storage_options: dict[str, Any] | None = None,
    compresslevel: int = 6,
) -> pathlib.Path:
    """Write one case's image (or label map) as the NIfTI file it was ingested from.

    The file gets the source's header bytes verbatim (NIfTI-1 or -2, byte order, data type,
    scl_slope/scl_inter, qform/sform and codes, pixdim, units, descrip, extensions), its
    shape (a trailing singleton 4th dimension included) and voxel order, and the raw
    (unscaled) voxel values, so that nibabel reads the same header, affine and values from
    it as from the source.

    Parameters
    ----------
    location
        Local path, fsspec URL or zarr store of the ctspine store.
    case_id
        The case to export.
    path
        Local output path ending in ``.nii`` or ``.nii.gz`` (gzip with mtime 0); written
        through a temporary file in the same folder and renamed.
    label
        Export the label map instead of the image.
    storage_options
        fsspec options for a URL store.
    compresslevel
        gzip level for ``.nii.gz``.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    CaseNotFoundError
        When the store holds no such case.
    StoreError
        When the case is an unfinished write or its stored header does not fit its voxels.
    ValueError
        When ``path`` does not end in ``.nii`` or ``.nii.gz``.
    FileNotFoundError
        When the folder of ``path`` does not exist.
    """
    out_path = pathlib.Path(os.fspath(path))
    if not out_path.name.endswith((".nii", ".nii.gz")):
        raise ValueError(f"{out_path}: the file name must end in .nii or .nii.gz")
    if not out_path.parent.is_dir():
        raise FileNotFoundError(
            f"{out_path}: no folder {out_path.parent} to write it into (create it first)"
        )
    group = case_group(location, case_id, storage_options=storage_options)
    if group.attrs.get(COMPLETE_KEY) is not True:
        raise StoreError(f"case {case_id!r} is an unfinished write; ingest it again")
    name, header_name = (LABEL, LABEL_HEADER) if label else (IMAGE, IMAGE_HEADER)
    header_bytes, header = _stored_header(group, case_id, header_name)
    slabs = _raw_slabs(_source_values(group, case_id, name, header), header)
    try:
        _write(out_path, itertools.chain([header_bytes], slabs), compresslevel=compresslevel)
    except ValueError as err:
        raise StoreError(f"case {case_id!r}: {name}: {err}") from err
    return out_path


#: How :func:`export_cases` names a label map: the raw tree's ``<case>_seg.nii.gz``.
LABEL_SUFFIX = "_seg"


def export_cases(
    location: str | os.PathLike[str] | Store,
    folder: str | os.PathLike[str],
    *,
    split: Names = None,
    source: Names = None,
    vertebra: Vertebrae = None,
    cases: Sequence[str] | None = None,
    label: bool = False,
    storage_options: dict[str, Any] | None = None,
    compresslevel: int = 6,
    on_done: Callable[[pathlib.Path], None] | None = None,
) -> list[pathlib.Path]:
    """Write the selected cases back to NIfTI, one file each, into ``folder``.

    Each file is what :func:`to_nifti` writes: ``<case>.nii.gz`` for an image, or
    ``<case>_seg.nii.gz`` for a label map (the raw tree's names, so both fit one folder).

    Parameters
    ----------
    location
        Local path, fsspec URL or zarr store of the ctspine store.
    folder
        Local folder for the files; created if missing (its parent must exist).
    split, source, vertebra, cases
        The cases to export (:func:`ctspine_zarr.selection.case_positions`); default: every
        case.
    label
        Export the label maps instead of the images.
    storage_options
        fsspec options for a URL store.
    compresslevel
        gzip level.
    on_done
        Called with each file written (a progress bar's update).

    Returns
    -------
    list of pathlib.Path
        The files written, in catalogue order.

    Raises
    ------
    SelectionError
        For an unknown split, source or vertebra (before anything is written).
    FileNotFoundError
        When the parent of ``folder`` does not exist.
    """
    catalogue = open_catalogue(location, storage_options=storage_options)
    chosen = selected_ids(catalogue, split=split, source=source, vertebra=vertebra, cases=cases)
    out = pathlib.Path(os.fspath(folder))
    if not out.parent.is_dir():
        raise FileNotFoundError(f"{out}: no folder {out.parent} to create it in (create it first)")
    out.mkdir(exist_ok=True)
    written = []
    for case_id in chosen:
        name = f"{case_id}{LABEL_SUFFIX if label else ''}.nii.gz"
        path = to_nifti(
            location,
            case_id,
            out / name,
            label=label,
            storage_options=storage_options,
            compresslevel=compresslevel,
        )
        written.append(path)
        if on_done is not None:
            on_done(path)
    return written


def _stored_header(
    group: zarr.Group, case_id: str, header_name: str
) -> tuple[bytes, nib.Nifti1Header]:
    """The stored source header: its bytes and the header they parse to."""
    header_bytes = _read(group, header_name).astype(np.uint8).tobytes()
    try:
        header = header_from_bytes(header_bytes)
    except ValueError as err:
        raise StoreError(f"case {case_id!r}: stored {header_name}: {err}") from err
    return header_bytes, header


def _source_values(
    group: zarr.Group, case_id: str, name: str, header: nib.Nifti1Header
) -> np.ndarray:
    """The stored (scaled) voxels of ``name`` back in the source's axis order, ``[i, j, k]``."""
    stored = _read(group, name)
    values = source_layout(stored.transpose(2, 1, 0), io_orientation(header.get_best_affine()))
    shape = tuple(int(n) for n in header.get_data_shape())
    if values.shape != shape[:3] or any(n != 1 for n in shape[3:]):
        raise StoreError(
            f"case {case_id!r}: stored {name} of shape {stored.shape} does not fit the "
            f"header's shape {shape}"
        )
    return values


def _raw_slabs(values: np.ndarray, header: nib.Nifti1Header) -> Iterator[bytes]:
    """The voxels unscaled to the header's type, as the file's bytes, one ``k`` slab at a time.

    Lazy: a value that does not unscale exactly raises ValueError when its slab is reached.
    """
    dtype = header.get_data_dtype()
    slope, inter = header.get_slope_inter()
    if slope is None:  # nibabel does not scale
        slope, inter = 1.0, 0.0
    # Fortran order: the last source axis varies slowest, so write one slab per index
    return (
        unscale(np.asarray(values[:, :, k]), dtype, slope, inter).tobytes(order="F")
        for k in range(values.shape[2])
    )
