"""The per-case checks of the audit, as pure functions of what a case's index and voxels say.

Each function returns :class:`Finding` rows (the ``size`` check, which compares a case with
the whole store, is :mod:`ctspine_zarr.audit.size`). The definitions are those of
:mod:`ctspine_zarr.audit`; the numbers that tune them are the module constants here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from ..vertebrae import ANATOMICAL_ORDER, L6_LABEL, T13_LABEL, VERTEBRA_LABELS, vertebra_name

__all__ = [
    "CHECKS",
    "ERROR",
    "MIN_FRAGMENT_VOXELS",
    "NESTED_EXEMPT",
    "ORDER_TOLERANCE",
    "REQUIRED_SEQUENCE",
    "WARNING",
    "Finding",
    "Pieces",
    "check_fragments",
    "check_gap",
    "check_order",
    "check_overlap",
    "label_list",
    "named",
    "parse_checks",
    "rank",
]

#: The checks, in the order they are reported.
CHECKS: Final = ("order", "gap", "fragments", "size", "overlap")
#: Severity of a finding that is surely a labelling error.
ERROR: Final = "error"
#: Severity of a finding that may be one (a stray island, an unusual size, a crowded slice).
WARNING: Final = "warning"
#: The labels a spine holds between two labelled ones: the anatomical order without the
#: optional T13 (between T12 and L1) and L6 (below L5), whose absence is no gap.
REQUIRED_SEQUENCE: Final = tuple(v for v in ANATOMICAL_ORDER if v not in (T13_LABEL, L6_LABEL))
#: ``order``: how far (a fraction of the shorter z extent of the two) a vertebra's centre
#: may lie below the next one's before it counts as out of order (tilted spines).
ORDER_TOLERANCE: Final = 0.25
#: ``overlap``: (outer, inner) pairs whose nesting is anatomy: C1 rings the dens of C2.
NESTED_EXEMPT: Final = frozenset({(2, 1)})
#: ``fragments``: pieces besides a label's largest that hold more voxels than this are
#: reported (smaller ones are the few stray voxels any manual labelling leaves).
MIN_FRAGMENT_VOXELS: Final = 100
#: ``fragments``: a second piece this large against the largest is two vertebrae under one
#: number (an error); smaller ones are stray islands (a warning).
TWO_VERTEBRAE_FRACTION: Final = 0.2

_RANK: Final = {v: i for i, v in enumerate(ANATOMICAL_ORDER)}


def rank(label: int) -> int:
    """Cranio-caudal rank of a label (labels outside 1-28 after every vertebra)."""
    return _RANK.get(int(label), len(_RANK) + int(label))


def named(label: int) -> str:
    """``"L3 (22)"``: a label's name and value."""
    return f"{vertebra_name(label)} ({int(label)})"


def label_list(labels: Iterable[int]) -> str:
    """``"L2 (21), L3 (22) and L4 (23)"``."""
    names = [named(v) for v in labels]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


@dataclass(frozen=True)
class Finding:
    """One problem of one case: the row of an audit's table.

    Attributes
    ----------
    case
        The case id.
    check
        One of :data:`CHECKS`.
    labels
        The label values involved, cranio-caudally.
    detail
        A sentence saying what is wrong, with the numbers.
    severity
        :data:`ERROR` or :data:`WARNING`.
    """

    case: str
    check: str
    labels: tuple[int, ...]
    detail: str
    severity: str

    def to_json(self) -> dict[str, Any]:
        """Return the finding as a JSON-able dict."""
        return {
            "case": self.case,
            "check": self.check,
            "labels": [int(v) for v in self.labels],
            "detail": self.detail,
            "severity": self.severity,
        }

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> Finding:
        """Return the finding of a dict written by :meth:`to_json`."""
        return cls(
            case=str(entry["case"]),
            check=str(entry["check"]),
            labels=tuple(int(v) for v in entry["labels"]),
            detail=str(entry["detail"]),
            severity=str(entry["severity"]),
        )


@dataclass(frozen=True)
class Pieces:
    """What the voxels say of one label of a case: its 26-connected pieces.

    Attributes
    ----------
    sizes
        Voxels of each piece, largest first.
    centroid
        Index ``(z, y, x)`` of the centroid of the largest piece.
    gaps_mm
        Shortest distance, in mm, from each piece after the largest that holds more than
        the fragment threshold to the largest piece.
    """

    sizes: tuple[int, ...]
    centroid: tuple[float, float, float]
    gaps_mm: tuple[float, ...] = ()


def check_gap(case: str, present: Iterable[int]) -> list[Finding]:
    """``gap``: labels missing between two labelled ones of :data:`REQUIRED_SEQUENCE`.

    One finding per run of missing labels; T13 and L6 are never missing, and a labelled
    T13 or L6 counts for the vertebrae around it (T12 and L1, L5 and the sacrum).
    """
    have = {int(v) for v in present}
    positions = [i for i, v in enumerate(REQUIRED_SEQUENCE) if v in have]
    findings = []
    for lo, hi in zip(positions, positions[1:], strict=False):
        missing = REQUIRED_SEQUENCE[lo + 1 : hi]
        if not missing:
            continue
        above, below = REQUIRED_SEQUENCE[lo], REQUIRED_SEQUENCE[hi]
        verb = "is" if len(missing) == 1 else "are"
        findings.append(
            Finding(
                case,
                "gap",
                tuple(missing),
                f"{label_list(missing)} {verb} missing between {named(above)} and "
                f"{named(below)}, which are labelled",
                ERROR,
            )
        )
    return findings


