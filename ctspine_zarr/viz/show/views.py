"""Quick-look pictures of one case: CT planes in a window, the vertebra labels and a legend.

Pictures are drawn in the *radiological* convention, with the orientation letters on the
edges of every panel:

========  ======================  ==========  ============
plane     viewed from             left/right  top/bottom
========  ======================  ==========  ============
axial     the feet                R / L       A / P
coronal   the front               R / L       S / I
sagittal  the patient's left      A / P       S / I
========  ======================  ==========  ============

The store holds every case in canonical RAS+ orientation (``x`` increases to the patient's
Right, ``y`` to Anterior, ``z`` to Superior) indexed ``[z, y, x]``, so each of the three cuts
(``image[z]`` on ``(y, x)``, ``image[:, y]`` on ``(z, x)``, ``image[:, :, x]`` on ``(z, y)``)
is shown with both of its axes reversed: row 0 at the top is the largest row coordinate
(anterior or superior), column 0 at the left the largest column coordinate (the patient's
right, or anterior). Pixels are drawn to scale in mm (the voxel spacing), so the panels have
the physical aspect ratio of the cut.

Reads: the axial plane is one chunk per array (``image[z]``, ``label[z]``). A coronal or a
sagittal cut needs one row or column of *every* slice, which decodes every slice chunk of
the case (the chunks are whole axial slices); both cuts are taken in the same single pass,
one shard (32 slices) at a time, so memory stays at one shard.

Figures are built with :class:`matplotlib.figure.Figure` and the Agg canvas directly (no
``pyplot``, no global backend), so this works headless, in threads and in notebooks.
Every vertebra is drawn in its colour of :data:`ctspine_zarr.vertebrae.VERTEBRA_COLOURS`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import numpy as np
import xarray as xr
import zarr
from zarr.abc.store import Store

from ..io.store import case_group
from ..io.volume import axis_coordinates
from ..schema import IMAGE, LABEL
from ..vertebrae import ANATOMICAL_ORDER, OTHER_LABEL_COLOUR, vertebra_colours, vertebra_name

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "OTHER_LABEL_COLOUR",
    "OVERLAY_ALPHA",
    "PLANES",
    "WINDOWS",
    "PlaneView",
    "draw_views",
    "label_overlay",
    "parse_window",
    "plot_case",
    "read_views",
    "save_case_png",
    "volume_views",
]

Plane = Literal["axial", "coronal", "sagittal"]

#: The planes, in the order ``plane="all"`` draws them.
PLANES: Final[tuple[Plane, ...]] = ("axial", "coronal", "sagittal")
#: Named CT windows as ``(width, level)`` in HU.
WINDOWS: Final[dict[str, tuple[float, float]]] = {
    "bone": (1800.0, 400.0),
    "soft": (400.0, 40.0),
}
#: Opacity of the label overlay.
OVERLAY_ALPHA: Final = 0.5
#: Orientation letters (left, right, top, bottom) of each plane, radiological convention.
_LETTERS: Final[dict[str, tuple[str, str, str, str]]] = {
    "axial": ("R", "L", "A", "P"),
    "coronal": ("R", "L", "S", "I"),
    "sagittal": ("A", "P", "S", "I"),
}
#: Index of the stored axis each plane cuts across.
_CUT_AXIS: Final[dict[str, str]] = {"axial": "z", "coronal": "y", "sagittal": "x"}

# Layout, in inches.
_PANEL_HEIGHT: Final = 4.5
_MAX_WIDTH: Final = 18.0
_SIDE: Final = 0.3  # room for the left/right letters of a panel
_TOP: Final = 0.95  # figure title, panel title, top letter
_BOTTOM: Final = 0.3  # bottom letter
_LEGEND_ROW: Final = 0.2  # height of one legend entry
_LEGEND_COLUMN: Final = 0.85  # width of one legend column


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
    """

    plane: Plane
    index: int
    position_mm: float
    image: np.ndarray
    label: np.ndarray
    pixel_mm: tuple[float, float]
    letters: tuple[str, str, str, str]

    @property
    def axis(self) -> str:
        """The stored axis the cut is taken across: ``"z"``, ``"y"`` or ``"x"``."""
        return _CUT_AXIS[self.plane]

    @property
    def extent_mm(self) -> tuple[float, float]:
        """Physical ``(width, height)`` of the picture in mm."""
        rows, cols = self.image.shape
        return cols * self.pixel_mm[1], rows * self.pixel_mm[0]


