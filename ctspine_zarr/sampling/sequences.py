"""The sequences and their shared base: one item per slice (:class:`SliceSequence`) or per case.

:class:`_StoreSequence` holds what every sequence shares: the store location, the cases
selected through the catalogue (:mod:`ctspine_zarr.sampling.cases`), the per-process readers,
and the item dict's common fields. :class:`ctspine_zarr.sampling.patches.PatchSequence`
builds on it too.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import zarr
from zarr.abc.store import Store

from ..io.slicereader import CaseReaders, Request, case_readers, read_blocks
from ..io.store import case_group, open_catalogue
from ..schema import SLICE_VERTEBRAE
from ..selection import Names, Vertebrae, vertebra_labels
from .cases import VERTEBRA_COLUMN, select_cases

__all__ = ["Item", "SliceSequence", "VolumeSequence"]

#: One item: field name to numpy array, str or int.
Item = dict[str, Any]
#: Where a store is: local path, fsspec URL or zarr store.
Location = str | os.PathLike[str] | Store
#: Callable applied to each item dict, its result returned.
Transform = Callable[[Item], Any]


@dataclass(eq=False, repr=False, kw_only=True)
class _StoreSequence(Sequence[Item]):
    """Cases of a store selected through the catalogue; arrays opened lazily per process.

    The parameters every sequence takes are its dataclass fields, stated once here (see
    :class:`SliceSequence` for their meaning); ``__post_init__`` checks and normalises them.
    """

    store: Location = field(kw_only=False)
    split: Names = field(default=None, kw_only=False)
    source: Names = None
    vertebra: Vertebrae = None
    exclude_flagged: bool | str | Sequence[str] = False
    transform: Transform | None = None
    image_dtype: npt.DTypeLike | None = np.float32
    segmentation_dtype: npt.DTypeLike | None = np.int64
    storage_options: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        store = self.store
        self.location: Location = store if isinstance(store, Store) else os.fspath(store)
        self.storage_options = dict(self.storage_options or {})
        #: The vertebra filter as VerSe labels (None: none); ``vertebra`` is normalised to
        #: the label when one was given, else to this tuple.
        self.labels: tuple[int, ...] | None = vertebra_labels(self.vertebra)
        #: The vertebra filter's label when it names one vertebra, else None.
        self.label: int | None = self.labels[0] if self.labels and len(self.labels) == 1 else None
        self.vertebra = self.label if self.label is not None else self.labels
        self.dtypes: tuple[np.dtype[Any] | None, np.dtype[Any] | None] = (
            None if self.image_dtype is None else np.dtype(self.image_dtype),
            None if self.segmentation_dtype is None else np.dtype(self.segmentation_dtype),
        )
        self.image_dtype, self.segmentation_dtype = self.dtypes
        catalogue = open_catalogue(self.location, storage_options=self.storage_options)
        cases = select_cases(
            catalogue,
            split=self.split,
            source=self.source,
            vertebra=self.labels,
            exclude_flagged=self.exclude_flagged,
        )
        #: Case ids of the dataset; ``index`` of an item is a position in this tuple.
        self.case_ids: tuple[str, ...] = cases.ids
        self.case_sources: tuple[str, ...] = cases.sources
        self.case_splits: tuple[str, ...] = cases.splits
        self.shapes = cases.shapes
        self.spacings = cases.spacings
        self.has_vertebra = cases.has_vertebra
        self.bbox_start = cases.bbox_start
        self.bbox_stop = cases.bbox_stop

    def _columns(self) -> list[int]:
        """The columns of the vertebra filter's labels (in ``has_vertebra``, the indexes)."""
        return [VERTEBRA_COLUMN[label] for label in self.labels or ()]

    # -- per-process state -------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__.copy()

    def _group(self, case_id: str) -> zarr.Group:
        return case_group(self.location, case_id, storage_options=self.storage_options)

    def _arrays(self, case: int) -> CaseReaders:
        """The readers and affine of case number ``case``, opened once per process."""
        return case_readers(self.location, self.case_ids[case], self.storage_options)

    def _slice_vertebrae(self, cases: Sequence[int]) -> list[np.ndarray]:
        """Read the ``(z, vertebra)`` bool index of several cases (small arrays), concurrently."""

        def read(case: int) -> np.ndarray:
            array = self._group(self.case_ids[case])[SLICE_VERTEBRAE]
            assert isinstance(array, zarr.Array)
            return np.asarray(array[...], dtype=bool)

        if len(cases) <= 1:
            return [read(c) for c in cases]
        with ThreadPoolExecutor(max_workers=min(8, len(cases))) as pool:
            return list(pool.map(read, cases))

    def _read_slabs(
        self, cases: Sequence[int], z_range: Callable[[int, int], tuple[int, int]]
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Read image and label slices ``[z0, z1)`` of each case, all in one batch.

        ``z_range(n, n_z)`` gives the range of ``cases[n]``, a case of ``n_z`` slices. The
        requests of all cases are gathered (one round trip remotely).
        """
        requests: list[Request] = []
        image_dtype, label_dtype = self.dtypes
        for n, case in enumerate(cases):
            image_reader, label_reader, _ = self._arrays(case)
            z0, z1 = z_range(n, image_reader.shape[0])
            requests += [(image_reader, z0, z1, image_dtype), (label_reader, z0, z1, label_dtype)]
        blocks = read_blocks(requests)
        return [(blocks[2 * n], blocks[2 * n + 1]) for n in range(len(cases))]

    # -- items -------------------------------------------------------------------------------

    def _index(self, i: Any) -> int:
        i = operator.index(i)
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {type(self).__name__} of length {n}")
        return i % n if n else i

    def _base(self, case: int) -> Item:
        return {
            "patient_id": self.case_ids[case],
            "index": case,
            "spacing": self.spacings[case].copy(),
            "affine": self._arrays(case).affine.copy(),
        }

    def _finish(self, item: Item, image: np.ndarray, label: np.ndarray) -> Any:
        item["image"] = image
        item["segmentation"] = label
        converted = self._convert(item)
        return converted if self.transform is None else self.transform(converted)

    @staticmethod
    def _convert(item: Item) -> Any:
        """The item as returned: numpy arrays here, tensors in :mod:`ctspine_zarr.torch`."""
        return item

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return self.getitems(range(len(self))[i])
        return self.getitems([i])[0]

    def getitems(self, indices: Iterable[Any]) -> list[Any]:
        """Return the items at ``indices``; their reads are batched (one round trip remotely)."""
        raise NotImplementedError

    def _selection(self) -> str:
        given = {"split": self.split, "source": self.source, "vertebra": self.vertebra}
        return "".join(f"{k}={v!r}, " for k, v in given.items() if v is not None)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.location!r}, {self._selection()}"
            f"{len(self.case_ids)} cases, {len(self)} items)"
        )


@dataclass(eq=False, repr=False, kw_only=True)
class SliceSequence(_StoreSequence):
    """One item per axial slice of the selected cases.

    Parameters
    ----------
    store
        Local path, fsspec URL or zarr store of a ctspine store.
    split
        ``"train"``, ``"validation"``, ``"test"``, ``"unassigned"``, or several of them;
        None (the default) selects every case. (Before, the default was ``"train"``: pass
        ``split="train"`` to train on the training split.)
    source
        Keep the cases of this source (or these sources).
    vertebra
        Keep the cases holding this vertebra (label ``22`` or name ``"L3"``), or any of
        several; with ``foreground_only``, keep the slices holding it (any of them).

    An unknown split, source or vertebra raises
    :class:`~ctspine_zarr.errors.SelectionError` naming the valid ones; the selection is
    :func:`ctspine_zarr.selection.case_positions`'s, the same as ``ds.ctspine.select``.
    exclude_flagged
        Leave out the cases the store's recorded audit flagged (``ctspine-zarr audit``):
        ``True`` for a finding of any check, or a check or list of checks (``"gap"``).
    foreground_only
        Keep only the slices holding a vertebra (from the stored ``slice_vertebrae`` index,
        read once per case at construction; masks are never read for it).
    transform
        Callable applied to each item dict, its result returned.
    image_dtype, segmentation_dtype
        Output dtypes (default float32 HU and int64); None keeps the stored dtype.
    storage_options
        fsspec options for a URL.

    Items are dicts: ``image`` [Y, X], ``segmentation`` [Y, X], ``patient_id``, ``index``,
    ``slice_index``, ``spacing`` (z, y, x) and ``affine`` (see :mod:`ctspine_zarr.sampling`).
    """

    foreground_only: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        n = len(self.case_ids)
        if self.foreground_only:
            zs = []
            for index in self._slice_vertebrae(range(n)):
                rows = index[:, self._columns()].any(axis=1) if self.labels else index.any(axis=1)
                zs.append(np.flatnonzero(rows).astype(np.int32))
        else:
            zs = [np.arange(z, dtype=np.int32) for z in self.shapes[:, 0]]
        counts = np.array([len(z) for z in zs], dtype=np.int64)
        #: Case number (position in ``case_ids``) of each item.
        self.item_case = np.repeat(np.arange(n, dtype=np.int32), counts)
        #: Slice (z index) of each item.
        self.item_z = np.concatenate(zs) if zs else np.zeros(0, dtype=np.int32)

    def __len__(self) -> int:
        return len(self.item_z)

    def getitems(self, indices: Iterable[Any]) -> list[Any]:
        """Return the items at ``indices``; their reads are batched (one round trip remotely)."""
        picks = [self._index(i) for i in indices]
        cases = [int(self.item_case[i]) for i in picks]
        zs = [int(self.item_z[i]) for i in picks]
        slabs = self._read_slabs(cases, lambda n, _: (zs[n], zs[n] + 1))
        items = []
        for case, z, (image, label) in zip(cases, zs, slabs, strict=True):
            item = self._base(case)
            item["slice_index"] = z
            items.append(self._finish(item, image[0], label[0]))
        return items


@dataclass(eq=False, repr=False, kw_only=True)
class VolumeSequence(_StoreSequence):
    """One item per case: the whole volume.

    Parameters are those of :class:`SliceSequence` without ``foreground_only``. Items hold
    ``image`` and ``segmentation`` as [Z, Y, X] (int64 labels take 8 bytes a voxel: pass
    ``segmentation_dtype=None`` to keep uint8).
    """

    def __len__(self) -> int:
        return len(self.case_ids)

    def getitems(self, indices: Iterable[Any]) -> list[Any]:
        """Return the volumes at ``indices``."""
        picks = [self._index(i) for i in indices]
        slabs = self._read_slabs(picks, lambda _, n_z: (0, n_z))
        return [
            self._finish(self._base(case), image, label)
            for case, (image, label) in zip(picks, slabs, strict=True)
        ]
