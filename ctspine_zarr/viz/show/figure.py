"""Drawing cuts into a figure: panels to scale, the CT window, the label overlay, the legend.

:func:`draw_views` lays the panels out side by side at their physical aspect ratio, with the
orientation letters on their edges and a legend of the vertebrae shown. Figures are built
with :class:`matplotlib.figure.Figure` and the Agg canvas directly (no ``pyplot``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ...vertebrae import OTHER_LABEL_COLOUR, vertebra_colours, vertebra_name
from .layout import BOTTOM, PANEL_HEIGHT, SIDE, Layout, legend_labels
from .views import PlaneView
from .window import OVERLAY_ALPHA, label_overlay, parse_window

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.colors import Colormap
    from matplotlib.figure import Figure

__all__ = ["PANEL_HEIGHT", "draw_views"]


def draw_views(
    views: Sequence[PlaneView],
    *,
    window: str | Sequence[float] = "bone",
    title: str | None = None,
    alpha: float = OVERLAY_ALPHA,
    panel_height: float = PANEL_HEIGHT,
    dpi: float = 100.0,
) -> Figure:
    """Draw cuts side by side: CT in a window, the label overlay, letters and a legend.

    Parameters
    ----------
    views
        The cuts, e.g. from :func:`ctspine_zarr.viz.show.read_views`.
    window
        CT window (see :func:`ctspine_zarr.viz.show.parse_window`).
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
    except ImportError as err:  # pragma: no cover - exercised without matplotlib
        raise ImportError("pictures need matplotlib: pip install matplotlib") from err

    if not views:
        raise ValueError("no view to draw")
    vmin, vmax = parse_window(window)
    labels = legend_labels(views)
    layout = Layout.fit(views, len(labels), panel_height)
    fig = Figure(figsize=(layout.width, layout.height), dpi=dpi, facecolor="white")
    FigureCanvasAgg(fig)

    cmap = colormaps["gray"].with_extremes(bad="black")
    left = 0.0
    for view, ratio in zip(views, layout.ratios, strict=True):
        width = layout.panel_height * ratio
        left += SIDE
        rect = (
            left / layout.width,
            BOTTOM / layout.height,
            width / layout.width,
            layout.panel_height / layout.height,
        )
        _draw_panel(fig.add_axes(rect), view, cmap, (vmin, vmax), alpha)
        left += width + SIDE

    _draw_legend(fig, labels, (left + 0.15) / layout.width, layout)
    if title:
        fig.suptitle(title, fontsize=11, y=1.0 - 0.08 / layout.height, va="top")
    return fig


def _draw_panel(
    ax: Axes, view: PlaneView, cmap: Colormap, hu_range: tuple[float, float], alpha: float
) -> None:
    """One cut to scale: the CT in grey, the label overlay, the title and the letters."""
    w_mm, h_mm = view.extent_mm
    extent = (0.0, w_mm, h_mm, 0.0)
    ax.imshow(
        view.image,
        cmap=cmap,
        vmin=hu_range[0],
        vmax=hu_range[1],
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
    source = f"  [{view.downsample}x level]" if view.downsample > 1 else ""
    ax.set_title(
        f"{view.plane}  {view.axis} = {view.index}  ({view.position_mm:.1f} mm){source}",
        fontsize=9,
        pad=16,
    )
    l_letter, r_letter, t_letter, b_letter = view.letters
    style: dict[str, Any] = {"transform": ax.transAxes, "fontsize": 11, "weight": "bold"}
    ax.text(-0.02, 0.5, l_letter, ha="right", va="center", **style)
    ax.text(1.02, 0.5, r_letter, ha="left", va="center", **style)
    ax.text(0.5, 1.01, t_letter, ha="center", va="bottom", **style)
    ax.text(0.5, -0.01, b_letter, ha="center", va="top", **style)


def _draw_legend(fig: Figure, labels: list[int], anchor: float, layout: Layout) -> None:
    """The vertebrae shown, in their colours, left-aligned at ``anchor`` (figure fraction)."""
    from matplotlib.patches import Patch

    if not labels:
        fig.text(anchor, 0.5, "no vertebra\nin these cuts", fontsize=8, va="center")
        return
    colours = vertebra_colours()
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
        bbox_to_anchor=(anchor, (BOTTOM + layout.panel_height / 2) / layout.height),
        ncol=layout.legend_columns,
        fontsize=8,
        frameon=False,
        title="vertebrae",
        title_fontsize=9,
        handlelength=1.2,
        columnspacing=0.8,
    )
