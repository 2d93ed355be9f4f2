"""The cuts of a case a picture shows, in screen order: :class:`PlaneView` and its readers.

:func:`read_views` reads a case's axial, coronal and sagittal cuts from the store: the axial
one at full resolution; the coronal and sagittal ones from the case's 2x level when it has
one (``ctspine-zarr pyramid``, a few 3D chunks), else in one pass by shard over every slice;
:func:`volume_views` cuts an open volume Dataset. Both reverse the stored axes into the
radiological convention and attach the orientation letters (see :mod:`ctspine_zarr.viz.show`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
import xarray as xr
import zarr
from zarr.abc.store import Store

from ...io.levelreader import read_cuts
from ...io.levels import LEVEL_FACTORS, level_arrays
from ...io.store import case_group
from ...io.volume import axis_coordinates
from ...schema import IMAGE, LABEL

__all__ = ["PLANES", "PlaneView", "read_views", "volume_views"]

Plane = Literal["axial", "coronal", "sagittal"]

#: The planes, in the order ``plane="all"`` draws them.
PLANES: Final[tuple[Plane, ...]] = ("axial", "coronal", "sagittal")
#: Orientation letters (left, right, top, bottom) of each plane, radiological convention.
_LETTERS: Final[dict[str, tuple[str, str, str, str]]] = {
    "axial": ("R", "L", "A", "P"),
    "coronal": ("R", "L", "S", "I"),
    "sagittal": ("A", "P", "S", "I"),
}
#: Index of the stored axis each plane cuts across.
_CUT_AXIS: Final[dict[str, str]] = {"axial": "z", "coronal": "y", "sagittal": "x"}


@dataclass(frozen=True)
class PlaneView:
    """One cut of a case, in screen order (row 0 at the top, column 0 at the left).

    Attributes
    ----------
    plane
        ``"axial"``, ``"coronal"`` or ``"sagittal"``.
    index
        Stored index of the cut along its axis (``z``, ``y`` or ``x``).
    position_mm
        Coordinate of the cut along that axis (``origin + index * spacing``, mm).
    image, label
        2D arrays as displayed.
    pixel_mm
        ``(row, column)`` size of one displayed pixel in mm.
    letters
        Orientation letters at the ``(left, right, top, bottom)`` edges.
    downsample
        The factor of the level the cut was read from (1: full resolution). A cut from a
        level is repeated back to the full-resolution grid: same shape and pixel size.
    """

    plane: Plane
    index: int
    position_mm: float
    image: np.ndarray
    label: np.ndarray
    pixel_mm: tuple[float, float]
    letters: tuple[str, str, str, str]
    downsample: int = 1

    @property
    def axis(self) -> str:
        """The stored axis the cut is taken across: ``"z"``, ``"y"`` or ``"x"``."""
        return _CUT_AXIS[self.plane]

    @property
    def extent_mm(self) -> tuple[float, float]:
        """Physical ``(width, height)`` of the picture in mm."""
        rows, cols = self.image.shape
        return cols * self.pixel_mm[1], rows * self.pixel_mm[0]


def _planes(plane: str | Sequence[str]) -> tuple[Plane, ...]:
    names = [plane] if isinstance(plane, str) else list(plane)
    if names == ["all"]:
        return PLANES
    out: list[Plane] = []
    for name in names:
        if name not in PLANES:
            raise ValueError(f"plane must be 'all' or one of {PLANES}, but is {name!r}")
        if name not in out:
            out.append(name)
    if not out:
        raise ValueError("no plane to draw")
    return tuple(p for p in PLANES if p in out)


#: Default coronal cut: this fraction of a vertebra's box depth behind its anterior edge,
#: which passes through the vertebral body (the box also holds the arch and processes).
_BODY_DEPTH: Final = 0.2


def _default_cuts(attrs: dict[str, Any], shape: tuple[int, ...]) -> tuple[int, int, int]:
    """Default ``(z, y, x)`` cuts from the stored vertebra boxes (no mask is read).

    ``z``: the middle of the labelled slices; ``y``: through the vertebral bodies (median over
    the vertebrae); ``x``: the median of the vertebrae's box centres (the mid-sagittal plane).
    The middle of the volume for a case without vertebrae.
    """
    boxes = [np.asarray(entry["box"], dtype=np.float64) for entry in attrs["vertebrae"].values()]
    if not boxes:
        return shape[0] // 2, shape[1] // 2, shape[2] // 2
    b = np.stack(boxes)  # [z0, y0, x0, z1, y1, x1], half-open
    z = (b[:, 0].min() + b[:, 3].max() - 1) / 2
    y = np.median(b[:, 4] - 1 - _BODY_DEPTH * (b[:, 4] - b[:, 1]))
    x = np.median((b[:, 2] + b[:, 5] - 1) / 2)
    iz, iy, ix = (
        int(np.clip(np.floor(v), 0, n - 1)) for v, n in zip((z, y, x), shape, strict=True)
    )
    return iz, iy, ix


def _index(value: int | None, default: int, n: int, name: str, where: str) -> int:
    if value is None:
        return default
    index = int(value)
    if not -n <= index < n:
        raise IndexError(f"{name} index must lie in [0, {n}) for {where}, but is {index}")
    return index % n


def _cuts(
    array: zarr.Array, y: int | None, x: int | None, z: int | None
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Read row ``y`` and column ``x`` of every slice (and slice ``z``) in one pass by shard."""
    n_z = array.shape[0]
    step = int((array.shards or array.chunks)[0])
    rows = np.empty((n_z, array.shape[2]), dtype=array.dtype) if y is not None else None
    cols = np.empty((n_z, array.shape[1]), dtype=array.dtype) if x is not None else None
    axial = None
    for start in range(0, n_z, step):
        stop = min(n_z, start + step)
        block = np.asarray(array[start:stop])
        if rows is not None:
            rows[start:stop] = block[:, y, :]
        if cols is not None:
            cols[start:stop] = block[:, :, x]
        if z is not None and start <= z < stop:
            axial = block[z - start].copy()
    return axial, rows, cols


