"""Training datasets as plain sequences of numpy arrays; no PyTorch needed.

:class:`SliceSequence`, :class:`VolumeSequence` and :class:`PatchSequence` index a ctspine store
through its catalogue and return one ``dict`` per item with the Hugging Face CTSpine1K loader's
field names plus the geometry::

    image         float32 HU, [Y, X] (slices) or [Z, Y, X] (volumes, patches)
    segmentation  int64 VerSe labels, same shape
    patient_id    case id (str)
    index         position of the case in the dataset's case list (int)
    slice_index   z index of the slice in its case (slices only)
    spacing       float64 [3]: voxel size (z, y, x) in mm
    affine        float64 [4, 4]: the case's canonical affine, voxel (x, y, z) -> RAS+ mm

``ctspine_zarr.torch`` wraps them as ``torch.utils.data.Dataset``.

Process safety: a sequence holds only the store location, its storage options and small index
arrays built from the catalogue at construction. Zarr arrays are opened lazily, once per
process (the cache is keyed by process id and dropped when pickled), so a forked or spawned
DataLoader worker opens its own store and never uses its parent's file handles, filesystem
objects or event loop.

Item path: a slice read is one inner chunk (one axial slice) of a shard per array, read
through :mod:`ctspine_zarr.io.slicereader`: the shard index once per process, then only the
chunk's byte range, decoded synchronously in the calling thread (no xarray, no dask, no
asyncio round trip per chunk on a local store); the requests of one batch are gathered.

Modules: :mod:`ctspine_zarr.sampling.cases` (the catalogue filtered into index arrays),
:mod:`ctspine_zarr.sampling.sequences` (the shared base, slices, volumes) and
:mod:`ctspine_zarr.sampling.patches` (random patches and their placement).
"""

from __future__ import annotations

from ..vertebrae import parse_vertebra
from .patches import PAD_IMAGE, PAD_LABEL, PatchSequence
from .sequences import Item, SliceSequence, VolumeSequence

__all__ = [
    "PAD_IMAGE",
    "PAD_LABEL",
    "Item",
    "PatchSequence",
    "SliceSequence",
    "VolumeSequence",
    "parse_vertebra",
]