def check_order(
    case: str, centres_mm: Mapping[int, float], extents_mm: Mapping[int, float]
) -> list[Finding]:
    """``order``: a vertebra whose centre lies below the next one's, cranio-caudally.

    Parameters
    ----------
    case
        The case id.
    centres_mm
        World (RAS+) z in mm of the centroid of each label's largest piece: superior is up.
    extents_mm
        Each label's z extent in mm; a centre may lie up to :data:`ORDER_TOLERANCE` of the
        shorter extent of the two below the next one's (a tilted spine).
    """
    labels = sorted((v for v in centres_mm if v in _RANK), key=rank)
    findings = []
    for upper, lower in zip(labels, labels[1:], strict=False):
        rise = centres_mm[upper] - centres_mm[lower]  # should be positive: upper is above
        tolerance = ORDER_TOLERANCE * min(extents_mm[upper], extents_mm[lower])
        if rise < -tolerance:
            findings.append(
                Finding(
                    case,
                    "order",
                    (upper, lower),
                    f"{named(upper)} lies below {named(lower)}: its centre is "
                    f"{-rise:.1f} mm lower, where it should be above",
                    ERROR,
                )
            )
    return findings


def check_overlap(
    case: str, ranges: Mapping[int, tuple[int, int]], slice_labels: np.ndarray | None
) -> list[Finding]:
    """``overlap``: a label's slices nested in another's, or slices holding three labels.

    Parameters
    ----------
    case
        The case id.
    ranges
        Half-open slice range ``(z0, z1)`` of each present label (the stored boxes).
    slice_labels
        ``bool [z, vertebra]`` (columns :data:`~ctspine_zarr.vertebrae.VERTEBRA_LABELS`): the
        stored per-slice index; None skips the slices holding three labels.
    """
    findings = []
    labels = sorted((v for v in ranges if v in _RANK), key=rank)
    for i, first in enumerate(labels):
        for second in labels[i + 1 :]:
            (a0, a1), (b0, b1) = ranges[first], ranges[second]
            if a0 <= b0 and b1 <= a1:
                outer, inner = first, second
            elif b0 <= a0 and a1 <= b1:
                outer, inner = second, first
            else:
                continue
            if (outer, inner) in NESTED_EXEMPT:
                continue
            (o0, o1), (i0, i1) = ranges[outer], ranges[inner]
            findings.append(
                Finding(
                    case,
                    "overlap",
                    (first, second),
                    f"{named(inner)} lies within the slices of {named(outer)}: slices "
                    f"{i0}-{i1 - 1} inside {o0}-{o1 - 1}",
                    ERROR,
                )
            )
    if slice_labels is not None:
        findings.extend(_crowded_slices(case, slice_labels))
    return findings


def _crowded_slices(case: str, slice_labels: np.ndarray) -> list[Finding]:
    """One finding per run of consecutive slices holding three or more vertebrae."""
    crowded = np.asarray(slice_labels, dtype=bool).sum(axis=1) >= 3
    findings = []
    z = 0
    while z < crowded.size:
        if not crowded[z]:
            z += 1
            continue
        end = z
        while end < crowded.size and crowded[end]:
            end += 1
        columns = np.flatnonzero(np.asarray(slice_labels[z:end]).any(axis=0))
        labels = tuple(sorted((VERTEBRA_LABELS[c] for c in columns), key=rank))
        where = f"slice {z}" if end == z + 1 else f"slices {z}-{end - 1}"
        findings.append(
            Finding(
                case,
                "overlap",
                labels,
                f"{where} {'holds' if end == z + 1 else 'each hold'} three or more vertebrae "
                f"(of {label_list(labels)}); anatomy allows two",
                WARNING,
            )
        )
        z = end
    return findings


def check_fragments(
    case: str, pieces: Mapping[int, Pieces], min_voxels: int = MIN_FRAGMENT_VOXELS
) -> list[Finding]:
    """``fragments``: a label in disconnected pieces, a piece besides the largest holding
    more than ``min_voxels`` voxels (26-connectivity).
    """
    findings = []
    for label in sorted(pieces, key=rank):
        found = pieces[label]
        big = [s for s in found.sizes[1:] if s > min_voxels]
        if not big:
            continue
        small = len(found.sizes) - 1 - len(big)
        counts = ", ".join(f"{s:,}" for s in (found.sizes[0], *big[:-1]))
        counts = f"{counts} and {big[-1]:,}"
        gaps = ", ".join(f"{g:.1f}" for g in found.gaps_mm)
        text = (
            f"{named(label)} is in {len(big) + 1} disconnected pieces of {counts} voxels; "
            f"the smaller lie {gaps} mm from the largest"
        )
        if small:
            text += f" (and {small} piece(s) of at most {min_voxels} voxels)"
        two = big[0] >= TWO_VERTEBRAE_FRACTION * found.sizes[0]
        findings.append(Finding(case, "fragments", (label,), text, ERROR if two else WARNING))
    return findings


def parse_checks(checks: str | Iterable[str] | None) -> tuple[str, ...]:
    """The checks asked for, in :data:`CHECKS` order (None: all of them).

    Raises
    ------
    ValueError
        For a name that is not a check.
    """
    if checks is None:
        return CHECKS
    names = [checks] if isinstance(checks, str) else [str(c) for c in checks]
    unknown = [c for c in names if c not in CHECKS]
    if unknown:
        raise ValueError(f"check must be one of {', '.join(CHECKS)}, but is {unknown[0]!r}")
    if not names:
        raise ValueError(f"no check asked for (the checks: {', '.join(CHECKS)})")
    return tuple(c for c in CHECKS if c in names)
