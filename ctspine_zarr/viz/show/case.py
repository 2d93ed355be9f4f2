"""A quick look of one case of a store: :func:`plot_case` draws it, :func:`save_case_png` saves it.

Both read the cuts (:func:`ctspine_zarr.viz.show.read_views`) and draw them
(:func:`ctspine_zarr.viz.show.draw_views`) with the case id and the window in the title.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zarr.abc.store import Store

from .figure import PANEL_HEIGHT, Mark, draw_views
from .views import read_views
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
    vmin, vmax = parse_window(window)  # fail before reading
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
    title = f"{case_id}   window [{vmin:g}, {vmax:g}] HU"
    shown: dict[str, Any] = {"marks": marks, "names": names, "notes": notes}
    return draw_views(
        views, window=window, title=title, alpha=alpha, panel_height=panel_height, dpi=dpi, **shown
    )


def save_case_png(
    location: str | os.PathLike | Store, case_id: str, out: str | os.PathLike, **options: Any
) -> Path:
    """Write :func:`plot_case`'s picture as a PNG (parent folders are created).

    Parameters
    ----------
    location, case_id
        As for :func:`plot_case`.
    out
        The PNG file to write.
    **options
        :func:`plot_case`'s keyword arguments (``z``, ``y``, ``x``, ``plane``, ``window``,
        ``level``, ``storage_options``, ``alpha``, ``panel_height``, ``dpi``, ``marks``,
        ``names``, ``notes``).

    Returns
    -------
    pathlib.Path
        The written file.
    """
    fig = plot_case(location, case_id, **options)
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, format="png", dpi=fig.dpi, facecolor=fig.get_facecolor())
    return target