def read_views(
    location: str | os.PathLike | Store,
    case_id: str,
    *,
    z: int | None = None,
    y: int | None = None,
    x: int | None = None,
    plane: str | Sequence[str] = "all",
    level: int | None = None,
    storage_options: dict[str, Any] | None = None,
) -> list[PlaneView]:
    """Read the cuts of one case that a picture needs, in screen order.

    Parameters
    ----------
    location
        Path or fsspec URL of the store (or a zarr store).
    case_id
        The case.
    z, y, x
        Stored indices of the axial, coronal and sagittal cuts. Defaults, from the case's
        stored vertebra boxes (no mask is read): ``z`` the middle of the labelled slices,
        ``y`` through the vertebral bodies, ``x`` the mid-sagittal plane of the vertebrae;
        the middle of the volume for a case without vertebrae.
    plane
        ``"all"``, one of :data:`PLANES`, or a sequence of them.
    level
        Source of the coronal and sagittal cuts: ``None`` the case's 2x level if it has one
        (``ctspine-zarr pyramid``), else full resolution; ``0`` full resolution (every slice
        chunk is read); ``2`` or ``4`` that level. A level's row or column holding the index
        is repeated back to the full grid. The axial cut is always one full-resolution chunk.
    storage_options
        fsspec options for a URL.

    Returns
    -------
    list of PlaneView
        One per plane, in the order of :data:`PLANES`.

    Raises
    ------
    CaseNotFoundError
        For an unknown case.
    IndexError
        For an index outside the volume.
    ValueError
        For an unknown plane, or a level the case lacks.
    """
    planes = _planes(plane)
    group = case_group(location, case_id, storage_options=storage_options)
    image, label = group[IMAGE], group[LABEL]
    assert isinstance(image, zarr.Array) and isinstance(label, zarr.Array)
    attrs: dict[str, Any] = dict(group.attrs)
    shape = tuple(int(n) for n in image.shape)
    middle = _default_cuts(attrs, shape)
    iz = _index(z, middle[0], shape[0], "z", f"case {case_id!r}")
    iy = _index(y, middle[1], shape[1], "y", f"case {case_id!r}")
    ix = _index(x, middle[2], shape[2], "x", f"case {case_id!r}")
    sz, sy, sx = (float(v) for v in attrs["spacing_zyx"])
    coords = axis_coordinates(np.asarray(attrs["affine"], dtype=float), shape)
    need_y, need_x = (iy if "coronal" in planes else None), (ix if "sagittal" in planes else None)
    source = _level(group, case_id, level, need_y is not None or need_x is not None)
    axial_z = iz if "axial" in planes else None
    if source is None:
        (image_z, image_y, image_x), (label_z, label_y, label_x) = (
            _read_cuts(a, axial_z, need_y, need_x) for a in (image, label)
        )
    else:
        (image_z, image_y, image_x), (label_z, label_y, label_x) = _level_cuts(
            (image, label), source, axial_z, need_y, need_x
        )
    views = []
    for name in planes:
        factor = source[0] if source is not None and name != "axial" else 1
        if name == "axial":
            pair, pixel, index = (image_z, label_z), (sy, sx), iz
        elif name == "coronal":
            pair, pixel, index = (image_y, label_y), (sz, sx), iy
        else:
            pair, pixel, index = (image_x, label_x), (sz, sy), ix
        assert pair[0] is not None and pair[1] is not None
        position = float(coords[_CUT_AXIS[name]][index])
        views.append(_view(name, index, position, pair[0], pair[1], pixel, factor))
    return views