def parse_window(window: str | Sequence[float]) -> tuple[float, float]:
    """Return the ``(vmin, vmax)`` HU range of a CT window.

    Parameters
    ----------
    window
        ``"bone"`` (W 1800, L 400), ``"soft"`` (W 400, L 40), a ``"W,L"`` string such as
        ``"1500,-600"``, or a ``(width, level)`` pair.

    Returns
    -------
    tuple of float
        ``(level - width / 2, level + width / 2)``.

    Raises
    ------
    ValueError
        For an unknown name, a malformed string or a width that is not positive.
    """
    if isinstance(window, str):
        text = window.strip().lower()
        if text in WINDOWS:
            width, level = WINDOWS[text]
        else:
            parts = text.split(",")
            try:
                width, level = (float(p) for p in parts)
            except ValueError:
                raise ValueError(
                    f"window must be one of {sorted(WINDOWS)} or 'WIDTH,LEVEL' in HU "
                    f"(e.g. '1500,-600'), but is {window!r}"
                ) from None
    else:
        values = [float(v) for v in window]
        if len(values) != 2:
            raise ValueError(f"window must be a (width, level) pair, but is {window!r}")
        width, level = values
    if not (math.isfinite(width) and math.isfinite(level)) or width <= 0:
        raise ValueError(f"window width must be a positive number of HU, but is {width}")
    return level - width / 2.0, level + width / 2.0


def _rgba(colour: str, alpha: float) -> tuple[float, float, float, float]:
    from matplotlib.colors import to_rgb

    r, g, b = to_rgb(colour)
    return r, g, b, alpha


def _lookup(alpha: float) -> np.ndarray:
    """RGBA per label value 0..255: transparent background, one colour per vertebra."""
    table = np.zeros((256, 4), dtype=np.float64)
    table[1:] = _rgba(OTHER_LABEL_COLOUR, alpha)
    for label, colour in vertebra_colours().items():
        table[label] = _rgba(colour, alpha)
    return table


def label_overlay(label: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """Return the RGBA overlay of a label map: each vertebra in its colour, 0 transparent.

    Parameters
    ----------
    label
        Integer label map (VerSe values; any shape).
    alpha
        Opacity of the labelled pixels.

    Returns
    -------
    numpy.ndarray
        ``label.shape + (4,)`` float64 RGBA; alpha is 0 exactly where ``label == 0``.
        Values outside 1..28 get :data:`OTHER_LABEL_COLOUR`.
    """
    values = np.asarray(label)
    index = np.clip(values, 0, 255).astype(np.intp)
    index[(values != 0) & (index == 0)] = 255  # negative values: not background
    return _lookup(alpha)[index]


# --------------------------------------------------------------------------------------------
# Reading the cuts
# --------------------------------------------------------------------------------------------


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
        For an unknown plane.
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

    need_y = iy if "coronal" in planes else None
    need_x = ix if "sagittal" in planes else None
    cuts: list[tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]]
    if need_y is None and need_x is None:
        cuts = [(np.asarray(a[iz]), None, None) for a in (image, label)]
    else:
        axial_z = iz if "axial" in planes else None
        cuts = [_cuts(a, need_y, need_x, axial_z) for a in (image, label)]
    (image_z, image_y, image_x), (label_z, label_y, label_x) = cuts

    views = []
    for name in planes:
        if name == "axial":
            pair, pixel, index = (image_z, label_z), (sy, sx), iz
        elif name == "coronal":
            pair, pixel, index = (image_y, label_y), (sz, sx), iy
        else:
            pair, pixel, index = (image_x, label_x), (sz, sy), ix
        assert pair[0] is not None and pair[1] is not None
        position = float(coords[_CUT_AXIS[name]][index])
        views.append(_view(name, index, position, pair[0], pair[1], pixel))
    return views


