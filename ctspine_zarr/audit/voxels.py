"""What a case's voxels say to the audit: each label's 26-connected pieces.

A case task gets the label map cropped to the box of all its vertebrae (the block tasks
read it shard by shard and crop it) and, per label, labels the connected pieces inside the
label's stored box with :func:`scipy.ndimage.label` (26-connectivity: pieces touching by
a corner are one). The largest piece's centroid is the label's position for ``order``; the
pieces after it that hold more than the fragment threshold, with their shortest distance to
the largest (a Euclidean distance transform in mm), are what ``fragments`` reports.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import numpy as np

from .checks import Pieces

__all__ = ["Box", "label_pieces"]

#: A half-open index box ``(z0, y0, x0, z1, y1, x1)``.
Box = tuple[int, int, int, int, int, int]

_CONNECTIVITY: Final = np.ones((3, 3, 3), dtype=bool)


def label_pieces(
    crop: np.ndarray,
    origin: tuple[int, int, int],
    boxes: Mapping[int, Box],
    spacing: tuple[float, float, float],
    min_voxels: int,
) -> dict[int, Pieces]:
    """Return the pieces of every label of ``boxes`` in a cropped label map.

    Parameters
    ----------
    crop
        ``uint8 [z, y, x]``: the case's label map from index ``origin`` on, covering every
        box of ``boxes``.
    origin
        Index ``(z, y, x)`` of ``crop[0, 0, 0]`` in the case.
    boxes
        ``{label: box}``: the stored half-open boxes (case indices).
    spacing
        Voxel size ``(z, y, x)`` in mm, for the distances.
    min_voxels
        Pieces after the largest with more voxels than this get their distance measured.

    Returns
    -------
    dict of int to Pieces
        Per label found in its box (a label without a voxel there is left out).
    """
    out = {}
    for label, box in boxes.items():
        lo = tuple(box[a] - origin[a] for a in range(3))
        hi = tuple(box[a + 3] - origin[a] for a in range(3))
        mask = crop[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] == label
        pieces = _pieces(mask, spacing, min_voxels)
        if pieces is not None:
            z, y, x = pieces.centroid
            centroid = (z + box[0], y + box[1], x + box[2])
            out[int(label)] = Pieces(pieces.sizes, centroid, pieces.gaps_mm)
    return out


def _pieces(
    mask: np.ndarray, spacing: tuple[float, float, float], min_voxels: int
) -> Pieces | None:
    """The pieces of one label's mask (centroid relative to the mask's origin)."""
    from scipy import ndimage  # imported when voxels are audited, not with the package

    numbered, n = ndimage.label(mask, structure=_CONNECTIVITY)
    if n == 0:
        return None
    flat = numbered.reshape(-1)
    index = np.flatnonzero(flat)
    piece = flat[index]
    sizes = np.bincount(piece, minlength=n + 1)[1:]
    order = np.argsort(-sizes, kind="stable")
    largest = int(order[0]) + 1
    zyx = np.unravel_index(index[piece == largest], mask.shape)
    centroid = (float(zyx[0].mean()), float(zyx[1].mean()), float(zyx[2].mean()))
    sorted_sizes = tuple(int(sizes[i]) for i in order)
    far = [int(i) + 1 for i in order[1:] if sizes[i] > min_voxels]
    gaps: tuple[float, ...] = ()
    if far:
        distance = ndimage.distance_transform_edt(numbered != largest, sampling=spacing)
        gaps = tuple(float(distance[numbered == p].min()) for p in far)
    return Pieces(sorted_sizes, centroid, gaps)