def _read_cuts(
    full: zarr.Array, z: int | None, y: int | None, x: int | None
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Slice ``z``, and row ``y`` and column ``x`` of every slice (in one pass by shard)."""
    if y is None and x is None:
        return None if z is None else np.asarray(full[z]), None, None
    return _cuts(full, y, x, z)


def _level_cuts(
    full: tuple[zarr.Array, zarr.Array],
    source: tuple[int, tuple[zarr.Array, zarr.Array]],
    z: int | None,
    y: int | None,
    x: int | None,
) -> list[tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]]:
    """Per array of ``full``: slice ``z`` of it, and row ``y``, column ``x`` from the level.

    The level's row and column (of image and label together: their shard indexes in one
    round of requests, their chunks in a second) are repeated back to the full grid.
    """
    factor, small = source
    shape = tuple(int(n) for n in full[0].shape)
    asks = [(a, axis, at) for axis, at in ((1, y), (2, x)) if at is not None for a in (0, 1)]
    got = read_cuts([(small[a], axis, at // factor) for a, axis, at in asks])
    cuts = {  # a cut across y runs along x, and the other way round
        (a, axis): _repeat(cut, factor, shape, 3 - axis)
        for (a, axis, _), cut in zip(asks, got, strict=True)
    }
    return [
        (
            None if z is None else np.asarray(full[a][z]),
            cuts.get((a, 1)),
            cuts.get((a, 2)),
        )
        for a in (0, 1)
    ]


def _level(
    group: zarr.Group, case_id: str, level: int | None, needed: bool
) -> tuple[int, tuple[zarr.Array, zarr.Array]] | None:
    """The factor and ``(image, label)`` arrays the coronal and sagittal cuts come from.

    None for full resolution: asked for (``level=0``), no such cut needed, or (``None``) the
    case has no 2x level.
    """
    if level is not None and (isinstance(level, bool) or level not in (0, *LEVEL_FACTORS)):
        raise ValueError(f"level must be 0 (full resolution) or one of {LEVEL_FACTORS}: {level!r}")
    if not needed or level == 0:
        return None
    factor = LEVEL_FACTORS[0] if level is None else int(level)
    arrays = level_arrays(group, factor)
    if arrays is None:
        if level is None:
            return None
        raise ValueError(
            f"case {case_id!r} has no {factor}x level; write the levels with "
            "`ctspine-zarr pyramid STORE`, or ask for level=0 (full resolution)"
        )
    return factor, arrays


def _repeat(cut: Any, factor: int, shape: tuple[int, ...], keep: int) -> np.ndarray:
    """A level's 2D cut on ``(z, y or x)`` repeated back to the full-resolution grid.

    ``keep`` is the axis of ``shape`` the cut runs along besides ``z`` (1: y, 2: x).
    """
    values = np.asarray(cut)
    grown = np.repeat(np.repeat(values, factor, axis=0), factor, axis=1)
    return np.ascontiguousarray(grown[: shape[0], : shape[keep]])


def _view(
    plane: Plane,
    index: int,
    position_mm: float,
    image: np.ndarray,
    label: np.ndarray,
    pixel_mm: tuple[float, float],
    downsample: int = 1,
) -> PlaneView:
    """A view of a cut given in stored order (rows and columns increasing with the index)."""
    return PlaneView(
        plane=plane,
        index=int(index),
        position_mm=float(position_mm),
        # both axes reversed: anterior/superior at the top, right/anterior at the left
        image=np.ascontiguousarray(np.asarray(image)[::-1, ::-1]),
        label=np.ascontiguousarray(np.asarray(label)[::-1, ::-1]),
        pixel_mm=(float(pixel_mm[0]), float(pixel_mm[1])),
        letters=_LETTERS[plane],
        downsample=int(downsample),
    )


def volume_views(
    volume: xr.Dataset,
    *,
    z: int | None = None,
    y: int | None = None,
    x: int | None = None,
    plane: str | Sequence[str] = "all",
) -> list[PlaneView]:
    """Cut a volume Dataset (a case or a crop of one) into views, reading only the cuts.

    Parameters
    ----------
    volume
        ``image`` and ``label`` on ``(z, y, x)`` with the ``z``, ``y``, ``x`` coordinates in
        mm and ``attrs["spacing_zyx"]``, as :func:`ctspine_zarr.io.volume.open_volume` gives
        (``ds.ctspine.volume(case)``), or any ``isel`` of it such as a vertebra's box.
    z, y, x
        Positions of the cuts in ``volume`` (``isel`` indices; default: the middle).
    plane
        ``"all"``, one of :data:`PLANES`, or a sequence of them.

    Returns
    -------
    list of PlaneView
        One per plane; ``index`` is the stored index of the cut in the case (from the
        coordinates and ``attrs["affine"]`` when present, else the position in ``volume``).
    """
    planes = _planes(plane)
    shape = tuple(int(volume.sizes[d]) for d in ("z", "y", "x"))
    spacing = tuple(float(v) for v in volume.attrs["spacing_zyx"])
    affine = volume.attrs.get("affine")
    picks = {
        "z": _index(z, shape[0] // 2, shape[0], "z", "this volume"),
        "y": _index(y, shape[1] // 2, shape[1], "y", "this volume"),
        "x": _index(x, shape[2] // 2, shape[2], "x", "this volume"),
    }
    pixels = {"axial": (spacing[1], spacing[2]), "coronal": (spacing[0], spacing[2])}
    pixels["sagittal"] = (spacing[0], spacing[1])
    views = []
    for name in planes:
        axis = _CUT_AXIS[name]
        cut = volume[[IMAGE, LABEL]].isel({axis: picks[axis]})
        position = float(cut[axis].values)
        index = picks[axis]
        if affine is not None:  # coordinates are origin + index * spacing (volume.py)
            row = {"x": 0, "y": 1, "z": 2}[axis]
            step = spacing[("z", "y", "x").index(axis)]
            index = int(round((position - float(np.asarray(affine)[row, 3])) / step))
        image, label = (
            cut[v].transpose(*[d for d in ("z", "y", "x") if d != axis]).values
            for v in (IMAGE, LABEL)
        )
        views.append(_view(name, index, position, image, label, pixels[name]))
    return views
