"""nnU-Net's own blosc2 layout, the package's PatchSequence, and the 2-worker DataLoaders.

nnU-Net v2 preprocesses a case into ``<id>.b2nd`` (the image, float32, normalised, with a
channel axis) and ``<id>_seg.b2nd`` (int16) written by ``nnUNetDatasetBlosc2.save_case`` with
chunks and blocks from ``comp_blosc2_params(shape, patch_size, itemsize)`` (what its
preprocessor passes: ``run_case_save``), LZ4HC level 5 and the filter it picks per array.
Its data loader opens both files lazily per sample (``load_case``: ``blosc2.open`` memory
mapped, one decompression thread) and cuts the patch with ``crop_and_pad_nd``; that is
what :class:`NnunetCases` times, for the same boxes as the other readers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .data import Case
from .lean import Box, LeanArray, read_many

__all__ = [
    "NnunetCases",
    "have_nnunet",
    "have_torch",
    "loader_rate",
    "normaliser",
    "save_nnunet",
]


def have_nnunet() -> bool:
    """Whether nnunetv2 (and so blosc2 and acvl_utils) can be imported here."""
    try:
        import nnunetv2.training.dataloading.nnunet_dataset  # noqa: F401
        from acvl_utils.cropping_and_padding.bounding_boxes import crop_and_pad_nd  # noqa: F401
    except ImportError:
        return False
    return True


def have_torch() -> bool:
    """Whether torch can be imported here."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class Normaliser:
    """One of nnU-Net's normalisations of a CT channel, with its numbers per case.

    ``"CT"`` is ``CTNormalization`` (what nnU-Net uses for a channel named CT): clip to the
    0.5 and 99.5 percentiles of the dataset's foreground (labelled) voxels, subtract their
    mean, divide by their standard deviation. ``"z-score"`` is ``ZScoreNormalization`` (any
    other channel name): each image's own mean and standard deviation, no clipping.
    """

    scheme: str
    #: per case: (lower, upper, mean, std)
    numbers: dict[str, tuple[float, float, float, float]]

    def __call__(self, case_id: str, image: np.ndarray) -> np.ndarray:
        """The float32 values nnU-Net stores for ``image`` (a whole case or a part of it)."""
        lower, upper, mean, std = self.numbers[case_id]
        out = image.astype(np.float32)
        if self.scheme == "CT":
            np.clip(out, np.float32(lower), np.float32(upper), out=out)
        out -= np.float32(mean)
        out /= np.float32(max(std, 1e-8))
        return out


def normaliser(cases: Sequence[Case], scheme: str = "CT") -> Normaliser:
    """nnU-Net's ``scheme`` (``"CT"`` or ``"z-score"``) for ``cases``.

    For ``"CT"`` the numbers are those of nnU-Net's dataset fingerprint: percentiles, mean and
    standard deviation of the labelled voxels of all cases.
    """
    if scheme == "z-score":
        return Normaliser(
            scheme,
            {
                c.case_id: (-np.inf, np.inf, float(c.image.mean()), float(c.image.std()))
                for c in cases
            },
        )
    if scheme != "CT":
        raise ValueError(f"scheme must be 'CT' or 'z-score', not {scheme!r}")
    values = np.concatenate([c.image[c.label > 0].astype(np.float64) for c in cases])
    if values.size == 0:
        values = np.concatenate([c.image.ravel().astype(np.float64) for c in cases])
    lower, upper = np.percentile(values, [0.5, 99.5])
    numbers = (float(lower), float(upper), float(values.mean()), float(values.std()))
    return Normaliser(scheme, {c.case_id: numbers for c in cases})


def save_nnunet(
    folder: Path, cases: Sequence[Case], patch: tuple[int, int, int], norm: Normaliser
) -> tuple[float, int, str]:
    """Save every case as nnU-Net's preprocessor does; seconds, bytes and the chunk choice."""
    from nnunetv2.training.dataloading.nnunet_dataset import (
        comp_blosc2_params,
        nnUNetDatasetBlosc2,
    )

    folder.mkdir(parents=True, exist_ok=True)
    seconds, nbytes, choice = 0.0, 0, ""
    for case in cases:
        data = norm(case.case_id, case.image)[None]
        seg = case.label.astype(np.int16)[None]
        blocks, chunks = comp_blosc2_params(data.shape, patch, data.itemsize)
        blocks_seg, chunks_seg = comp_blosc2_params(seg.shape, patch, seg.itemsize)
        choice = (
            f"image chunks {chunks[1:]} blocks {blocks[1:]}; "
            f"seg chunks {chunks_seg[1:]} blocks {blocks_seg[1:]}"
        )
        out = str(folder / case.case_id)
        start = time.perf_counter()
        nnUNetDatasetBlosc2.save_case(
            data,
            seg,
            {"shape": case.image.shape},
            out,
            chunks=chunks,
            blocks=blocks,
            chunks_seg=chunks_seg,
            blocks_seg=blocks_seg,
        )
        seconds += time.perf_counter() - start
        nbytes += os.path.getsize(out + ".b2nd") + os.path.getsize(out + "_seg.b2nd")
    return seconds, nbytes, choice


