"""MONAI reads cases from a ctspine store (optional extra: ``pip install "ctspine-zarr[monai]"``).

:class:`CTSpineReader` is a MONAI ``ImageReader``: give it to ``LoadImage`` / ``LoadImaged``
as any reader, and a case reference instead of a file name::

    from monai.transforms import LoadImaged
    from ctspine_zarr.monai import CTSpineReader, datalist

    data = datalist("ctspine1k.zarr", split="train")  # [{"image": "ctspine1k.zarr::liver_110",
                                                        #   "label": "...::liver_110::label", ...}]
    load = LoadImaged(keys=["image", "label"], reader=CTSpineReader(), ensure_channel_first=True)
    item = load(data[0])                               # MetaTensors, as from the NIfTI files

A reference is ``"STORE::CASE"`` (the image), ``"STORE::CASE::label"`` (the label map),
with ``::z=START:STOP`` for a range of axial slices, or the dict form :class:`CaseRef`
(``ctspine_zarr.io.caseref`` describes them). ``STORE`` is a path or an fsspec URL; the
reader's ``storage_options`` open URL stores. ``import ctspine_zarr.monai`` also registers
the reader in MONAI's ``SUPPORTED_READERS`` (as ``"ctspinereader"``), so
``LoadImage(reader="CTSpineReader")`` finds it, and a ``LoadImage()`` that picks its reader
by file name picks this one for references (``verify_suffix``).

The array is the case in closest-canonical RAS+ orientation, indexed ``[x, y, z]``; the
metadata is that of MONAI's ``NibabelReader(as_closest_canonical=True)`` on the source file:
the source header's fields, ``affine`` (of the array), ``original_affine`` (of the source
file), ``spatial_shape``, ``original_channel_dim``, ``space`` (RAS) and ``filename_or_obj``
(the reference), plus ``z_range`` (the slices read). So ``Orientationd``, ``Spacingd``,
``CropForegroundd``, ``RandCropByPosNegLabeld``, ``CacheDataset`` and ``PersistentDataset``
work unchanged, and ``Orientation("RAS")`` of a read equals it after ``NibabelReader`` on
the source ``.nii.gz`` (the tests check every orientation variant).

A z range reads and decodes only its slices: :class:`RandZWindowd`, placed before
``LoadImaged``, narrows each item's references to a window of slices (holding a vertebra with
probability ``pos / (pos + neg)``, from the stored per-slice index), so that a patch pipeline
reads a slab instead of the whole volume.
"""

from __future__ import annotations

import os
import re
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Final

try:
    from monai.data import correct_nifti_header_if_necessary
    from monai.data.image_reader import ImageReader
    from monai.transforms import MapTransform, Randomizable
    from monai.transforms.io.array import SUPPORTED_READERS
    from monai.utils import ImageMetaKey, MetaKeys, SpaceKeys
except ImportError as err:  # pragma: no cover - exercised with MONAI hidden
    raise ImportError(
        'ctspine_zarr.monai needs MONAI: pip install "ctspine-zarr[monai]" '
        "(CPU torch: pip install torch==2.13.0)"
    ) from err

import nibabel as nib
import numpy as np
import numpy.typing as npt

from .io.caseref import (
    REFERENCE_KEYS,
    CaseRef,
    Reference,
    foreground_slices,
    format_reference,
    parse_reference,
    read_canonical,
    source_header_bytes,
)
from .io.export import header_from_bytes
from .io.processcache import ProcessCache
from .io.slicereader import case_readers
from .io.store import cache_key, open_catalogue
from .schema import LABEL

__all__ = ["CTSpineReader", "CaseRef", "RandZWindowd", "datalist", "reference"]

#: The key of the reader in MONAI's ``SUPPORTED_READERS``.
READER_KEY: Final = "ctspinereader"
#: numpy type strings of text and objects (torch's ``np_str_obj_array_pattern``)
_TEXT_DTYPE: Final = re.compile(r"[SaUO]")


#: The reference string of a case's array (:func:`ctspine_zarr.io.caseref.format_reference`).
reference = format_reference


