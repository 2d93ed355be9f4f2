"""Per-case finalisation: a case's merged partials become its table rows.

:func:`finalize_case` merges the block partials of one case, draws its nnU-Net samples and
makes its row of the case table and its rows of the vertebra table (a :class:`_Group` of one
case); :func:`merge_groups` merges the groups of disjoint sets of cases.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from ..vertebrae import (
    ANATOMICAL_ORDER,
    L6_LABEL,
    T13_LABEL,
    VERTEBRA_NAMES,
    vertebra_name,
)
from .histogram import Histogram, merge_histograms
from .kernels import NNUNET_SEED, _Partial, merge_partials, nnunet_samples

__all__ = ["BOX_COLUMNS", "OVERALL", "finalize_case", "merge_groups"]

#: Name of the group of all requested cases in the fingerprint and the summaries.
OVERALL: Final = "all"

_RANK: Final = {label: i for i, label in enumerate(ANATOMICAL_ORDER)}
#: The case table's columns of the nonzero box (nnU-Net's crop), ``(z, y, x)`` half-open.
BOX_COLUMNS: Final = tuple(
    f"nonzero_{end}_{axis}" for end in ("start", "stop") for axis in ("z", "y", "x")
)


@dataclass(frozen=True)
class _CaseMeta:
    case: str
    split: str
    source: str
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    affine: tuple[tuple[float, ...], ...]
    image_dtype: str


@dataclass
class _Group:
    """Merged results of some cases: table rows, per-label histograms, fingerprint samples."""

    cases: list[dict[str, Any]]
    vertebrae: list[dict[str, Any]]
    label_hists: dict[int, Histogram]
    sample_overall: Histogram
    sample_split: Histogram


def finalize_case(
    parts: Sequence[_Partial],
    meta: _CaseMeta,
    n_overall: int = 0,
    n_split: int = 0,
    seed: int = NNUNET_SEED,
) -> _Group:
    """Merge a case's block partials, draw its nnU-Net samples, and make its table rows."""
    part = merge_partials(parts)
    sample_overall, sample_split = Histogram.empty(), Histogram.empty()
    if part.pieces:
        pieces = sorted(part.pieces, key=lambda piece: piece[0])
        foreground = np.concatenate([values for _, values in pieces])
        part.pieces = []
        sample_overall, sample_split = nnunet_samples(foreground, n_overall, n_split, seed)
        del foreground
    return _Group(
        cases=[_case_row(part, meta)],
        vertebrae=_vertebra_rows(part, meta),
        label_hists={v: lp.hist for v, lp in part.labels.items()},
        sample_overall=sample_overall,
        sample_split=sample_split,
    )


def _vertebra_rows(part: _Partial, meta: _CaseMeta) -> list[dict[str, Any]]:
    """Return the case's rows of the vertebra table: one per label, in anatomical order."""
    affine = np.asarray(meta.affine, dtype=np.float64)
    sz, sy, sx = meta.spacing
    rows = []
    for value in sorted(part.labels, key=lambda v: (_RANK.get(v, 1000 + v), v)):
        lp = part.labels[value]
        mean_zyx = [s / lp.count for s in lp.sum_zyx]
        world = affine[:3, :3] @ np.array(mean_zyx[::-1]) + affine[:3, 3]
        h = lp.hist
        rows.append(
            {
                "case": meta.case,
                "label": int(value),
                "name": vertebra_name(value),
                "split": meta.split,
                "source": meta.source,
                "voxels": lp.count,
                "volume_ml": lp.count * sz * sy * sx / 1000.0,
                "hu_voxels": h.total,
                "hu_mean": h.mean(),
                "hu_std": h.std(),
                "hu_min": h.min(),
                "hu_max": h.max(),
                "hu_p005": h.percentile(0.5),
                "hu_p50": h.percentile(50.0),
                "hu_p995": h.percentile(99.5),
                "z_start": lp.z_start,
                "z_stop": lp.z_stop,
                "z_extent_slices": lp.z_stop - lp.z_start,
                "z_extent_mm": (lp.z_stop - lp.z_start) * sz,
                "centroid_x_mm": float(world[0]),
                "centroid_y_mm": float(world[1]),
                "centroid_z_mm": float(world[2]),
            }
        )
    return rows


def _case_row(part: _Partial, meta: _CaseMeta) -> dict[str, Any]:
    """Return the case's row of the case table."""
    vertebrae = [v for v in ANATOMICAL_ORDER if v in part.labels]
    hu_min, hu_max, hu_mean, hu_std = part.hu.stats()
    sz, sy, sx = meta.spacing
    return {
        "case": meta.case,
        "split": meta.split,
        "source": meta.source,
        "slices": meta.shape[0],
        "n_y": meta.shape[1],
        "n_x": meta.shape[2],
        "spacing_z": sz,
        "spacing_y": sy,
        "spacing_x": sx,
        "image_dtype": meta.image_dtype,
        "voxels": part.voxels,
        "hu_voxels": part.hu.n,
        "nonfinite_voxels": part.voxels - part.hu.n,
        "hu_min": hu_min,
        "hu_max": hu_max,
        "hu_mean": hu_mean,
        "hu_std": hu_std,
        "foreground_voxels": part.foreground,
        "foreground_fraction": part.foreground / part.voxels if part.voxels else math.nan,
        "n_vertebrae": len(vertebrae),
        "vertebrae": vertebrae,
        "vertebra_names": " ".join(vertebra_name(v) for v in vertebrae),
        "first_vertebra": vertebra_name(vertebrae[0]) if vertebrae else None,
        "last_vertebra": vertebra_name(vertebrae[-1]) if vertebrae else None,
        "has_l6": L6_LABEL in part.labels,
        "has_t13": T13_LABEL in part.labels,
        "other_labels": sorted(v for v in part.labels if v not in VERTEBRA_NAMES),
        **_box_columns(part.nonzero),
    }


def _box_columns(box: tuple[int, ...] | None) -> dict[str, int]:
    """The nonzero box as case-table columns; an all-zero image has an empty box (-1)."""
    values = box if box is not None else (-1,) * 6
    return dict(zip(BOX_COLUMNS, (int(v) for v in values), strict=True))


def merge_groups(groups: Sequence[_Group]) -> _Group:
    """Merge the results of disjoint sets of cases."""
    by_label: dict[int, list[Histogram]] = {}
    for g in groups:
        for value, h in g.label_hists.items():
            by_label.setdefault(value, []).append(h)
    return _Group(
        cases=[row for g in groups for row in g.cases],
        vertebrae=[row for g in groups for row in g.vertebrae],
        label_hists={v: merge_histograms(hs) for v, hs in by_label.items()},
        sample_overall=merge_histograms(g.sample_overall for g in groups),
        sample_split=merge_histograms(g.sample_split for g in groups),
    )