class NnunetCases:
    """Patches and volumes read as nnU-Net's data loader reads them."""

    def __init__(self, folder: Path, case_ids: Sequence[str]) -> None:
        from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2

        self.folder = folder
        self.case_ids = list(case_ids)
        self.dataset = nnUNetDatasetBlosc2(str(folder), identifiers=list(case_ids))

    def patch(self, case_id: str, box: Box) -> tuple[np.ndarray, np.ndarray]:
        """``load_case`` (lazy blosc2 open) and ``crop_and_pad_nd`` of image and seg."""
        from acvl_utils.cropping_and_padding.bounding_boxes import crop_and_pad_nd

        data, seg, _, _ = self.dataset.load_case(case_id)
        bbox = [[lo, hi] for lo, hi in box]
        image = crop_and_pad_nd(data, bbox, 0)
        label = crop_and_pad_nd(seg, bbox, -1, cast_cropped_to=np.int16)
        return image[0], label[0]


# --------------------------------------------------------------------------------------------
# Loaders: torch datasets over the same boxes, and the rate of a 2-worker DataLoader
# --------------------------------------------------------------------------------------------


class LeanPatches:
    """A torch-style dataset of fixed boxes read with the lean prototype (one thread each).

    Items are as :class:`ctspine_zarr.torch.PatchDataset` returns them: ``image`` float32,
    ``segmentation`` int64 tensors. Readers open lazily in each worker process.
    """

    def __init__(self, arrays: dict[str, tuple[Any, Any]], boxes: Sequence[tuple[str, Box]]):
        self.arrays = arrays
        self.boxes = list(boxes)
        self._readers: dict[str, tuple[LeanArray, LeanArray]] | None = None
        self._pid = -1

    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, i: int) -> dict[str, Any]:
        import torch

        if self._readers is None or self._pid != os.getpid():
            self._readers = {
                c: (LeanArray(a, threads=1), LeanArray(b, threads=1))
                for c, (a, b) in self.arrays.items()
            }
            self._pid = os.getpid()
        case_id, box = self.boxes[i]
        image, label = self._readers[case_id]
        got_image, got_label = read_many([(image, box, None), (label, box, None)])
        return {
            "image": torch.from_numpy(got_image.astype(np.float32)),
            "segmentation": torch.from_numpy(got_label.astype(np.int64)),
        }


class NnunetPatches:
    """A torch-style dataset of fixed boxes read as nnU-Net's loader reads one sample."""

    def __init__(self, folder: Path, case_ids: Sequence[str], boxes: Sequence[tuple[str, Box]]):
        self.folder, self.case_ids, self.boxes = folder, list(case_ids), list(boxes)
        self._cases: NnunetCases | None = None

    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, i: int) -> dict[str, Any]:
        import torch

        if self._cases is None:
            self._cases = NnunetCases(self.folder, self.case_ids)
        image, label = self._cases.patch(*self.boxes[i])
        return {
            "image": torch.from_numpy(image).float(),
            "segmentation": torch.from_numpy(label).to(torch.int16),
        }


def loader_rate(dataset: Any, n_patches: int, batch: int, warmup_batches: int = 2) -> float:
    """Patches per second through ``DataLoader(dataset, batch_size=batch, num_workers=2)``.

    Worker start-up and ``warmup_batches`` batches are not timed; the next ``n_patches``
    patches are (``dataset`` must hold at least ``(warmup_batches * batch) + n_patches``).
    """
    from torch.utils.data import DataLoader

    from ctspine_zarr.torch import default_context

    loader = DataLoader(
        dataset,
        batch_size=batch,
        num_workers=2,
        shuffle=False,
        multiprocessing_context=default_context(),
    )
    batches = iter(loader)
    for _ in range(warmup_batches):
        next(batches)
    start = time.perf_counter()
    seen = 0
    while seen < n_patches:
        seen += len(next(batches)["image"])
    seconds = time.perf_counter() - start
    del batches
    return seen / seconds
