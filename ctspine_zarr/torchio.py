"""TorchIO subjects from a ctspine store (optional extra: ``pip install "ctspine-zarr[torchio]"``).

::

    import torchio as tio
    from ctspine_zarr.torchio import subject, subjects_dataset

    one = subject("ctspine1k.zarr", "liver_110")        # nothing read yet
    one.image.data                                      # reads the image now (1, X, Y, Z)
    train = subjects_dataset("ctspine1k.zarr", split="train", transform=tio.RandomFlip())
    queue = tio.Queue(train, max_length=64, samples_per_volume=8,
                      sampler=tio.LabelSampler(patch_size=64, label_name="label"))

A subject holds ``image`` (a ``tio.ScalarImage``, HU) and ``label`` (a ``tio.LabelMap``,
VerSe labels) and the strings ``case``, ``split`` and ``source``. Each image is TorchIO's
lazy kind: it is given a path (the case reference ``STORE::CASE`` of
:mod:`ctspine_zarr.io.caseref`) and a ``reader``, and read when its data, affine or shape
is first used. TorchIO reads a custom reader's image whole, so a subject costs a volume
read, not more; the reader carries only the storage options and opens the store in its
own process, so ``tio.Queue`` and DataLoader workers work with fork and spawn.

The arrays are in closest-canonical RAS+ orientation, ``(1, X, Y, Z)``, in the stored
types (int16 HU, uint8 labels) unless ``dtype`` says otherwise: data and affine equal
``tio.ScalarImage(path)`` / ``tio.LabelMap(path)`` of the source file after
``tio.ToCanonical()`` (the tests check it).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

try:
    import torch
    import torchio as tio
except ImportError as err:  # pragma: no cover - exercised with TorchIO hidden
    raise ImportError(
        'ctspine_zarr.torchio needs TorchIO: pip install "ctspine-zarr[torchio]" '
        "(CPU torch: pip install torch==2.13.0)"
    ) from err

import numpy as np
import numpy.typing as npt

from .io.caseref import format_reference, parse_reference, read_canonical
from .io.store import case_group, open_catalogue
from .schema import LABEL

__all__ = ["StoreLabelMap", "StoreReader", "StoreScalarImage", "subject", "subjects_dataset"]


class StoreReader:
    """TorchIO's ``reader``: a case reference (as TorchIO's path) to ``(tensor, affine)``.

    Parameters
    ----------
    storage_options
        fsspec options for a URL store.
    dtype
        The tensor's type (None: the stored type: int16 HU, uint8 labels).
    """

    def __init__(
        self,
        storage_options: dict[str, Any] | None = None,
        dtype: npt.DTypeLike | None = None,
    ) -> None:
        self.storage_options = dict(storage_options or {})
        self.dtype = None if dtype is None else np.dtype(dtype)

    def __call__(self, path: str | os.PathLike[str]) -> tuple[torch.Tensor, np.ndarray]:
        """Read the referenced array: a ``(1, X, Y, Z)`` tensor and its 4x4 affine."""
        # contiguous: TorchIO copies what a reader returns (torch.cat), fast only when it is
        block = read_canonical(
            parse_reference(path),
            storage_options=self.storage_options or None,
            dtype=self.dtype,
            contiguous=True,
        )
        return torch.from_numpy(block.data[np.newaxis]), block.affine

    def __repr__(self) -> str:
        return f"StoreReader(dtype={self.dtype})"


class StoreScalarImage(tio.ScalarImage):
    """A ``tio.ScalarImage`` whose path is a case reference, so not a file to check for.

    TorchIO makes new images of an image's class with its path (crops, copies) and checks
    that the path is a file unless told not to: these images are never checked.
    """

    def __init__(self, *args: Any, verify_path: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, verify_path=verify_path, **kwargs)


class StoreLabelMap(tio.LabelMap):
    """A ``tio.LabelMap`` whose path is a case reference (see :class:`StoreScalarImage`)."""

    def __init__(self, *args: Any, verify_path: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, verify_path=verify_path, **kwargs)


def subject(
    store: str | os.PathLike[str],
    case: str,
    *,
    storage_options: dict[str, Any] | None = None,
    dtype: npt.DTypeLike | None = None,
    **fields: Any,
) -> tio.Subject:
    """Return a case as a ``tio.Subject`` whose ``image`` and ``label`` are read when used.

    Parameters
    ----------
    store
        Local path or fsspec URL of the store.
    case
        The case id (the case's metadata is read now: an unknown id raises here).
    storage_options
        fsspec options for a URL store.
    dtype
        The images' type (None: int16 HU and uint8 labels as stored; float32 for both is
        what ``tio.ScalarImage`` gives for most files).
    **fields
        More items of the subject.

    Raises
    ------
    CaseNotFoundError
        When the store holds no such case.
    """
    location = os.fspath(store)
    attrs = case_group(location, case, storage_options=storage_options).attrs
    reader = StoreReader(storage_options, dtype)
    return _subject(location, case, str(attrs["split"]), str(attrs["source"]), reader, fields)


def _subject(
    location: str, case: str, split: str, source: str, reader: StoreReader, fields: dict[str, Any]
) -> tio.Subject:
    image = StoreScalarImage(format_reference(location, case), reader=reader)
    label = StoreLabelMap(format_reference(location, case, LABEL), reader=reader)
    return tio.Subject(image=image, label=label, case=case, split=split, source=source, **fields)


def subjects_dataset(
    store: str | os.PathLike[str],
    split: str | Sequence[str] | None = None,
    *,
    source: str | Sequence[str] | None = None,
    transform: Callable[[tio.Subject], tio.Subject] | None = None,
    storage_options: dict[str, Any] | None = None,
    dtype: npt.DTypeLike | None = None,
) -> tio.SubjectsDataset:
    """Return the cases of a split as a ``tio.SubjectsDataset`` (nothing read yet).

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
    transform
        TorchIO transform applied to each subject.
    storage_options
        fsspec options for a URL store.
    dtype
        The images' type (see :func:`subject`).
    """
    location = os.fspath(store)
    catalogue = open_catalogue(location, storage_options=storage_options)
    cases = catalogue.ctspine.case_ids(split=split, source=source)
    rows = catalogue[["split", "source"]].sel(case=cases)  # no read per case
    reader = StoreReader(storage_options, dtype)
    subjects = [
        _subject(location, case, str(case_split), str(case_source), reader, {})
        for case, case_split, case_source in zip(
            cases, rows["split"].values, rows["source"].values, strict=True
        )
    ]
    return tio.SubjectsDataset(subjects, transform=transform)