def _view(
    plane: Plane,
    index: int,
    position_mm: float,
    image: np.ndarray,
    label: np.ndarray,
    pixel_mm: tuple[float, float],
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


# --------------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------------


def _legend_labels(views: Sequence[PlaneView]) -> list[int]:
    present: set[int] = set()
    for view in views:
        present.update(int(v) for v in np.unique(view.label) if v != 0)
    ordered = [v for v in ANATOMICAL_ORDER if v in present]
    return ordered + sorted(present - set(ordered))


def draw_views(
    views: Sequence[PlaneView],
    *,
    window: str | Sequence[float] = "bone",
    title: str | None = None,
    alpha: float = OVERLAY_ALPHA,
    panel_height: float = _PANEL_HEIGHT,
    dpi: float = 100.0,
) -> Figure:
    """Draw cuts side by side: CT in a window, the label overlay, letters and a legend.

    Parameters
    ----------
    views
        The cuts, e.g. from :func:`read_views`.
    window
        CT window (see :func:`parse_window`).
    title
        Figure title.
    alpha
        Opacity of the label overlay.
    panel_height
        Height of the panels in inches (reduced when the figure would be wider than 18 in).
    dpi
        Resolution of the figure.

    Returns
    -------
    matplotlib.figure.Figure
        With an Agg canvas attached (``fig.savefig`` works without pyplot).
    """
    try:
        from matplotlib import colormaps
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch
    except ImportError as err:  # pragma: no cover - exercised without matplotlib
        raise ImportError("pictures need matplotlib: pip install matplotlib") from err

    if not views:
        raise ValueError("no view to draw")
    vmin, vmax = parse_window(window)
    labels = _legend_labels(views)
    colours = vertebra_colours()

    ratios = [w / h if h > 0 else 1.0 for w, h in (v.extent_mm for v in views)]
    per_column = max(1, int(panel_height / _LEGEND_ROW))
    n_columns = max(1, math.ceil(len(labels) / per_column))
    legend_width = n_columns * _LEGEND_COLUMN + 0.3
    fixed = len(views) * 2 * _SIDE + legend_width
    height = panel_height
    if fixed + height * sum(ratios) > _MAX_WIDTH:
        height = max(1.0, (_MAX_WIDTH - fixed) / sum(ratios))
        per_column = max(1, int(height / _LEGEND_ROW))
        n_columns = max(1, math.ceil(len(labels) / per_column))
        legend_width = n_columns * _LEGEND_COLUMN + 0.3
        fixed = len(views) * 2 * _SIDE + legend_width
    fig_w = fixed + height * sum(ratios)
    fig_h = _TOP + height + _BOTTOM
    fig = Figure(figsize=(fig_w, fig_h), dpi=dpi, facecolor="white")
    FigureCanvasAgg(fig)

    cmap = colormaps["gray"].with_extremes(bad="black")
    left = 0.0
    for view, ratio in zip(views, ratios, strict=True):
        width = height * ratio
        left += _SIDE
        ax = fig.add_axes((left / fig_w, _BOTTOM / fig_h, width / fig_w, height / fig_h))
        left += width + _SIDE
        w_mm, h_mm = view.extent_mm
        extent = (0.0, w_mm, h_mm, 0.0)
        ax.imshow(
            view.image,
            cmap=cmap,
            vmin=vmin,
            vmax=vmax,
            interpolation="nearest",
            extent=extent,
        )
        ax.imshow(
            label_overlay(view.label, alpha),
            interpolation="nearest",
            extent=extent,
        )
        ax.set_aspect("equal", adjustable="box")
        ax.set_axis_off()
        ax.set_title(
            f"{view.plane}  {view.axis} = {view.index}  ({view.position_mm:.1f} mm)",
            fontsize=9,
            pad=16,
        )
        l_letter, r_letter, t_letter, b_letter = view.letters
        style: dict[str, Any] = {"transform": ax.transAxes, "fontsize": 11, "weight": "bold"}
        ax.text(-0.02, 0.5, l_letter, ha="right", va="center", **style)
        ax.text(1.02, 0.5, r_letter, ha="left", va="center", **style)
        ax.text(0.5, 1.01, t_letter, ha="center", va="bottom", **style)
        ax.text(0.5, -0.01, b_letter, ha="center", va="top", **style)

    anchor = (left + 0.15) / fig_w
    if labels:
        handles = [
            Patch(
                facecolor=colours.get(v, OTHER_LABEL_COLOUR),
                edgecolor="none",
                label=vertebra_name(v),
            )
            for v in labels
        ]
        fig.legend(
            handles=handles,
            loc="center left",
            bbox_to_anchor=(anchor, (_BOTTOM + height / 2) / fig_h),
            ncol=n_columns,
            fontsize=8,
            frameon=False,
            title="vertebrae",
            title_fontsize=9,
            handlelength=1.2,
            columnspacing=0.8,
        )
    else:
        fig.text(anchor, 0.5, "no vertebra\nin these cuts", fontsize=8, va="center")
    if title:
        fig.suptitle(title, fontsize=11, y=1.0 - 0.08 / fig_h, va="top")
    return fig


def plot_case(
    location: str | os.PathLike | Store,
    case_id: str,
    *,
    z: int | None = None,
    y: int | None = None,
    x: int | None = None,
    plane: str | Sequence[str] = "all",
    window: str | Sequence[float] = "bone",
    storage_options: dict[str, Any] | None = None,
    alpha: float = OVERLAY_ALPHA,
    panel_height: float = _PANEL_HEIGHT,
    dpi: float = 100.0,
) -> Figure:
    """Draw a quick look of one case: CT planes, the vertebra labels and a legend.

    Pixels are drawn to scale (spacing-correct aspect), in the radiological convention,
    with orientation letters (R/L, A/P, S/I) on the edges; see the module docstring.

    Parameters
    ----------
    location
        Path or fsspec URL of the store (or a zarr store).
    case_id
        The case.
    z, y, x
        Stored indices of the axial, coronal and sagittal cuts (default: the middle of the
        labelled slices, through the vertebral bodies, the mid-sagittal plane; see
        :func:`read_views`).
    plane
        ``"all"`` (axial, coronal, sagittal side by side), ``"axial"``, ``"coronal"``,
        ``"sagittal"``, or a sequence of them.
    window
        ``"bone"`` (W 1800, L 400), ``"soft"`` (W 400, L 40), ``"W,L"`` or ``(W, L)``.
    storage_options
        fsspec options for a URL.
    alpha
        Opacity of the label overlay.
    panel_height
        Height of the panels, inches.
    dpi
        Resolution of the figure.

    Returns
    -------
    matplotlib.figure.Figure
        Not registered with pyplot; display it in a notebook, or ``fig.savefig(path)``.
    """
    vmin, vmax = parse_window(window)  # fail before reading
    views = read_views(
        location, case_id, z=z, y=y, x=x, plane=plane, storage_options=storage_options
    )
    title = f"{case_id}   window [{vmin:g}, {vmax:g}] HU"
    return draw_views(
        views, window=window, title=title, alpha=alpha, panel_height=panel_height, dpi=dpi
    )


def save_case_png(
    location: str | os.PathLike | Store,
    case_id: str,
    out: str | os.PathLike,
    *,
    z: int | None = None,
    y: int | None = None,
    x: int | None = None,
    plane: str | Sequence[str] = "all",
    window: str | Sequence[float] = "bone",
    storage_options: dict[str, Any] | None = None,
    alpha: float = OVERLAY_ALPHA,
    panel_height: float = _PANEL_HEIGHT,
    dpi: float = 100.0,
) -> Path:
    """Write :func:`plot_case`'s picture as a PNG (parent folders are created).

    Parameters
    ----------
    location, case_id, z, y, x, plane, window, storage_options, alpha, panel_height, dpi
        As for :func:`plot_case`.
    out
        The PNG file to write.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    fig = plot_case(
        location,
        case_id,
        z=z,
        y=y,
        x=x,
        plane=plane,
        window=window,
        storage_options=storage_options,
        alpha=alpha,
        panel_height=panel_height,
        dpi=dpi,
    )
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, format="png", dpi=dpi, facecolor=fig.get_facecolor())
    return target
