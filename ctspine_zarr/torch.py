"""PyTorch datasets over a ctspine store (optional extra: ``pip install 'ctspine_zarr[torch]'``).

The datasets mirror the Hugging Face CTSpine1K loader's items, so a user of that loader
switches by changing the import::

    from ctspine_zarr.torch import SliceDataset
    ds = SliceDataset("ctspine1k.zarr", split="train")
    loader = DataLoader(ds, batch_size=16, num_workers=2, shuffle=True)

Each item is a dict: ``image`` (float32 HU tensor), ``segmentation`` (int64 tensor),
``patient_id`` (str), ``index`` (int), ``slice_index`` (int, 2D only), ``spacing`` (float64
tensor, z, y, x mm) and ``affine`` (float64 4x4 tensor). They are thin wrappers around the
numpy sequences of :mod:`ctspine_zarr.sampling`, which work without torch.

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
from collections.abc import Callable, Sequence
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
import numpy.typing as npt

from .sampling import Item, PatchSequence, SliceSequence, VolumeSequence
from .sampling.sequences import Location

__all__ = ["PatchDataset", "SliceDataset", "VolumeDataset", "default_context", "to_tensors"]

TensorTransform = Callable[[dict[str, Any]], Any]


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


class _TorchDataset(Dataset):
    """A torch Dataset over one of the numpy sequences."""

    sequence: SliceSequence | VolumeSequence | PatchSequence

    def __init__(self, transform: TensorTransform | None) -> None:
        self.transform = transform

    def __len__(self) -> int:
        return len(self.sequence)

    def _convert(self, item: Item) -> Any:
        tensors = to_tensors(item)
        return tensors if self.transform is None else self.transform(tensors)

    def __getitem__(self, index: int) -> Any:
        return self._convert(self.sequence.getitems([index])[0])

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        """Return a batch of items; the DataLoader calls this with one batch's indices."""
        return [self._convert(item) for item in self.sequence.getitems(indices)]

    @property
    def case_ids(self) -> tuple[str, ...]:
        """Case ids of the dataset; the ``index`` of an item is a position in this tuple."""
        return self.sequence.case_ids

    def __repr__(self) -> str:
        return repr(self.sequence).replace("Sequence(", "Dataset(", 1)


class SliceDataset(_TorchDataset):
    """One item per axial slice: ``image`` and ``segmentation`` are [Y, X] tensors.

    Parameters
    ----------
    store
        Local path, fsspec URL or zarr store of a ctspine store.
    split
        ``"train"``, ``"validation"``, ``"test"``, ``"unassigned"``, or None for all cases.
    source
        Keep the cases of this source (or these sources).
    vertebra
        Keep the cases holding this vertebra (``22`` or ``"L3"``); with ``foreground_only``,
        the slices holding it.
    foreground_only
        Keep only the slices holding a vertebra (stored per-slice index; masks are not read).
    transform
        Callable applied to each item (a dict of tensors), its result returned.
    image_dtype, segmentation_dtype
        numpy dtypes of the outputs (default float32 and int64); None keeps the stored ones.
    storage_options
        fsspec options for a URL.
    """

    def __init__(
        self,
        store: Location,
        split: str | None = "train",
        *,
        source: str | Sequence[str] | None = None,
        vertebra: int | str | None = None,
        foreground_only: bool = False,
        transform: TensorTransform | None = None,
        image_dtype: npt.DTypeLike | None = np.float32,
        segmentation_dtype: npt.DTypeLike | None = np.int64,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(transform)
        self.sequence = SliceSequence(
            store,
            split,
            source=source,
            vertebra=vertebra,
            foreground_only=foreground_only,
            image_dtype=image_dtype,
            segmentation_dtype=segmentation_dtype,
            storage_options=storage_options,
        )


class VolumeDataset(_TorchDataset):
    """One item per case: ``image`` and ``segmentation`` are [Z, Y, X] tensors.

    Parameters are those of :class:`SliceDataset` without ``foreground_only``. Volumes differ
    in shape: use ``batch_size=None`` or ``batch_size=1`` (or a custom ``collate_fn``).
    """

    def __init__(
        self,
        store: Location,
        split: str | None = "train",
        *,
        source: str | Sequence[str] | None = None,
        vertebra: int | str | None = None,
        transform: TensorTransform | None = None,
        image_dtype: npt.DTypeLike | None = np.float32,
        segmentation_dtype: npt.DTypeLike | None = np.int64,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(transform)
        self.sequence = VolumeSequence(
            store,
            split,
            source=source,
            vertebra=vertebra,
            image_dtype=image_dtype,
            segmentation_dtype=segmentation_dtype,
            storage_options=storage_options,
        )


class PatchDataset(_TorchDataset):
    """Random ``(z, y, x)`` patches, a fraction forced to hold a vertebra (nnU-Net style).

    See :class:`ctspine_zarr.sampling.PatchSequence` for the sampling. Call
    :meth:`set_epoch` before each epoch (before iterating the DataLoader); workers, persistent
    ones included, see the new epoch.

    Parameters
    ----------
    store, split, source, vertebra, transform, image_dtype, segmentation_dtype, storage_options
        As for :class:`SliceDataset`.
    patch_size
        ``(z, y, x)`` voxels; patches larger than a volume are padded (-1024 HU, label 0).
    foreground_fraction
        Fraction of each epoch's items forced to hold a vertebra (exact per epoch).
    samples_per_epoch
        Items per epoch.
    seed
        Seed: item ``i`` of epoch ``e`` draws from ``np.random.default_rng([seed, e, i])``.
    """

    sequence: PatchSequence

    def __init__(
        self,
        store: Location,
        split: str | None = "train",
        *,
        patch_size: Sequence[int],
        foreground_fraction: float = 0.33,
        samples_per_epoch: int = 1000,
        seed: int | None = None,
        source: str | Sequence[str] | None = None,
        vertebra: int | str | None = None,
        transform: TensorTransform | None = None,
        image_dtype: npt.DTypeLike | None = np.float32,
        segmentation_dtype: npt.DTypeLike | None = np.int64,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(transform)
        self.sequence = PatchSequence(
            store,
            split,
            patch_size=patch_size,
            foreground_fraction=foreground_fraction,
            samples_per_epoch=samples_per_epoch,
            seed=seed,
            source=source,
            vertebra=vertebra,
            image_dtype=image_dtype,
            segmentation_dtype=segmentation_dtype,
            storage_options=storage_options,
        )

    @property
    def epoch(self) -> int:
        """The current epoch."""
        return self.sequence.epoch

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch; DataLoader workers started from this dataset see it."""
        self.sequence.set_epoch(epoch)

    @property
    def seed(self) -> int:
        """The seed (drawn at construction when None was given)."""
        return self.sequence.seed
