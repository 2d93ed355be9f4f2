"""OME-Zarr 0.5 metadata of a case: an image with a vertebra label image.

Every case group is an OME-Zarr 0.5 image (``attrs["ome"]["multiscales"]``) whose level 0
is the case's own ``image`` array, so the image voxels are stored once. Its ``labels/``
group lists one label image, ``labels/vertebrae``, whose ``image-label`` metadata gives
every VerSe label its name (``properties``) and the colour :mod:`ctspine_zarr.viz.show`
draws it in (``colors``). OME label images live in their own group, so the label voxels
are stored a second time there, at ``labels/vertebrae/0`` (under 1 % of a store's bytes:
``docs/format.md``); ``label`` beside ``image`` stays what xarray opens.

Axes are ``z``, ``y``, ``x`` in millimetres. OME 0.5 has no rotation, so the scale is the
voxel spacing and the translation the position of voxel ``(0, 0, 0)`` in RAS+ mm; where the
canonical affine is oblique the case's attrs say so (:data:`OBLIQUE_KEY`) and readers that
need the exact geometry use ``attrs["affine"]``.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np

from ..vertebrae import VERTEBRA_COLOURS, VERTEBRA_LABELS, VERTEBRA_NAMES

__all__ = [
    "LABEL_IMAGE",
    "LABEL_LEVEL0",
    "LABELS_GROUP",
    "OBLIQUE_KEY",
    "OME_VERSION",
    "image_attrs",
    "label_image_attrs",
    "labels_group_attrs",
    "oblique_note",
]

OME_VERSION: Final = "0.5"
#: The OME labels group of a case, and its one label image.
LABELS_GROUP: Final = "labels"
LABEL_IMAGE: Final = "vertebrae"
#: Level 0 of the label image, relative to the label image's group.
LABEL_LEVEL0: Final = "0"
#: Case attribute present when the canonical affine is not axis-aligned (OME has no rotation).
OBLIQUE_KEY: Final = "ome_geometry_note"

_AXES: Final = [{"name": axis, "type": "space", "unit": "millimeter"} for axis in "zyx"]


def _transforms(affine: Any) -> list[dict[str, Any]]:
    """Scale (spacing) and translation (voxel 0 in RAS+ mm) of ``(z, y, x)`` arrays."""
    matrix = np.asarray(affine, dtype=float)
    # columns 0, 1, 2 of the affine step along stored x, y, z
    spacing = [float(np.linalg.norm(matrix[:3, column])) for column in (2, 1, 0)]
    origin = [float(matrix[row, 3]) for row in (2, 1, 0)]
    return [
        {"type": "scale", "scale": spacing},
        {"type": "translation", "translation": origin},
    ]


def oblique_note(affine: Any) -> str | None:
    """A sentence for the case's attrs when ``affine`` is oblique, else None."""
    matrix = np.asarray(affine, dtype=float)[:3, :3]
    off = matrix - np.diag(np.diag(matrix))
    if np.allclose(off, 0.0, atol=1e-6 * max(1.0, float(np.abs(matrix).max()))):
        return None
    return (
        "the canonical affine is oblique; OME-Zarr 0.5 has no rotation, so the OME scale "
        "and translation place the volume axis-aligned: use attrs['affine'] for exact geometry"
    )


def _multiscale(name: str, path: str, affine: Any) -> dict[str, Any]:
    return {
        "name": name,
        "axes": _AXES,
        "datasets": [{"path": path, "coordinateTransformations": _transforms(affine)}],
    }


def image_attrs(case_id: str, image_path: str, affine: Any) -> dict[str, Any]:
    """The ``ome`` attribute of a case group: one multiscale image, level 0 ``image_path``."""
    return {"version": OME_VERSION, "multiscales": [_multiscale(case_id, image_path, affine)]}


def labels_group_attrs() -> dict[str, Any]:
    """The ``ome`` attribute of a case's ``labels`` group."""
    return {"version": OME_VERSION, "labels": [LABEL_IMAGE]}


def _rgba(colour: str) -> list[int]:
    return [int(colour[i : i + 2], 16) for i in (1, 3, 5)] + [255]


def label_image_attrs(affine: Any) -> dict[str, Any]:
    """The ``ome`` attribute of the vertebra label image: names and colours of every label."""
    return {
        "version": OME_VERSION,
        "image-label": {
            "colors": [
                {"label-value": v, "rgba": _rgba(VERTEBRA_COLOURS[v])} for v in VERTEBRA_LABELS
            ],
            "properties": [{"label-value": v, "name": VERTEBRA_NAMES[v]} for v in VERTEBRA_LABELS],
            "source": {"image": "../../"},
        },
        "multiscales": [_multiscale(LABEL_IMAGE, LABEL_LEVEL0, affine)],
    }