def datalist(
    store: str | os.PathLike[str],
    split: str | Sequence[str] | None = None,
    *,
    source: str | Sequence[str] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> list[dict[str, str]]:
    """Return MONAI data dicts of the cases of a split: ``image``, ``label`` and ``case``.

    Parameters
    ----------
    store
        Local path or fsspec URL of the store.
    split
        ``"train"``, ``"validation"``, ``"test"``, ``"unassigned"`` or several; None (the
        default) selects every case, as every reader of the package does
        (:mod:`ctspine_zarr.selection`): pass ``split="train"`` to train.
    source
        Only the cases of this source (or these sources).
    storage_options
        fsspec options for a URL store (give the reader the same ones).
    """
    location = os.fspath(store)
    catalogue = open_catalogue(location, storage_options=storage_options)
    return [
        {
            "image": format_reference(location, case),
            "label": format_reference(location, case, LABEL),
            "case": case,
        }
        for case in catalogue.ctspine.case_ids(split=split, source=source)
    ]


class _Read:
    """What :meth:`CTSpineReader.read` returns for one reference (the data is read later)."""

    def __init__(self, ref: Reference) -> None:
        self.ref = ref


def _items(data: Any) -> list[Any]:
    if isinstance(data, str | os.PathLike | Mapping | Reference):
        return [data]
    return list(data)


#: The source headers' metadata parsed in this process: (store key, case, array) -> dict.
_header_meta: ProcessCache[dict[str, Any]] = ProcessCache(limit=512)


class CTSpineReader(ImageReader):
    """A MONAI image reader of case references into a ctspine store.

    Parameters
    ----------
    storage_options
        fsspec options for URL stores (endpoint, credentials, timeouts).
    dtype
        The array's type, decoded straight into it: float32 (the default, what ``LoadImage``
        converts to anyway), or None for the stored type (int16 HU, uint8 labels).
    channel_dim
        ``original_channel_dim`` in the metadata: None (no channel, as a NIfTI volume) or an
        int, as ``NibabelReader`` takes it.
    """

    def __init__(
        self,
        storage_options: dict[str, Any] | None = None,
        dtype: npt.DTypeLike | None = np.float32,
        channel_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.storage_options = dict(storage_options or {})
        self.dtype = None if dtype is None else np.dtype(dtype)
        self.channel_dim = channel_dim

    def verify_suffix(self, filename: Sequence[Any] | Any) -> bool:
        """Whether every name in ``filename`` is a case reference (``STORE::CASE`` or a dict)."""
        names = _items(filename)
        for name in names:
            try:
                parse_reference(name)
            except ValueError:
                return False
        return bool(names)

    def read(self, data: Sequence[Any] | Any, **kwargs: Any) -> Any:
        """Resolve references (checked now: an unknown case raises here); read nothing yet.

        Parameters
        ----------
        data
            A reference or a sequence of them (stacked as channels by :meth:`get_data`).
        **kwargs
            Not used (MONAI passes reader options here).

        Returns
        -------
        object or list
            One handle per reference, for :meth:`get_data`.
        """
        names = _items(data)
        if names and all(isinstance(n, str) and n in REFERENCE_KEYS for n in names):
            raise ValueError(
                f"got {tuple(names)}, the keys of a dict: MONAI's LoadImage iterates a plain dict "
                "as file names. Give it ctspine_zarr.monai.CaseRef(store=..., case=...) or the "
                "string 'STORE::CASE'"
            )
        reads = []
        for name in names:
            ref = parse_reference(name)
            case_readers(ref.store, ref.case, self.storage_options or None)  # the case exists
            reads.append(_Read(ref))
        return reads if len(reads) > 1 else reads[0]

    def get_data(self, img: Any) -> tuple[np.ndarray, dict[str, Any]]:
        """Read the voxels and make the metadata of what :meth:`read` returned.

        Returns
        -------
        tuple
            The ``[x, y, z]`` array (``[c, x, y, z]`` for several references) and its
            metadata dict.
        """
        reads = img if isinstance(img, list) else [img]
        arrays, metas = [], []
        for one in reads:
            array, meta = self._one(one.ref)
            arrays.append(array)
            metas.append(meta)
        if len(arrays) == 1:
            return arrays[0], metas[0]
        first = metas[0]
        for ref, meta in zip(reads[1:], metas[1:], strict=True):
            same_shape = np.array_equal(meta[MetaKeys.SPATIAL_SHAPE], first[MetaKeys.SPATIAL_SHAPE])
            if not same_shape or not np.allclose(meta[MetaKeys.AFFINE], first[MetaKeys.AFFINE]):
                raise ValueError(
                    f"{ref.ref} does not have the shape and affine of {reads[0].ref}; "
                    "only arrays of one grid stack as channels"
                )
        first[MetaKeys.ORIGINAL_CHANNEL_DIM] = 0
        return np.stack(arrays, axis=0), first

    def _one(self, ref: Reference) -> tuple[np.ndarray, dict[str, Any]]:
        options = self.storage_options or None
        block = read_canonical(ref, storage_options=options, dtype=self.dtype, contiguous=True)
        meta = _source_meta(ref, options)
        meta[MetaKeys.AFFINE] = block.affine
        meta[MetaKeys.ORIGINAL_AFFINE] = np.asarray(block.attrs["source_affine"], dtype=np.float64)
        meta["as_closest_canonical"] = True
        meta[MetaKeys.SPATIAL_SHAPE] = np.asarray(block.data.shape, dtype=np.int64)
        meta[MetaKeys.SPACE] = SpaceKeys.RAS
        meta[MetaKeys.ORIGINAL_CHANNEL_DIM] = (
            float("nan") if self.channel_dim is None else self.channel_dim
        )
        meta["z_range"] = np.array([block.z0, block.z1], dtype=np.int64)
        meta[ImageMetaKey.FILENAME_OR_OBJ] = str(ref)
        return block.data, meta


def _source_meta(ref: Reference, storage_options: dict[str, Any] | None) -> dict[str, Any]:
    """The source header's fields as ``NibabelReader`` puts them in the metadata (a copy)."""
    key = (*cache_key(ref.store, storage_options), ref.case, ref.array)
    meta = _header_meta.get(key)
    if meta is None:
        header_bytes = source_header_bytes(ref, storage_options)
        klass = (
            nib.Nifti1Image
            if header_from_bytes(header_bytes).sizeof_hdr == 348
            else nib.Nifti2Image
        )
        # the header alone: nibabel reads no voxels until asked, and MONAI's fix-up of an
        # inconsistent pixdim needs none
        image = correct_nifti_header_if_necessary(klass.from_bytes(header_bytes))
        try:
            header = image.header.as_byteswapped("<")
        except ValueError:
            header = image.header
        # as NibabelReader: without the text fields, which a DataLoader cannot batch
        meta = {
            k: v
            for k, v in dict(header).items()
            if not (isinstance(v, np.ndarray) and _TEXT_DTYPE.search(v.dtype.str))
        }
        meta[MetaKeys.ORIGINAL_PIXDIM] = np.array(meta[MetaKeys.PIXDIM], copy=True)
        meta = _header_meta.put(key, meta)
    return {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in meta.items()}


class RandZWindowd(Randomizable, MapTransform):
    """Narrow the references of ``keys`` to one random window of ``size`` axial slices.

    Place it before ``LoadImaged``: the loader then reads and decodes only the window's
    slices. The window holds a vertebra with probability ``pos / (pos + neg)`` (a slice
    drawn from those the stored per-slice index marks, when the case has any), else lies
    anywhere; a case of at most ``size`` slices is read whole. Every key gets the same window.

    Parameters
    ----------
    keys
        Keys of the data dict holding references of one case (``"image"``, ``"label"``).
    size
        Slices per window.
    pos, neg
        Weights of a window around a vertebra slice and of one anywhere.
    storage_options
        fsspec options for URL stores (those of the reader).
    allow_missing_keys
        Skip keys the data dict lacks.
    """

    def __init__(
        self,
        keys: Any,
        size: int,
        pos: float = 1.0,
        neg: float = 1.0,
        storage_options: dict[str, Any] | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        if size < 1:
            raise ValueError(f"size must be at least 1 slice, but is {size}")
        if pos < 0 or neg < 0 or pos + neg <= 0:
            raise ValueError(f"pos and neg must be >= 0 and not both 0, but are {pos}, {neg}")
        self.size = int(size)
        self.pos_ratio = pos / (pos + neg)
        self.storage_options = dict(storage_options or {})
        self._z0 = 0

    def randomize(self, data: Any = None) -> None:
        """Draw the first slice of the window of a case: ``data`` is ``(n_z, foreground)``."""
        n_z, foreground = data
        if n_z <= self.size:
            self._z0 = 0
            return
        if len(foreground) and self.R.rand() < self.pos_ratio:
            centre = int(foreground[self.R.randint(len(foreground))])
        else:
            centre = int(self.R.randint(n_z))
        self._z0 = min(max(centre - self.size // 2, 0), n_z - self.size)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Return a copy of ``data`` whose references of ``keys`` name the drawn window."""
        d = dict(data)
        refs = {key: parse_reference(d[key]) for key in self.key_iterator(d)}
        if not refs:
            return d
        first = next(iter(refs.values()))
        if any((r.store, r.case) != (first.store, first.case) for r in refs.values()):
            raise ValueError(f"RandZWindowd: the keys {list(refs)} name different cases")
        options = self.storage_options or None
        n_z = int(case_readers(first.store, first.case, options).image.shape[0])
        self.randomize((n_z, foreground_slices(first.store, first.case, options)))
        window = (self._z0, min(self._z0 + self.size, n_z))
        for key, ref in refs.items():
            d[key] = format_reference(ref.store, ref.case, ref.array, window)
        return d


SUPPORTED_READERS.setdefault(READER_KEY, CTSpineReader)
