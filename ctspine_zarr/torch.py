"""PyTorch datasets over a ctspine store (optional extra: ``pip install 'ctspine_zarr[torch]'``).

The datasets mirror the Hugging Face CTSpine1K loader's items, so a user of that loader
switches by changing the import::

    from ctspine_zarr.torch import SliceDataset
    ds = SliceDataset("ctspine1k.zarr", split="train")
    loader = DataLoader(ds, batch_size=16, num_workers=2, shuffle=True)

Each item is a dict: ``image`` (float32 HU tensor), ``segmentation`` (int64 tensor),
``patient_id`` (str), ``index`` (int), ``slice_index`` (int, 2D only), ``spacing`` (float64
tensor, z, y, x mm) and ``affine`` (float64 4x4 tensor). They are the numpy sequences of
:mod:`ctspine_zarr.sampling` (which work without torch), with tensor items.

Workers: every worker opens the store itself, lazily, on its first item (the dataset carries
only the location, storage options and small index arrays), so ``num_workers > 0`` works
with the ``fork``, ``forkserver`` and ``spawn`` start methods, with ``persistent_workers``, on
local paths and fsspec URLs. No ``worker_init_fn`` is needed. zarr and fsspec reset their
event loops in a forked child, so fork (Linux's default, the fastest to start) is safe even
after the parent read items. :func:`default_context` returns the start method we test.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Sequence
from typing import Any

try:
    import torch
    from torch.utils.data import Dataset
except ImportError as err:  # pragma: no cover - exercised with torch hidden
    raise ImportError(
        "ctspine_zarr.torch needs PyTorch: pip install 'ctspine_zarr[torch]' "
        "(CPU: pip install torch==2.13.0)"
    ) from err

import numpy as np

from .sampling import Item, PatchSequence, SliceSequence, VolumeSequence

__all__ = ["PatchDataset", "SliceDataset", "VolumeDataset", "default_context", "to_tensors"]


def to_tensors(item: Item) -> dict[str, Any]:
    """Convert the numpy arrays of an item to tensors (no copy); other values are kept."""
    return {
        key: torch.from_numpy(value) if isinstance(value, np.ndarray) else value
        for key, value in item.items()
    }


def default_context() -> str:
    """Return the multiprocessing start method to give ``DataLoader(multiprocessing_context=)``.

    ``"fork"`` on Linux (fast worker start; safe: zarr and fsspec reset their event loops in
    the child and the datasets open the store per process), else the platform default
    (``"spawn"`` on macOS and Windows, which works too, only slower to start).
    """
    if sys.platform.startswith("linux"):
        return "fork"
    return multiprocessing.get_start_method(allow_none=False)


class _TensorItems:
    """Makes a numpy sequence a torch Dataset: items become tensors before the ``transform``."""

    _convert = staticmethod(to_tensors)

    def __getitems__(self: Any, indices: Sequence[int]) -> list[Any]:
        """Return a batch of items; the DataLoader calls this with one batch's indices."""
        return self.getitems(indices)


class SliceDataset(_TensorItems, SliceSequence, Dataset):
    """One item per axial slice: ``image`` and ``segmentation`` are [Y, X] tensors.

    The parameters are those of :class:`ctspine_zarr.sampling.SliceSequence`; ``transform``
    receives the item as a dict of tensors.
    """


class VolumeDataset(_TensorItems, VolumeSequence, Dataset):
    """One item per case: ``image`` and ``segmentation`` are [Z, Y, X] tensors.

    The parameters are those of :class:`ctspine_zarr.sampling.VolumeSequence`. Volumes differ
    in shape: use ``batch_size=None`` or ``batch_size=1`` (or a custom ``collate_fn``).
    """


class PatchDataset(_TensorItems, PatchSequence, Dataset):
    """Random ``(z, y, x)`` patches, a fraction forced to hold a vertebra (nnU-Net style).

    The parameters and the sampling are those of :class:`ctspine_zarr.sampling.PatchSequence`.
    Call :meth:`set_epoch` before each epoch (before iterating the DataLoader); workers,
    persistent ones included, see the new epoch.
    """
