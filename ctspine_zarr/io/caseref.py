"""References to one array of one case, as training frameworks pass files to their readers.

MONAI and TorchIO hand their readers one string (or path) per image. A reference names the
store, the case, the array and optionally a range of axial slices::

    STORE::CASE                      the image of CASE
    STORE::CASE::label               its label map
    STORE::CASE::image::z=40:72      slices 40 to 71 of the image (Python slice bounds)

or, as a dict, ``{"store": STORE, "case": CASE, "array": "label", "z": [40, 72]}``.
``STORE`` is a local path or an fsspec URL; storage options are given to the reader, never
inside a reference (a reference travels through ``pathlib.Path``, which keeps no options).

The frameworks turn file names into ``pathlib.Path`` and back, which folds the ``//`` of a URL
(``s3://bucket/x.zarr`` becomes ``s3:/bucket/x.zarr``): :func:`parse_reference` restores it.
:class:`CaseRef` is the dict form that MONAI's ``LoadImage`` passes on whole (it iterates a
plain dict as a sequence of file names, its keys).

:func:`read_canonical` reads the referenced slices in closest-canonical RAS+ orientation,
indexed ``[x, y, z]`` as nibabel indexes an image, with the affine of exactly those voxels.
Nothing here imports a framework.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

import numpy as np
import numpy.typing as npt
import zarr

from ..schema import IMAGE, IMAGE_HEADER, LABEL, LABEL_HEADER, SLICE_VERTEBRAE
from .processcache import ProcessCache
from .slicereader import case_readers, read_blocks
from .store import cache_key, case_group

__all__ = [
    "SEPARATOR",
    "CanonicalBlock",
    "CaseRef",
    "Reference",
    "foreground_slices",
    "REFERENCE_KEYS",
    "format_reference",
    "parse_reference",
    "read_canonical",
    "source_header_bytes",
    "transposed",
]

#: What separates the store, the case and the options of a reference string.
SEPARATOR: Final = "::"
_ARRAYS: Final = (IMAGE, LABEL)
#: The keys of a reference given as a dict.
REFERENCE_KEYS: Final = frozenset({"store", "case", "array", "z"})
#: ``scheme:/rest`` with the ``//`` folded by ``pathlib`` (two letters at least: not ``C:/``)
_FOLDED_URL: Final = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]+):/+(.*)$", re.S)


@dataclass(frozen=True)
class Reference:
    """One array of one case, optionally a z range of it.

    Attributes
    ----------
    store
        Local path or fsspec URL of the store.
    case
        The case id.
    array
        ``"image"`` or ``"label"``.
    z
        ``(start, stop)`` slice bounds along z as Python slices take them (None: open), or
        None for every slice.
    """

    store: str
    case: str
    array: str = IMAGE
    z: tuple[int | None, int | None] | None = None

    def __str__(self) -> str:
        return format_reference(self.store, self.case, self.array, self.z)

    def z_range(self, n_z: int) -> tuple[int, int]:
        """The ``[z0, z1)`` slices of a case of ``n_z`` slices this reference reads.

        Raises
        ------
        ValueError
            When the range holds no slice.
        """
        if self.z is None:
            return 0, n_z
        z0, z1, _ = slice(*self.z).indices(n_z)
        if z1 <= z0:
            raise ValueError(
                f"{self}: the z range {_z_text(self.z)} holds no slice of case {self.case!r} "
                f"({n_z} slices)"
            )
        return z0, z1


def _z_text(z: tuple[int | None, int | None]) -> str:
    return ":".join("" if v is None else str(v) for v in z)


def format_reference(
    store: str | os.PathLike[str],
    case: str,
    array: str = IMAGE,
    z: tuple[int | None, int | None] | None = None,
) -> str:
    """Return the reference string of ``array`` of ``case`` (slices ``z`` if given).

    Parameters
    ----------
    store
        Local path or fsspec URL of the store.
    case
        The case id.
    array
        ``"image"`` or ``"label"``.
    z
        ``(start, stop)`` slice bounds, or None for the whole case.

    Raises
    ------
    ValueError
        For an array other than ``"image"`` and ``"label"``, or a bad range.

    Examples
    --------
    >>> format_reference("ctspine1k.zarr", "liver_110", "label", (40, 72))
    'ctspine1k.zarr::liver_110::label::z=40:72'
    """
    text = f"{os.fspath(store)}{SEPARATOR}{case}"
    if array != IMAGE:
        text += f"{SEPARATOR}{array}"
    if z is not None:
        text += f"{SEPARATOR}z={_z_text(z)}"
    parse_reference(text)  # refuses an unknown array or a bad range now, not at the read
    return text


def _restore_url(store: str) -> str:
    """The store location with the ``//`` that ``pathlib`` folds restored (``file:`` made local)."""
    match = _FOLDED_URL.match(store)
    if match is None:
        return store
    scheme, rest = match.groups()
    if scheme.lower() == "file":
        return "/" + rest
    return f"{scheme}://{rest}"


