"""What the label map holds, computed once at ingest: per-slice vertebrae, boxes, counts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..vertebrae import VERTEBRA_LABELS

__all__ = ["LabelIndex", "boxes_from_attrs", "index_labels"]


@dataclass
class LabelIndex:
    """Per-slice presence, voxel counts and boxes of each vertebra label of one case.

    Attributes
    ----------
    slice_vertebrae
        ``bool [z, vertebra]``: whether slice ``z`` holds label ``VERTEBRA_LABELS[vertebra]``.
    voxel_count
        ``int64 [vertebra]``: voxels of each label.
    bbox_start, bbox_stop
        ``int32 [vertebra, axis]`` with axis ``(z, y, x)``: the half-open box
        ``[start, stop)`` of each label; ``-1`` for a label the case does not hold.
    other_values
        Label values outside the VerSe numbering (1-28), with their voxel counts.
    """

    slice_vertebrae: np.ndarray
    voxel_count: np.ndarray
    bbox_start: np.ndarray
    bbox_stop: np.ndarray
    other_values: dict[int, int]

    def to_attrs(self) -> dict[str, dict[str, object]]:
        """Return the present labels as compact JSON: ``{"22": {"voxels": n, "box": [...]}}``.

        ``box`` is ``[z0, y0, x0, z1, y1, x1]``, the half-open index box.
        """
        out: dict[str, dict[str, object]] = {}
        for i, value in enumerate(VERTEBRA_LABELS):
            if self.voxel_count[i] > 0:
                box = [*self.bbox_start[i].tolist(), *self.bbox_stop[i].tolist()]
                out[str(value)] = {"voxels": int(self.voxel_count[i]), "box": box}
        return out


def index_labels(label: np.ndarray) -> LabelIndex:
    """Index a ``uint8 [z, y, x]`` label map.

    Parameters
    ----------
    label
        The canonical label map.

    Returns
    -------
    LabelIndex
    """
    n_z = label.shape[0]
    columns = np.asarray(VERTEBRA_LABELS)
    start = np.full((len(columns), 3), -1, dtype=np.int32)
    stop = np.full((len(columns), 3), -1, dtype=np.int32)
    # the spine fills a small part of each slice: count inside the in-plane box of all labels
    in_plane: np.ndarray = np.any(label, axis=0) if n_z else np.zeros(label.shape[1:], bool)
    rows, cols = np.flatnonzero(in_plane.any(axis=1)), np.flatnonzero(in_plane.any(axis=0))
    y0, x0, crop = 0, 0, label[:, :0, :0]
    if rows.size:
        y0, x0 = int(rows[0]), int(cols[0])
        crop = label[:, y0 : int(rows[-1]) + 1, x0 : int(cols[-1]) + 1]
    per_slice = np.zeros((n_z, 256), dtype=np.int64)
    if crop.size:
        for z in range(n_z):
            per_slice[z] = np.bincount(crop[z].ravel(), minlength=256)
    present = per_slice[:, columns] > 0
    counts = per_slice.sum(axis=0)
    for i, value in enumerate(columns):
        zs = np.flatnonzero(present[:, i])
        if zs.size == 0:
            continue
        z0, z1 = int(zs[0]), int(zs[-1]) + 1
        mask = crop[z0:z1] == value
        ys = np.flatnonzero(mask.any(axis=(0, 2)))
        xs = np.flatnonzero(mask.any(axis=(0, 1)))
        start[i] = (z0, y0 + ys[0], x0 + xs[0])
        stop[i] = (z1, y0 + ys[-1] + 1, x0 + xs[-1] + 1)
    known = set(VERTEBRA_LABELS) | {0}
    other = {int(v): int(counts[v]) for v in np.flatnonzero(counts) if int(v) not in known}
    return LabelIndex(
        slice_vertebrae=present,
        voxel_count=counts[columns].astype(np.int64),
        bbox_start=start,
        bbox_stop=stop,
        other_values=other,
    )


def boxes_from_attrs(
    vertebrae: Mapping[str, Mapping[str, Any]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expand :meth:`LabelIndex.to_attrs` output to arrays over all VerSe labels.

    Returns
    -------
    tuple of numpy.ndarray
        ``voxel_count int64 [vertebra]``, ``bbox_start`` and ``bbox_stop`` ``int32
        [vertebra, axis]`` (``-1`` for absent labels).
    """
    n = len(VERTEBRA_LABELS)
    counts = np.zeros(n, dtype=np.int64)
    start = np.full((n, 3), -1, dtype=np.int32)
    stop = np.full((n, 3), -1, dtype=np.int32)
    position = {value: i for i, value in enumerate(VERTEBRA_LABELS)}
    for key, entry in vertebrae.items():
        i = position[int(key)]
        counts[i] = int(entry["voxels"])
        box = list(entry["box"])
        start[i], stop[i] = box[:3], box[3:]
    return counts, start, stop
