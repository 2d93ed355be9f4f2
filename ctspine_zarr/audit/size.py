"""The ``size`` check: a vertebra's volume far outside its level's distribution over the store.

It needs no voxel: the catalogue holds every case's voxel count per label, spacing and
boxes, so the volumes (in ml, as ``stats`` computes them) of the whole store come from a
few catalogue arrays. Per level (label), over the store's vertebrae that the volume does
not cut (a box touching the first or last slice, row or column is cut off, so its volume
says nothing), the robust z-score of a vertebra is

    z = (log v - median(log v)) / (1.4826 * max(MAD(log v), pooled MAD, MAD_FLOOR))

(volumes are compared by ratio: sizes vary multiplicatively between patients). A vertebra
with ``|z| > threshold`` (3.5, Iglewicz and Hoaglin's cut-off) is reported, when its level
has at least ``min_cases`` uncut vertebrae in the store. The spread is never taken below
the *pooled* MAD, that of every checked vertebra's deviation from its own level's median
(the patients' size varies every level alike, and the pooled estimate rests on many more
vertebrae than one level's), nor below ``MAD_FLOOR`` (10 %): a level whose few vertebrae
happen to agree closely does not flag an ordinary one (with the floor alone, a volume is
reported at a factor of 1.68 from the median at the least).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Final

import numpy as np
import xarray as xr

from ..schema import CASE_DIM
from ..vertebrae import VERTEBRA_LABELS
from .checks import WARNING, Finding, named

__all__ = [
    "MAD_FLOOR",
    "MIN_LEVEL_CASES",
    "SIZE_THRESHOLD",
    "check_size",
    "levels_checked",
    "volumes_ml",
]

#: ``|robust z|`` above which a volume is reported.
SIZE_THRESHOLD: Final = 3.5
#: Uncut vertebrae of a level the store must hold for its distribution to be used.
MIN_LEVEL_CASES: Final = 8
#: Smallest median absolute deviation of log volumes used (about 10 %).
MAD_FLOOR: Final = 0.1
#: The normal distribution's standard deviation per median absolute deviation.
_MAD_SCALE: Final = 1.4826


def volumes_ml(catalogue: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Return every case's volume per label (ml) and whether the volume leaves it whole.

    Returns
    -------
    tuple of numpy.ndarray
        ``float64 [case, vertebra]`` volumes (0 where absent) and ``bool [case, vertebra]``,
        True where the label is present and its box touches no face of the volume.
    """
    counts = np.asarray(catalogue["voxel_count"].values, dtype=np.float64)
    voxel_ml = np.prod(
        [np.asarray(catalogue[f"spacing_{a}"].values, dtype=np.float64) for a in "zyx"], axis=0
    )
    start = np.asarray(catalogue["bbox_start"].values)
    stop = np.asarray(catalogue["bbox_stop"].values)
    shape = np.stack([np.asarray(catalogue[n].values) for n in ("n_slices", "n_y", "n_x")], 1)
    whole = (counts > 0) & (start > 0).all(axis=2) & (stop < shape[:, None, :]).all(axis=2)
    return counts * voxel_ml[:, None] / 1000.0, whole


def levels_checked(catalogue: xr.Dataset, min_cases: int = MIN_LEVEL_CASES) -> list[int]:
    """The labels with ``min_cases`` whole vertebrae in the store or more: those ``size`` checks."""
    _, whole = volumes_ml(catalogue)
    return [v for c, v in enumerate(VERTEBRA_LABELS) if whole[:, c].sum() >= min_cases]


def check_size(
    catalogue: xr.Dataset,
    cases: Collection[str],
    *,
    threshold: float = SIZE_THRESHOLD,
    min_cases: int = MIN_LEVEL_CASES,
) -> list[Finding]:
    """``size``: the vertebrae of ``cases`` whose volume is far outside their level's.

    Parameters
    ----------
    catalogue
        The store's whole catalogue (the distributions are the store's).
    cases
        The cases to report on.
    threshold
        ``|robust z|`` above which a volume is reported.
    min_cases
        Uncut vertebrae a level needs in the store to be checked.
    """
    ids = [str(c) for c in catalogue[CASE_DIM].values]
    chosen = np.isin(np.asarray(ids, dtype=object), list(cases))
    volume, whole = volumes_ml(catalogue)
    levels = [c for c in range(len(VERTEBRA_LABELS)) if whole[:, c].sum() >= min_cases]
    medians = {c: float(np.median(np.log(volume[whole[:, c], c]))) for c in levels}
    spreads = {c: np.abs(np.log(volume[whole[:, c], c]) - medians[c]) for c in levels}
    pooled = float(np.median(np.concatenate(list(spreads.values())))) if levels else 0.0
    findings = []
    for column in levels:
        label = VERTEBRA_LABELS[column]
        keep = whole[:, column]
        median = medians[column]
        mad = max(float(np.median(spreads[column])), pooled, MAD_FLOOR)
        spread = _MAD_SCALE * mad
        rows = np.flatnonzero(keep & chosen)
        z = (np.log(volume[rows, column]) - median) / spread
        typical = float(np.exp(median))
        for row, score in zip(rows, z, strict=True):
            if abs(score) <= threshold:
                continue
            value = float(volume[row, column])
            findings.append(
                Finding(
                    ids[row],
                    "size",
                    (label,),
                    f"{named(label)} holds {value:.3g} ml, {value / typical:.2g} times the "
                    f"median of {typical:.3g} ml over the store's {int(keep.sum())} whole "
                    f"{named(label).split(' ')[0]} (robust z {score:+.1f})",
                    WARNING,
                )
            )
    return findings