def _parse_z(text: str, ref: Any) -> tuple[int | None, int | None]:
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        bounds = tuple(None if p.strip() == "" else int(p) for p in parts)
    except ValueError:
        raise ValueError(
            f"{ref}: the z range must be START:STOP (Python slice bounds, either may be "
            f"left out), but is {text!r}"
        ) from None
    return bounds[0], bounds[1]


def _check_array(array: Any, ref: Any) -> str:
    if array not in _ARRAYS:
        raise ValueError(f"{ref}: the array must be 'image' or 'label', but is {array!r}")
    return str(array)


def parse_reference(ref: str | os.PathLike[str] | Mapping[str, Any] | Reference) -> Reference:
    """Return the :class:`Reference` a string, path or dict names.

    Parameters
    ----------
    ref
        ``"STORE::CASE[::label][::z=START:STOP]"`` (also as a ``pathlib.Path``, whose folded
        URL is restored), a dict with ``store``, ``case`` and optionally ``array`` and ``z``
        (``[start, stop]`` or ``"start:stop"``), or a :class:`Reference`.

    Raises
    ------
    ValueError
        When ``ref`` is not a reference, naming it and what is wrong.
    """
    if isinstance(ref, Reference):
        return ref
    if isinstance(ref, Mapping):
        return _from_mapping(ref)
    if not isinstance(ref, str | os.PathLike):
        raise ValueError(f"{ref!r} is not a case reference (STORE::CASE or a dict)")
    text = os.fspath(ref)
    if not isinstance(text, str):
        raise ValueError(f"{ref!r} is not a case reference (STORE::CASE or a dict)")
    parts = text.split(SEPARATOR)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise ValueError(
            f"{text}: not a case reference; write STORE::CASE (STORE::CASE::label for the "
            "label map, ::z=START:STOP for a range of slices)"
        )
    array, z = IMAGE, None
    for option in parts[2:]:
        if option in _ARRAYS:
            array = option
        elif option.startswith("z="):
            z = _parse_z(option[2:], text)
        else:
            raise ValueError(
                f"{text}: unknown part {option!r} (expected 'label', 'image' or z=START:STOP)"
            )
    return Reference(_restore_url(parts[0]), parts[1], array, z)


def _from_mapping(ref: Mapping[str, Any]) -> Reference:
    unknown = sorted(set(ref) - REFERENCE_KEYS)
    if unknown or "store" not in ref or "case" not in ref:
        raise ValueError(
            f"{dict(ref)!r}: a dict reference has the keys store, case and optionally array "
            f"and z" + (f"; unknown: {unknown}" if unknown else "")
        )
    z = ref.get("z")
    if isinstance(z, str):
        z = _parse_z(z, dict(ref))
    elif z is not None:
        start, stop = z
        z = (None if start is None else int(start), None if stop is None else int(stop))
    store = ref["store"]
    array = _check_array(ref.get("array", IMAGE), dict(ref))
    return Reference(_restore_url(os.fspath(store)), str(ref["case"]), array, z)


class CaseRef(dict[str, Any]):
    """The dict form of a reference that MONAI's ``LoadImage`` passes to its reader whole.

    ``CaseRef(store="ctspine1k.zarr", case="liver_110", array="label", z=(40, 72))`` is a
    plain dict of those keys (JSON-able, picklable, hashable by MONAI's persistent caches)
    and a path-like whose path is the reference string. MONAI iterates any other dict as a
    sequence of file names (its keys); ``ndim == 0`` marks this one as a single item.
    """

    #: MONAI's ``ensure_tuple`` treats an object of ``ndim`` 0 as one item, not a sequence.
    ndim: Final = 0

    def __init__(
        self,
        store: str | os.PathLike[str],
        case: str,
        array: str = IMAGE,
        z: tuple[int | None, int | None] | None = None,
    ) -> None:
        values: dict[str, Any] = {"store": os.fspath(store), "case": case, "array": array}
        if z is not None:
            values["z"] = list(z)
        parse_reference(values)  # refuse a bad reference now, not when it is read
        super().__init__(values)

    def __fspath__(self) -> str:
        return str(parse_reference(dict(self)))

    def __reduce__(self) -> tuple[Any, ...]:
        return (_case_ref, (dict(self),))


def _case_ref(values: dict[str, Any]) -> CaseRef:
    return CaseRef(**values)


