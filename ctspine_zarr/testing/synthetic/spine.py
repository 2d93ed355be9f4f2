"""The synthetic spine: VerSe labels in cranio-caudal order, their levels and heights, windows.

Everything here is geometry along the body axis: which vertebrae a spine has (with the
optional T13 and L6), the continuous anatomical level and the nominal height of each, the
fraction of each height taken by the disc below it, and the contiguous run of vertebrae a
field of view of a given length covers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from ctspine_zarr.vertebrae import ANATOMICAL_ORDER, L6_LABEL, T13_LABEL

__all__ = [
    "COCCYX",
    "HEIGHT_MM",
    "LEVEL",
    "SACRUM",
    "SPINE_ORDER",
    "disc_fraction",
    "fit_window",
    "pick_window",
    "spine_sequence",
]

#: VerSe labels of the sacrum and the coccyx.
SACRUM: Final = 26
COCCYX: Final = 27

#: Every VerSe label in cranio-caudal order, including the optional T13 and L6.
SPINE_ORDER: Final[tuple[int, ...]] = ANATOMICAL_ORDER

#: Continuous anatomical level of each label (C1 = 0 ... L5 = 23), used to shape the body.
LEVEL: Final[dict[int, float]] = {
    **{lab: float(lab - 1) for lab in range(1, 25)},
    T13_LABEL: 18.5,
    L6_LABEL: 24.0,
    SACRUM: 25.0,
    COCCYX: 26.6,
}

#: Nominal height (mm) of each vertebra including the disc below it.
HEIGHT_MM: Final[dict[int, float]] = {
    1: 14.0,
    2: 20.0,
    **{lab: 15.0 + 0.3 * (lab - 3) for lab in range(3, 8)},
    **{lab: 18.0 + 8.0 * (lab - 8) / 11.0 for lab in range(8, 20)},
    T13_LABEL: 26.0,
    20: 32.0,
    21: 33.0,
    22: 34.0,
    23: 35.0,
    24: 35.0,
    L6_LABEL: 34.0,
    SACRUM: 100.0,
    COCCYX: 28.0,
}


def disc_fraction(label: int) -> float:
    """Fraction of the height of vertebra ``label`` taken by the disc below it."""
    if label == 1:
        return 0.12
    if label <= 7:
        return 0.22
    if label <= 19 or label == T13_LABEL:
        return 0.2
    if label <= L6_LABEL:
        return 0.27
    return 0.0


def spine_sequence(
    *, t13: bool = False, l6: bool = False, sacrum: bool = True, coccyx: bool = True
) -> list[int]:
    """Return the VerSe labels of a spine in cranio-caudal order.

    Parameters
    ----------
    t13
        Include T13 (label 28) between T12 and L1.
    l6
        Include L6 (label 25) after L5 (lumbarization).
    sacrum, coccyx
        Include the sacrum (26) and the coccyx (27); the coccyx only with the sacrum.

    Returns
    -------
    list of int
        Label values, C1 first.
    """
    seq = list(range(1, 20))
    if t13:
        seq.append(T13_LABEL)
    seq.extend(range(20, 25))
    if l6:
        seq.append(L6_LABEL)
    if sacrum:
        seq.append(SACRUM)
        if coccyx:
            seq.append(COCCYX)
    return seq


def pick_window(seq: Sequence[int], extent_mm: float, anchor: int, at: str) -> list[int]:
    """Contiguous run of ``seq`` around ``anchor`` long enough to fill ``extent_mm``.

    ``at`` says where the anchor sits in the run: ``"top"``, ``"bottom"`` or ``"middle"``
    (the run grows down and up in turn).
    """
    lo = hi = list(seq).index(anchor)
    total = HEIGHT_MM[anchor]
    target = 1.12 * extent_mm
    turn = 0
    while total < target:
        can_down, can_up = hi + 1 < len(seq), lo > 0
        if not (can_down or can_up):
            break
        if at == "top":
            down = can_down
        elif at == "bottom":
            down = not can_up
        else:
            down = (turn % 2 == 0 and can_down) or not can_up
            turn += 1
        if down:
            hi += 1
            total += HEIGHT_MM[seq[hi]]
        else:
            lo -= 1
            total += HEIGHT_MM[seq[lo]]
    return list(seq[lo : hi + 1])


def fit_window(window: list[int], anchor: int, nz: int) -> list[int]:
    """``window`` cut to at most ``nz`` labels (one slice each at least), kept around ``anchor``."""
    if len(window) > nz:
        keep = window.index(anchor)
        start = min(max(0, keep - nz // 2), len(window) - nz)
        window = window[start : start + nz]
    return window
