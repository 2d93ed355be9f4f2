"""The downsampled levels of a case: where they live, and finding them in an open case group.

``ctspine-zarr pyramid`` (:mod:`ctspine_zarr.write.pyramid`) writes, beside a case's
full-resolution ``image`` and ``label``, 2x and 4x downsampled copies with 3D chunks for
browsing (coronal and sagittal cuts read a few chunks instead of every slice)::

    cases/<id>/
    ├── image, label, ...      level 0, sharded in axial slices
    └── levels/                a plain group
        ├── 2/                 a plain group (attrs: downsample, spacing_zyx)
        │   ├── image          (z, y, x), the image's dtype, mean of 2x2x2 blocks
        │   └── label          (z, y, x) uint8, mode of 2x2x2 blocks
        └── 4/ ...             the same of 4x4x4 blocks

A case that holds an OME label image (``labels/vertebrae``) gets its label levels there
instead, as ``labels/vertebrae/1`` and ``labels/vertebrae/2``, and ``levels/<f>/`` holds the
image only. The case's attribute ``levels`` lists the factors written (``[2, 4]``), and its
consolidated metadata lists every new node, so readers of the case find them without a
request. Level voxel ``i`` covers the full-resolution voxels ``f*i .. f*i + f - 1`` of each
axis (fewer at the far edges).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import zarr

__all__ = [
    "LABEL_IMAGE_GROUP",
    "LEVELS_GROUP",
    "LEVELS_KEY",
    "LEVEL_FACTORS",
    "level_arrays",
    "level_paths",
    "level_shape",
]

#: The downsampling factors ``pyramid`` writes, finest first.
LEVEL_FACTORS: Final = (2, 4)
#: The group (inside a case group) that holds one sub-group per factor.
LEVELS_GROUP: Final = "levels"
#: Case attribute listing the factors of the levels the case holds.
LEVELS_KEY: Final = "levels"
#: The OME-Zarr label image of a case, when it holds one; its levels are its datasets 1, 2.
LABEL_IMAGE_GROUP: Final = "labels/vertebrae"


def level_shape(shape: tuple[int, ...], factor: int) -> tuple[int, ...]:
    """The shape of a level: every axis divided by ``factor``, rounded up."""
    return tuple(-(-int(n) // factor) for n in shape)


def level_paths(factor: int, *, label_image: bool) -> tuple[str, str]:
    """The ``(image, label)`` paths of a level, relative to the case group.

    Parameters
    ----------
    factor
        One of :data:`LEVEL_FACTORS`.
    label_image
        Whether the case holds the OME label image :data:`LABEL_IMAGE_GROUP` (then the label
        levels are its datasets ``1``, ``2``, ...).
    """
    image = f"{LEVELS_GROUP}/{factor}/image"
    if label_image:
        return image, f"{LABEL_IMAGE_GROUP}/{LEVEL_FACTORS.index(factor) + 1}"
    return image, f"{LEVELS_GROUP}/{factor}/label"


def level_arrays(group: zarr.Group, factor: int) -> tuple[zarr.Array, zarr.Array] | None:
    """The ``(image, label)`` arrays of one level of an open case group, or None.

    None when the case's ``levels`` attribute does not list ``factor`` or an array is not
    found. Through the case's consolidated metadata this makes no request.
    """
    attrs: Mapping[str, Any] = group.attrs
    listed = attrs.get(LEVELS_KEY)
    if not isinstance(listed, list) or factor not in listed or factor not in LEVEL_FACTORS:
        return None
    for label_image in (False, True):
        image_path, label_path = level_paths(factor, label_image=label_image)
        try:
            image, label = group[image_path], group[label_path]
        except KeyError:
            continue
        if isinstance(image, zarr.Array) and isinstance(label, zarr.Array):
            return image, label
    return None
