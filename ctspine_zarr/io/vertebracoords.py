"""The ``vertebra`` and ``vertebra_name`` coordinates of the catalogue and the volumes.

``vertebra`` holds the VerSe label values (1-28, the dimension coordinate) and
``vertebra_name`` their names from :data:`ctspine_zarr.vertebrae.VERTEBRA_NAMES` (``C1`` …
``L6``, ``sacrum``, ``coccyx``, ``T13``). Both are indexed, so ``ds.sel(vertebra=22)`` and
``ds.sel(vertebra_name="L3")`` select the same row. A name given to ``vertebra``, or a
value that is not there, raises :class:`VertebraNotFoundError` (a ``KeyError``) saying
which coordinate to use, instead of xarray's ``not all values found in index``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Any, Final, cast

import numpy as np
import xarray as xr
from xarray.indexes import PandasIndex

from ..errors import VertebraNotFoundError
from ..schema import VERTEBRA_DIM, VERTEBRA_NAME
from ..vertebrae import VERTEBRA_LABELS, VERTEBRA_NAMES, parse_vertebra

__all__ = [
    "LABEL_ATTRS",
    "NAME_ATTRS",
    "VertebraIndex",
    "vertebra_coordinates",
]

#: Attributes of the ``vertebra`` coordinate (as the catalogue stores them).
LABEL_ATTRS: Final = {"long_name": "VerSe label value"}
#: Attributes of the ``vertebra_name`` coordinate (as the catalogue stores them).
NAME_ATTRS: Final = {"long_name": "vertebra name (VerSe)"}


class VertebraIndex(PandasIndex):
    """The pandas index of ``vertebra`` or ``vertebra_name``, with errors that name the fix.

    Selection is :class:`xarray.indexes.PandasIndex`'s; only a failed one differs: a name
    given to ``vertebra`` says to select it by ``vertebra_name`` (with its label value),
    and a value not found names the values there are.
    """

    def sel(self, labels: dict[Any, Any], method: Any = None, tolerance: Any = None) -> Any:
        """Select as :meth:`xarray.indexes.PandasIndex.sel`; raise a clear KeyError otherwise."""
        ((coord, value),) = labels.items()
        wanted = _values(value)
        if coord == VERTEBRA_DIM and any(isinstance(v, str) for v in wanted):
            raise VertebraNotFoundError(_name_given_to_labels(value, wanted))
        try:
            return super().sel(labels, method=method, tolerance=tolerance)
        except KeyError:
            raise VertebraNotFoundError(_not_found(str(coord), wanted, self.index)) from None


def vertebra_coordinates(
    label_attrs: Mapping[str, Any] | None = None,
    name_attrs: Mapping[str, Any] | None = None,
    *,
    others: Mapping[str, Any] | None = None,
) -> xr.Coordinates:
    """Return the indexed ``vertebra`` and ``vertebra_name`` coordinates of every label.

    Built from the vocabulary, so nothing is read; the indexes are built once per process
    (xarray never changes an index), the variables and their attrs anew every call.

    Parameters
    ----------
    label_attrs, name_attrs
        Attributes of the two coordinates (default :data:`LABEL_ATTRS`, :data:`NAME_ATTRS`).
    others
        More coordinates for the same object (xarray's default indexes), so that a Dataset
        gets all of them in one ``assign_coords`` or constructor call (each is ~0.3 ms).

    Returns
    -------
    xarray.Coordinates
        ``vertebra`` (uint8 VerSe values) and ``vertebra_name`` (strings) on dim ``vertebra``,
        each with a :class:`VertebraIndex`; pass it to ``Dataset.assign_coords``.
    """
    indexes: dict[str, Any] = {}
    variables: dict[Any, xr.Variable] = {}
    if others:
        plain = xr.Coordinates(others)
        indexes.update(plain.xindexes)
        variables.update(plain.variables)
    attrs = {
        VERTEBRA_DIM: LABEL_ATTRS if label_attrs is None else label_attrs,
        VERTEBRA_NAME: NAME_ATTRS if name_attrs is None else name_attrs,
    }
    for name, index in _indexes().items():
        template = xr.Variable(VERTEBRA_DIM, [], dict(attrs[name]))
        variables.update(index.create_variables({name: template}))
        indexes[name] = index
    return xr.Coordinates(variables, indexes=indexes)


@functools.cache
def _indexes() -> dict[str, VertebraIndex]:
    """The :class:`VertebraIndex` of ``vertebra`` and of ``vertebra_name`` (shared: immutable)."""
    labels = np.asarray(VERTEBRA_LABELS, dtype=np.uint8)
    names = np.array([VERTEBRA_NAMES[v] for v in VERTEBRA_LABELS], dtype=np.dtypes.StringDType())
    return {
        name: cast(
            VertebraIndex,
            VertebraIndex.from_variables({name: xr.Variable(VERTEBRA_DIM, values)}, options={}),
        )
        for name, values in ((VERTEBRA_DIM, labels), (VERTEBRA_NAME, names))
    }


def _values(value: Any) -> list[Any]:
    """The labels of a ``sel`` value (a scalar, a list or array, a slice's bounds)."""
    if isinstance(value, slice):
        return [v for v in (value.start, value.stop) if v is not None]
    array = np.asarray(getattr(value, "values", value), dtype=object)
    return [v.item() if isinstance(v, np.generic) else v for v in array.ravel().tolist()]


def _name_given_to_labels(value: Any, wanted: list[Any]) -> str:
    """The message for names selected on ``vertebra``, which holds label values."""
    texts = [v for v in wanted if isinstance(v, str)]
    unknown = [v for v in texts if not _parses(v)]
    if unknown:
        return (
            f"{unknown[0]!r} is no vertebra: 'vertebra' holds the VerSe label values 1-28, "
            f"'vertebra_name' the names {_listing(VERTEBRA_NAMES.values())}"
        )
    labels = [parse_vertebra(v) for v in wanted]
    names = [VERTEBRA_NAMES[v] for v in labels]
    if isinstance(value, slice):
        name_arg, label_arg = f"slice{tuple(names)!r}", f"slice{tuple(labels)!r}"
    elif len(labels) == 1 and np.ndim(getattr(value, "values", value)) == 0:
        name_arg, label_arg = repr(names[0]), str(labels[0])
    else:
        name_arg, label_arg = repr(names), repr(labels)
    return (
        f"'vertebra' holds VerSe label values, not names: select by name with "
        f".sel(vertebra_name={name_arg}), or by value with .sel(vertebra={label_arg})"
    )


def _not_found(coord: str, wanted: Iterable[Any], index: Any) -> str:
    """The message for values a ``vertebra`` or ``vertebra_name`` index does not hold."""
    present = set(index.tolist())
    missing = [v for v in wanted if v not in present]
    bad: Any = missing[0] if missing else next(iter(wanted), None)
    if coord == VERTEBRA_NAME:
        hint = ""
        if _parses(bad):
            label = parse_vertebra(bad)
            if isinstance(bad, str) and not bad.strip().isdigit():
                if VERTEBRA_NAMES[label] in present:
                    hint = f"; did you mean {VERTEBRA_NAMES[label]!r}?"
            else:
                hint = f"; for a label value select .sel(vertebra={label})"
        return f"no vertebra named {bad!r} here{hint} (names here: {_listing(index)})"
    return f"no vertebra {bad!r} here (VerSe label values here: {_listing(index)})"


def _parses(value: Any) -> bool:
    try:
        parse_vertebra(value)
    except ValueError:
        return False
    return True


def _listing(values: Iterable[Any]) -> str:
    return ", ".join(str(v) for v in values)
