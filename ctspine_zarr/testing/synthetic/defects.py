"""Label defects injected into synthetic cases: one of each kind the audit looks for.

:func:`inject_defect` edits a rendered label map (``[z, y, x]``, RAS voxel order, the
vertebrae of ``window`` from the top down) so that exactly one finding of its kind is due,
with the labels it names, and nothing else changes for the audit:

``order``
    Two neighbouring inner vertebrae swap labels (L2 where L3 is, L3 where L2 is).
``gap``
    An inner vertebra (not T13 or L6, which may be absent) is erased.
``fragments``
    A block of about 150 voxels of the largest inner vertebra's label is painted in the
    background beside it, within its slices (a stray island of more than 100 voxels).
``size``
    An inner vertebra shrinks to about a tenth of its voxels (a connected core around its
    most covered column); the level chosen is the one the tree holds whole most often.
``overlap``
    A few voxels of a vertebra are painted one slice below its lower neighbour, in the
    background inside its box: the neighbour's slices then lie within its own. Too few
    voxels to be a fragment, too few to move its centre or change its size.

"Inner" vertebrae are those of the window but its first and last, which the volume cuts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from ctspine_zarr.vertebrae import L6_LABEL, T13_LABEL, vertebra_name

__all__ = ["DEFECT_KINDS", "Defect", "can_take", "inject_defect", "parse_defects"]

#: The kinds of defect, named as the audit's checks.
DEFECT_KINDS: Final = ("order", "gap", "fragments", "size", "overlap")
#: Voxels of the island a ``fragments`` defect paints (the audit reports more than 100).
ISLAND_VOXELS: Final = 150
#: Most of a vertebra's voxels a ``size`` defect keeps.
SIZE_KEEP: Final = 0.1
#: Labels of each kind's window must hold at least.
_MIN_LABELS: Final = {"order": 4, "gap": 3, "fragments": 3, "size": 3, "overlap": 3}


@dataclass(frozen=True)
class Defect:
    """A defect injected into a case: what the audit must find.

    Attributes
    ----------
    kind
        The check that finds it (one of :data:`DEFECT_KINDS`).
    labels
        The label values its finding names, cranio-caudally.
    description
        What was done.
    """

    kind: str
    labels: tuple[int, ...]
    description: str


def parse_defects(specs: Sequence[str]) -> list[tuple[str, int | None]]:
    """Parse ``KIND[:CASE]`` specifications (``all``: every kind) into ``(kind, case)``.

    ``CASE`` is the index of the case in writing order (0 first); without it the first case
    that can take the defect gets it.

    Raises
    ------
    ValueError
        For an unknown kind or an index that is not a whole number.
    """
    out: list[tuple[str, int | None]] = []
    for spec in specs:
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                continue
            if part == "all":
                out += [(kind, None) for kind in DEFECT_KINDS]
                continue
            kind, _, index = part.partition(":")
            if kind not in DEFECT_KINDS:
                raise ValueError(
                    f"defect must be one of {', '.join(DEFECT_KINDS)} or all, optionally "
                    f"with :CASE (a case index), but is {part!r}"
                )
            if index and not index.isdigit():
                raise ValueError(f"defect {part!r}: the case index must be a whole number")
            out.append((kind, int(index) if index else None))
    return out


def can_take(kind: str, window: Sequence[int]) -> bool:
    """Whether a case whose vertebrae are ``window`` can take a defect of ``kind``."""
    if len(window) < _MIN_LABELS[kind]:
        return False
    if kind == "gap":
        return any(v not in (T13_LABEL, L6_LABEL) for v in window[1:-1])
    if kind == "overlap":
        return any((window[k - 1], window[k]) != (1, 2) for k in range(1, len(window) - 1))
    return True


def inject_defect(
    label: np.ndarray, kind: str, window: Sequence[int], common: Mapping[int, int] | None = None
) -> Defect:
    """Inject a defect of ``kind`` into ``label`` (changed in place) and say what it is.

    Parameters
    ----------
    label
        ``uint8 [z, y, x]`` in RAS voxel order (z up is superior).
    kind
        One of :data:`DEFECT_KINDS`.
    window
        The vertebrae the map holds, cranio-caudally (the first at the top).
    common
        ``size``: how many cases of the tree hold each label whole; the most common inner
        level is shrunk, so that the store has its distribution.

    Raises
    ------
    ValueError
        When the case cannot take the defect (too few vertebrae, no room).
    """
    if kind not in DEFECT_KINDS:
        raise ValueError(f"defect must be one of {DEFECT_KINDS}, but is {kind!r}")
    if not can_take(kind, window):
        raise ValueError(f"a case with vertebrae {list(window)} cannot take the {kind} defect")
    inner = list(window[1:-1])
    if kind == "order":
        k = (len(window) - 2) // 2
        upper, lower = window[k], window[k + 1]
        first, second = label == upper, label == lower
        label[first], label[second] = lower, upper
        return Defect(kind, (upper, lower), f"{_n(upper)} and {_n(lower)} swapped")
    if kind == "gap":
        required = [v for v in inner if v not in (T13_LABEL, L6_LABEL)]
        gone = required[len(required) // 2]
        label[label == gone] = 0
        return Defect(kind, (gone,), f"{_n(gone)} erased")
    if kind == "fragments":
        return _island(label, max(inner, key=lambda v: int((label == v).sum())))
    if kind == "size":
        counts = common or {}
        chosen = max(inner, key=lambda v: (counts.get(v, 0), int((label == v).sum())))
        return _shrink(label, chosen)
    return _overlap(label, window)


def _n(label: int) -> str:
    return vertebra_name(label)


def _slices(label: np.ndarray, value: int) -> np.ndarray:
    return np.flatnonzero((label == value).any(axis=(1, 2)))


def _island(label: np.ndarray, value: int) -> Defect:
    """A block of ``value`` in the background beside it, within its slices."""
    zs = _slices(label, value)
    z0, z1 = int(zs[0]), int(zs[-1]) + 1
    side = max(2, int(np.ceil(np.sqrt(ISLAND_VOXELS / (z1 - z0)))))
    mask = (label[z0:z1] == value).any(axis=0)
    ys, xs = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    y0, y1, x0, x1 = int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1
    gap = max(3, side)
    cy, cx = (y0 + y1 - side) // 2, (x0 + x1 - side) // 2
    _, ny, nx = label.shape
    for top, left in ((y1 + gap, cx), (y0 - gap - side, cx), (cy, x1 + gap), (cy, x0 - gap - side)):
        if top < 2 or left < 2 or top + side > ny - 2 or left + side > nx - 2:
            continue
        around = label[z0:z1, top - 1 : top + side + 1, left - 1 : left + side + 1]
        if around.any():
            continue
        label[z0:z1, top : top + side, left : left + side] = value
        voxels = side * side * (z1 - z0)
        return Defect(
            "fragments", (value,), f"an island of {voxels} voxels of {_n(value)} beside it"
        )
    raise ValueError(f"no room beside {_n(value)} for an island")


def _shrink(label: np.ndarray, value: int) -> Defect:
    """Keep a connected core of ``value`` of about :data:`SIZE_KEEP` of its voxels."""
    from scipy import ndimage

    mask = label == value
    total = int(mask.sum())
    cover = mask.sum(axis=0)
    cy, cx = np.unravel_index(int(np.argmax(cover)), cover.shape)
    yy, xx = np.ogrid[: mask.shape[1], : mask.shape[2]]
    distance = (yy - cy) ** 2 + (xx - cx) ** 2
    core = mask & (distance == 0)[None]
    for radius in range(1, max(mask.shape[1:])):
        wider = mask & (distance <= radius * radius)[None]
        if wider.sum() > SIZE_KEEP * total:
            break
        core = wider
    numbered, _ = ndimage.label(core, structure=np.ones((3, 3, 3), dtype=bool))
    largest = np.argmax(np.bincount(numbered.ravel())[1:]) + 1
    label[mask & (numbered != largest)] = 0
    kept = int((label == value).sum())
    return Defect("size", (value,), f"{_n(value)} shrunk to {kept} of its {total} voxels")


def _overlap(label: np.ndarray, window: Sequence[int]) -> Defect:
    """A few voxels of a vertebra one slice below its lower neighbour, inside its own box."""
    middle = len(window) // 2
    for k in [*range(middle, len(window) - 1), *range(1, middle)]:
        outer, inner, below = window[k - 1], window[k], window[k + 1]
        if (outer, inner) == (1, 2):
            continue
        target = int(_slices(label, inner)[0]) - 1
        if target <= int(_slices(label, below)[0]):
            continue  # the lower neighbour must reach below the voxels (else it nests too)
        box = (label == outer).any(axis=0)
        ys, xs = np.flatnonzero(box.any(axis=1)), np.flatnonzero(box.any(axis=0))
        free = label[target] == 0
        inside = np.zeros_like(free)
        inside[ys[0] : ys[-1], xs[0] : xs[-1]] = True
        free &= inside
        spots = np.argwhere(free[:-1, :-1] & free[1:, :-1] & free[:-1, 1:] & free[1:, 1:])
        if not len(spots):
            continue
        centre = np.array([(ys[0] + ys[-1]) / 2, (xs[0] + xs[-1]) / 2])
        y, x = spots[np.argmin(((spots - centre) ** 2).sum(axis=1))]
        label[target, y : y + 2, x : x + 2] = outer
        return Defect(
            "overlap",
            (outer, inner),
            f"4 voxels of {_n(outer)} one slice below {_n(inner)}, whose slices then lie "
            f"within {_n(outer)}'s",
        )
    raise ValueError(f"no place for an overlap defect among {list(window)}")
