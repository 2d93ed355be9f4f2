"""Which cases of a store a training sequence serves, as small numpy index arrays.

:func:`select_cases` selects the store's cases by split, source and vertebra (through
:mod:`ctspine_zarr.selection`, as every reader does) and keeps,
per selected case, what the sequences need to plan their items without reading an array:
its id, source and split, shape, voxel spacing, and which vertebrae it holds with their
boxes. :data:`VERTEBRA_COLUMN` maps a vertebra label to its column in those arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import xarray as xr

from ..schema import CASE_DIM, VERTEBRA_DIM
from ..selection import Names, Vertebrae, case_positions
from ..vertebrae import VERTEBRA_LABELS

__all__ = ["VERTEBRA_COLUMN", "CaseTable", "select_cases"]

#: Column of each vertebra label in :attr:`CaseTable.has_vertebra` and the box arrays.
VERTEBRA_COLUMN: Final = {label: i for i, label in enumerate(VERTEBRA_LABELS)}


@dataclass(frozen=True)
class CaseTable:
    """The selected cases, one row each, in catalogue order.

    Attributes
    ----------
    ids, sources, splits
        Case id, source and split of each case.
    shapes
        int64 ``[n, 3]``: ``(z, y, x)`` voxels.
    spacings
        float64 ``[n, 3]``: ``(z, y, x)`` voxel size in mm.
    has_vertebra
        bool ``[n, vertebra]``: which vertebrae each case holds (columns: :data:`VERTEBRA_COLUMN`).
    bbox_start, bbox_stop
        int64 ``[n, vertebra, 3]``: each vertebra's half-open ``(z, y, x)`` box (-1 if absent).
    """

    ids: tuple[str, ...]
    sources: tuple[str, ...]
    splits: tuple[str, ...]
    shapes: np.ndarray
    spacings: np.ndarray
    has_vertebra: np.ndarray
    bbox_start: np.ndarray
    bbox_stop: np.ndarray


def select_cases(
    catalogue: xr.Dataset,
    *,
    split: Names = None,
    source: Names = None,
    vertebra: Vertebrae = None,
    exclude_flagged: bool | str | Sequence[str] = False,
) -> CaseTable:
    """Return the cases of ``catalogue`` in ``split``, of ``source``, holding ``vertebra``.

    The selection is :func:`ctspine_zarr.selection.case_positions`'s: None selects every
    case, each filter takes one value or several. A catalogue whose vertebra axis differs
    from :data:`ctspine_zarr.vertebrae.VERTEBRA_LABELS` is aligned to it first.
    ``exclude_flagged`` leaves out the cases the store's recorded audit flagged
    (:func:`ctspine_zarr.audit.flagged_cases`: ``True`` for any check, or some checks).

    Raises
    ------
    SelectionError
        For an unknown split, source or vertebra (a ``ValueError``), naming the valid ones.
    StoreError
        With ``exclude_flagged`` when the store holds no audit record.
    """
    rows = case_positions(catalogue, split=split, source=source, vertebra=vertebra)
    if exclude_flagged is not False and len(rows):
        from ..audit import flagged_cases  # the audit record is read only when asked for

        checks = None if exclude_flagged is True else exclude_flagged
        flagged = flagged_cases(catalogue, checks)
        ids = np.asarray(catalogue[CASE_DIM].values)
        rows = np.array([r for r in rows if str(ids[r]) not in flagged], dtype=np.int64)
    if not len(rows):
        return _no_cases()
    if list(catalogue[VERTEBRA_DIM].values) != list(VERTEBRA_LABELS):
        labels = np.asarray(VERTEBRA_LABELS, dtype=catalogue[VERTEBRA_DIM].dtype)
        absent = {"has_vertebra": False, "bbox_start": -1, "bbox_stop": -1}
        catalogue = catalogue.reindex({VERTEBRA_DIM: labels}, fill_value=absent)

    def column(name: str, dtype: Any) -> np.ndarray:
        return np.asarray(catalogue[name].values, dtype=dtype)[rows]

    def strings(name: str) -> tuple[str, ...]:
        return tuple(str(v) for v in np.asarray(catalogue[name].values)[rows])

    return CaseTable(
        ids=strings(CASE_DIM),
        sources=strings("source"),
        splits=strings("split"),
        shapes=np.stack([column(n, np.int64) for n in ("n_slices", "n_y", "n_x")], 1),
        spacings=np.stack([column(f"spacing_{a}", np.float64) for a in ("z", "y", "x")], 1),
        has_vertebra=column("has_vertebra", bool),
        bbox_start=column("bbox_start", np.int64),
        bbox_stop=column("bbox_stop", np.int64),
    )


def _no_cases() -> CaseTable:
    n_labels = len(VERTEBRA_LABELS)
    return CaseTable(
        ids=(),
        sources=(),
        splits=(),
        shapes=np.zeros((0, 3), dtype=np.int64),
        spacings=np.zeros((0, 3), dtype=np.float64),
        has_vertebra=np.zeros((0, n_labels), dtype=bool),
        bbox_start=np.zeros((0, n_labels, 3), dtype=np.int64),
        bbox_stop=np.zeros((0, n_labels, 3), dtype=np.int64),
    )
