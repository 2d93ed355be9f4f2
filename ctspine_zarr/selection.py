"""One way to select the cases of a catalogue: by split, source, vertebra and id.

Everything that takes a selection calls :func:`case_positions` (or :func:`select`,
:func:`selected_ids`): ``ds.ctspine.select`` and ``case_ids``, the loaders
(:mod:`ctspine_zarr.sampling`), the statistics, the export and the ``cases`` and ``info``
commands. So the same rules hold everywhere:

- ``None`` (the default) selects every case;
- each filter takes one value or a sequence of them, and a case matching any of them is
  kept; the filters combine (a case must pass each one given);
- a split is one of :data:`~ctspine_zarr.schema.SPLITS`, a source one of
  :data:`~ctspine_zarr.schema.SOURCES` or a source the store holds, a vertebra a VerSe
  label (``22``) or name (``"L3"``, any case): anything else raises
  :class:`~ctspine_zarr.errors.SelectionError`, whose message names the valid values and
  those the store holds, even when no case would have matched anyway;
- ``vertebra`` keeps the cases holding that vertebra (from the catalogue's
  ``has_vertebra``: no case group is read);
- ``cases`` keeps those ids, in the order given (an unknown id raises
  :class:`~ctspine_zarr.errors.CaseNotFoundError`).

This module reads the catalogue only; it imports no reader, loader or command.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import xarray as xr

from .errors import CaseNotFoundError, SelectionError
from .schema import CASE_DIM, SOURCES, SPLITS, VERTEBRA_DIM
from .vertebrae import VERTEBRA_NAMES, parse_vertebra

__all__ = [
    "Names",
    "Vertebrae",
    "case_positions",
    "describe_selection",
    "names",
    "select",
    "selected_ids",
    "vertebra_labels",
]

#: A split or source filter: one name, a sequence of names, or None (every case).
Names = str | Sequence[str] | None
#: A vertebra filter: a VerSe label or name, a sequence of them, or None (every case).
Vertebrae = int | str | Sequence[int | str] | None


def names(value: Names, kind: str = "split") -> tuple[str, ...] | None:
    """``value`` as a tuple of names (None stays None: no filter).

    Parameters
    ----------
    value
        One name, or several (a list, a tuple, a set, a numpy array, ...).
    kind
        What the names are, for the error message.

    Raises
    ------
    TypeError
        For a value that is neither a str nor a sequence of str.
    """
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    if isinstance(value, bytes) or not isinstance(value, Iterable):
        raise TypeError(f"{kind} must be a str or a sequence of str, not {type(value).__name__}")
    found = tuple(value)
    wrong = [v for v in found if not isinstance(v, str | np.str_)]
    if wrong:
        raise TypeError(f"{kind} must be a str or a sequence of str; got {wrong[0]!r}")
    return tuple(str(v) for v in found)


def vertebra_labels(value: Vertebrae) -> tuple[int, ...] | None:
    """The VerSe labels of a vertebra filter (None stays None: no filter).

    Raises
    ------
    SelectionError
        For a value that is not a VerSe label (1-28) or name.
    """
    if value is None:
        return None
    given: Iterable[Any] = (
        value if isinstance(value, Iterable) and not isinstance(value, str | bytes) else [value]
    )
    labels, unknown = [], []
    for item in given:
        try:
            labels.append(parse_vertebra(item))
        except ValueError:
            unknown.append(item)
    if unknown:
        raise SelectionError(
            "vertebra", unknown, VERTEBRA_NAMES.values(), also="(or their VerSe labels 1-28)"
        )
    return tuple(dict.fromkeys(labels))


def _strings(catalogue: xr.Dataset, name: str, n: int) -> np.ndarray:
    if n == 0 or name not in catalogue.variables:
        return np.zeros(0, dtype=object)
    return np.array([str(v) for v in np.asarray(catalogue[name].values)], dtype=object)


def _check(kind: str, wanted: tuple[str, ...], valid: Sequence[str], held: np.ndarray) -> None:
    """Raise for the names in ``wanted`` that are neither ``valid`` nor ``held`` by a case."""
    others = sorted(set(held.tolist()) - set(valid))
    present = [v for v in valid if v in set(held.tolist())] + others
    known = [*valid, *others]
    unknown = [w for w in dict.fromkeys(wanted) if w not in known]
    if unknown:
        raise SelectionError(kind, unknown, known, present)


def _holding(catalogue: xr.Dataset, labels: tuple[int, ...], n: int) -> np.ndarray:
    """Per case: whether it holds any of ``labels`` (the catalogue's ``has_vertebra``)."""
    if n == 0 or "has_vertebra" not in catalogue.variables:
        return np.zeros(n, dtype=bool)
    axis = [int(v) for v in np.asarray(catalogue[VERTEBRA_DIM].values)]
    columns = [axis.index(label) for label in labels if label in axis]
    has = catalogue["has_vertebra"].transpose(CASE_DIM, VERTEBRA_DIM)
    if not columns:
        return np.zeros(n, dtype=bool)
    return np.asarray(np.asarray(has.isel({VERTEBRA_DIM: columns}).values, dtype=bool).any(axis=1))


def case_positions(
    catalogue: xr.Dataset,
    *,
    split: Names = None,
    source: Names = None,
    vertebra: Vertebrae = None,
    cases: Sequence[str] | None = None,
) -> np.ndarray:
    """Return the positions (along ``case``) of the catalogue's cases that a selection keeps.

    Parameters
    ----------
    catalogue
        A catalogue (``ctspine_zarr.open`` or ``xr.open_zarr``), or a selection of one.
    split
        ``"train"``, ``"validation"``, ``"test"`` or ``"unassigned"``, or several of them.
    source
        A source collection (``"COLONOG"``), or several.
    vertebra
        Keep the cases holding this vertebra (``22`` or ``"L3"``), or any of several.
    cases
        Keep these case ids, in this order (repeats dropped).

    Returns
    -------
    numpy.ndarray
        int64 positions: catalogue order, or the order of ``cases``.

    Raises
    ------
    SelectionError
        For an unknown split, source or vertebra (a ``ValueError``), naming the valid ones.
    CaseNotFoundError
        For an id in ``cases`` that the catalogue does not hold.
    """
    n = int(catalogue.sizes.get(CASE_DIM, 0))
    splits, sources = names(split, "split"), names(source, "source")
    labels = vertebra_labels(vertebra)
    keep = np.ones(n, dtype=bool)
    if splits is not None:
        held = _strings(catalogue, "split", n)
        _check("split", splits, SPLITS, held)
        keep &= np.isin(held, list(splits)) if n else keep
    if sources is not None:
        held = _strings(catalogue, "source", n)
        _check("source", sources, SOURCES, held)
        keep &= np.isin(held, list(sources)) if n else keep
    if labels is not None:
        keep &= _holding(catalogue, labels, n)
    if cases is None:
        return np.flatnonzero(keep).astype(np.int64)
    ids = [str(c) for c in np.asarray(catalogue[CASE_DIM].values)] if n else []
    row = {case_id: i for i, case_id in enumerate(ids)}
    chosen = []
    for case_id in dict.fromkeys(str(c) for c in names(cases, "cases") or ()):
        if case_id not in row:
            raise CaseNotFoundError(case_id, ids)
        if keep[row[case_id]]:
            chosen.append(row[case_id])
    return np.array(chosen, dtype=np.int64)


def select(
    catalogue: xr.Dataset,
    *,
    split: Names = None,
    source: Names = None,
    vertebra: Vertebrae = None,
    cases: Sequence[str] | None = None,
) -> xr.Dataset:
    """Return the catalogue's rows that a selection keeps: the same Dataset, fewer cases.

    Every variable and attribute is kept, and the store it came from, so ``ds.ctspine``
    works on the result. The parameters are those of :func:`case_positions`.
    """
    positions = case_positions(
        catalogue, split=split, source=source, vertebra=vertebra, cases=cases
    )
    if CASE_DIM not in catalogue.dims:
        return catalogue.copy(deep=False)
    return catalogue.isel({CASE_DIM: positions})


def selected_ids(
    catalogue: xr.Dataset,
    *,
    split: Names = None,
    source: Names = None,
    vertebra: Vertebrae = None,
    cases: Sequence[str] | None = None,
) -> list[str]:
    """Return the case ids a selection keeps (parameters of :func:`case_positions`)."""
    positions = case_positions(
        catalogue, split=split, source=source, vertebra=vertebra, cases=cases
    )
    if not len(positions):
        return []
    ids = np.asarray(catalogue[CASE_DIM].values)
    return [str(ids[i]) for i in positions]


def describe_selection(
    split: Names = None, source: Names = None, vertebra: Vertebrae = None
) -> str:
    """A selection in words, for titles and messages: ``"split train, source COLONOG"``.

    Empty when nothing is filtered.
    """
    parts = []
    for kind, values in (("split", names(split)), ("source", names(source, "source"))):
        if values is not None:
            parts.append(f"{kind} {', '.join(values)}")
    labels = vertebra_labels(vertebra)
    if labels is not None:
        parts.append("holding " + " or ".join(VERTEBRA_NAMES[v] for v in labels))
    return "; ".join(parts)
