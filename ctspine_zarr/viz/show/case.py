"""A quick look of one case of a store: :func:`plot_case` draws it, :func:`save_case_png` saves it.

Both read the cuts (:func:`ctspine_zarr.viz.show.read_views`) and draw the same layout with
the case id and the window in the title: :func:`plot_case` as a matplotlib figure
(:func:`ctspine_zarr.viz.show.draw_views`, for notebooks and further drawing),
:func:`save_case_png` straight into pixels (:func:`ctspine_zarr.viz.show.render_views`,
~20 times faster to draw than a figure), unless audit marks, names or notes are asked for
(``show --audit``): those are drawn by the figure.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zarr.abc.store import Store

from .figure import Mark, draw_views
from .layout import PANEL_HEIGHT
from .raster import render_views, save_picture
from .views import PlaneView, read_views
from .window import OVERLAY_ALPHA, parse_window

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_case", "save_case_png"]


def plot_case(
    location: str | os.PathLike | Store,
    case_id: str,
    *,
    z: int | None = None,
    y: int | None = None,
    x: int | None = None,
    plane: str | Sequence[str] = "all",
    window: str | Sequence[float] = "bone",
    level: int | None = None,
    storage_options: dict[str, Any] | None = None,
    alpha: float = OVERLAY_ALPHA,
    panel_height: float = PANEL_HEIGHT,
    dpi: float = 100.0,
    marks: Sequence[Mark] = (),
    names: bool = False,
    notes: Sequence[str] = (),
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
    level
        Where the coronal and sagittal cuts come from: ``None`` (default) the case's 2x
        level when it has one, else full resolution; ``0`` full resolution; ``2`` or ``4``
        that level (see :func:`read_views`).
    storage_options
        fsspec options for a URL.
    alpha
        Opacity of the label overlay.
    panel_height
        Height of the panels, inches.
    dpi
        Resolution of the figure.
    marks, names, notes
        Passed to :func:`ctspine_zarr.viz.show.draw_views` (``show --audit``).

    Returns
    -------
    matplotlib.figure.Figure
        Not registered with pyplot; display it in a notebook, or ``fig.savefig(path)``.
    """
    views, title = _read(
        location,
        case_id,
        z=z,
        y=y,
        x=x,
        plane=plane,
        window=window,
        level=level,
        storage_options=storage_options,
    )
    shown: dict[str, Any] = {"marks": marks, "names": names, "notes": notes}
    return draw_views(
        views, window=window, title=title, alpha=alpha, panel_height=panel_height, dpi=dpi, **shown
    )


def _read(
    location: str | os.PathLike | Store,
    case_id: str,
    *,
    z: int | None,
    y: int | None,
    x: int | None,
    plane: str | Sequence[str],
    window: str | Sequence[float],
    level: int | None,
    storage_options: dict[str, Any] | None,
) -> tuple[list[PlaneView], str]:
    """The cuts and the picture's title (the window is checked before anything is read)."""
    vmin, vmax = parse_window(window)
    views = read_views(
        location,
        case_id,
        z=z,
        y=y,
        x=x,
        plane=plane,
        level=level,
        storage_options=storage_options,
    )
    return views, f"{case_id}   window [{vmin:g}, {vmax:g}] HU"


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
    level: int | None = None,
    storage_options: dict[str, Any] | None = None,
    alpha: float = OVERLAY_ALPHA,
    panel_height: float = PANEL_HEIGHT,
    dpi: float = 100.0,
    marks: Sequence[Mark] = (),
    names: bool = False,
    notes: Sequence[str] = (),
) -> Path:
    """Write :func:`plot_case`'s picture as a PNG (parent folders are created).

    The picture has :func:`plot_case`'s layout and colours but is drawn straight into
    pixels (:func:`ctspine_zarr.viz.show.render_views`), without a matplotlib figure; with
    ``marks``, ``names`` or ``notes`` (``show --audit``) it is :func:`plot_case`'s figure.

    Parameters
    ----------
    location, case_id, z, y, x, plane, window, level, storage_options, alpha, panel_height, dpi
        As for :func:`plot_case`.
    marks, names, notes
        As for :func:`plot_case`.
    out
        The PNG file to write.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    views, title = _read(
        location,
        case_id,
        z=z,
        y=y,
        x=x,
        plane=plane,
        window=window,
        level=level,
        storage_options=storage_options,
    )
    size: dict[str, Any] = {"alpha": alpha, "panel_height": panel_height, "dpi": dpi}
    if marks or names or notes:  # the audit's annotations: the matplotlib figure draws them
        fig = draw_views(
            views, window=window, title=title, marks=marks, names=names, notes=notes, **size
        )
        target = Path(out)
        target.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(target, format="png", dpi=fig.dpi, facecolor=fig.get_facecolor())
        return target
    return save_picture(render_views(views, window=window, title=title, **size), out)