# The functional form (as CaseReaders in slicereader): the field types are objects, which the
# API reference resolves, not strings of this module's future annotations.
CanonicalBlock = NamedTuple(  # noqa: UP014
    "CanonicalBlock",
    [
        ("data", np.ndarray),
        ("affine", np.ndarray),
        ("z0", int),
        ("z1", int),
        ("n_z", int),
        ("attrs", dict),
    ],
)
CanonicalBlock.__doc__ = """Slices of one array of a case, in closest-canonical RAS+ orientation.

Attributes
----------
data
    The voxels indexed ``[x, y, z]`` (a transposed view of C-ordered ``[z, y, x]`` slices,
    the way nibabel's arrays of a NIfTI file are laid out).
affine
    The 4x4 affine of exactly these voxels (the case's canonical affine shifted by ``z0``).
z0, z1
    The slices read: ``[z0, z1)`` of the case.
n_z
    The slices of the case.
attrs
    The case's attributes (``source_affine``, ``spacing_zyx``, ``split``, ...).
"""


def read_canonical(
    ref: Reference,
    *,
    storage_options: dict[str, Any] | None = None,
    dtype: npt.DTypeLike | None = None,
    contiguous: bool = False,
) -> CanonicalBlock:
    """Read the slices ``ref`` names, as ``dtype`` (None: as stored).

    Only the chunks of the z range are read and decoded (one slice is one chunk).

    Parameters
    ----------
    ref
        What to read.
    storage_options
        fsspec options for a URL store.
    dtype
        The type of the voxels returned.
    contiguous
        Return a C-contiguous ``[x, y, z]`` array (a copy made by :func:`transposed`)
        rather than a transposed view of the decoded ``[z, y, x]`` slices.

    Raises
    ------
    CaseNotFoundError
        When the store holds no such case.
    ValueError
        When the z range holds no slice.
    """
    readers = case_readers(ref.store, ref.case, storage_options)
    reader = readers.image if ref.array == IMAGE else readers.label
    n_z = int(reader.shape[0])
    z0, z1 = ref.z_range(n_z)
    wanted = None if dtype is None else np.dtype(dtype)
    (block,) = read_blocks([(reader, z0, z1, None if contiguous else wanted)])
    data = transposed(block, wanted) if contiguous else block.transpose(2, 1, 0)
    affine = readers.affine.copy()
    affine[:3, 3] += affine[:3, 2] * z0
    attrs = dict(case_group(ref.store, ref.case, storage_options=storage_options).attrs)
    return CanonicalBlock(data, affine, z0, z1, n_z, attrs)


#: Slices and rows :func:`transposed` moves at a time (a tile whose reads stay in cache).
TRANSPOSE_TILE: Final = (16, 64)


def transposed(zyx: np.ndarray, dtype: np.dtype[Any] | None = None) -> np.ndarray:
    """``zyx.transpose(2, 1, 0)`` as a new C-contiguous array of ``dtype`` (None: ``zyx``'s).

    numpy copies a whole transposed volume voxel by voxel from slices a megabyte apart, which
    misses the cache at every read; tiles of :data:`TRANSPOSE_TILE` slices and rows keep the
    reads of a run of writes in cache: 4-6 times faster on 512x512 slices (the cast comes free).
    """
    nz, ny, nx = zyx.shape
    out = np.empty((nx, ny, nz), dtype=zyx.dtype if dtype is None else dtype)
    step_z, step_y = TRANSPOSE_TILE
    for z in range(0, nz, step_z):
        for y in range(0, ny, step_y):
            tile = zyx[z : z + step_z, y : y + step_y]
            out[:, y : y + step_y, z : z + step_z] = tile.transpose(2, 1, 0)
    return out


#: The stored source headers read in this process: (store key, case, array) -> bytes.
_headers: ProcessCache[bytes] = ProcessCache(limit=512)


def source_header_bytes(ref: Reference, storage_options: dict[str, Any] | None = None) -> bytes:
    """The bytes ``[0, vox_offset)`` of the source NIfTI file of ``ref``'s array (cached)."""
    key = (*cache_key(ref.store, storage_options), ref.case, ref.array)
    found = _headers.get(key)
    if found is None:
        group = case_group(ref.store, ref.case, storage_options=storage_options)
        array = group[IMAGE_HEADER if ref.array == IMAGE else LABEL_HEADER]
        assert isinstance(array, zarr.Array)
        found = _headers.put(key, np.asarray(array[...]).astype(np.uint8).tobytes())
    return found


#: Slices holding a vertebra, per case read in this process: (store key, case) -> indices.
_foreground: ProcessCache[np.ndarray] = ProcessCache(limit=4096)


def foreground_slices(
    store: str, case: str, storage_options: dict[str, Any] | None = None
) -> np.ndarray:
    """The z indices of the slices of ``case`` that hold a vertebra (from the stored index)."""
    key = (*cache_key(store, storage_options), case)
    found = _foreground.get(key)
    if found is None:
        array = case_group(store, case, storage_options=storage_options)[SLICE_VERTEBRAE]
        assert isinstance(array, zarr.Array)
        rows = np.asarray(array[...], dtype=bool).any(axis=1)
        found = _foreground.put(key, np.flatnonzero(rows))
    return found
