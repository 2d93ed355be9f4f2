"""Drawing cuts into a figure: panels to scale, the CT window, the label overlay, the legend.

:func:`draw_views` lays the panels out side by side at their physical aspect ratio, with the
orientation letters on their edges and a legend of the vertebrae shown. Figures are built
with :class:`matplotlib.figure.Figure` and the Agg canvas directly (no ``pyplot``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from ...vertebrae import OTHER_LABEL_COLOUR, vertebra_colours, vertebra_name
from .layout import BOTTOM, NOTE_ROW, NOTES_WIDTH, PANEL_HEIGHT, SIDE, Layout, legend_labels
from .views import PlaneView
from .window import OVERLAY_ALPHA, label_overlay, parse_window

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.colors import Colormap
    from matplotlib.figure import Figure

__all__ = ["PANEL_HEIGHT", "Mark", "draw_views"]

_MARK_COLOUR: Final = "#e00000"


@dataclass(frozen=True)
class Mark:
    """A problem to point at in the panels: circled where its labels show, with a text.

    Attributes
    ----------
    labels
        The label values to circle (together: one ellipse around all of them in a panel).
    text
        What to write beside the ellipse (``"gap: L3 missing"``).
    flagged
        Label values whose legend entry is marked (drawn in red, with ``!``).
    """

    labels: tuple[int, ...]
    text: str
    flagged: tuple[int, ...] = ()


def draw_views(
    views: Sequence[PlaneView],
    *,
    window: str | Sequence[float] = "bone",
    title: str | None = None,
    alpha: float = OVERLAY_ALPHA,
    panel_height: float = PANEL_HEIGHT,
    dpi: float = 100.0,
    marks: Sequence[Mark] = (),
    names: bool = False,
    notes: Sequence[str] = (),
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
    marks
        Problems to circle in red where their labels show (:class:`Mark`); their flagged
        labels are red in the legend.
    names
        Write each vertebra's name on it in every panel.
    notes
        Lines of text under the panels (wrapped to the figure's width).

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
    lines = _wrap(notes, max(layout.width, NOTES_WIDTH)) if notes else []
    if lines:
        layout = Layout.fit(views, len(labels), panel_height, len(lines))
    fig = Figure(figsize=(layout.width, layout.height), dpi=dpi, facecolor="white")
    FigureCanvasAgg(fig)

    cmap = colormaps["gray"].with_extremes(bad="black")
    left = 0.0
    for view, ratio in zip(views, layout.ratios, strict=True):
        width = layout.panel_height * ratio
        left += SIDE
        ax = fig.add_axes(_rect(layout, left, width))
        _draw_panel(ax, view, cmap, (vmin, vmax), alpha)
        if names:
            _draw_names(ax, view)
        for mark in marks:
            _draw_mark(ax, view, mark)
        left += width + SIDE

    flagged = {v for mark in marks for v in mark.flagged}
    _draw_legend(fig, labels, (left + 0.15) / layout.width, layout, flagged)
    for i, line in enumerate(lines):
        y = (layout.notes - 0.12 - i * NOTE_ROW) / layout.height
        fig.text(0.15 / layout.width, y, line, fontsize=8, va="top", family="monospace")
    if title:
        fig.suptitle(title, fontsize=11, y=1.0 - 0.08 / layout.height, va="top")
    return fig


def _rect(layout: Layout, left: float, width: float) -> tuple[float, float, float, float]:
    """The axes rectangle (figure fractions) of a panel ``width`` inches wide at ``left``."""
    bottom = (BOTTOM + layout.notes) / layout.height
    return left / layout.width, bottom, width / layout.width, layout.panel_height / layout.height


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


def _draw_legend(
    fig: Figure, labels: list[int], anchor: float, layout: Layout, flagged: set[int]
) -> None:
    """The vertebrae shown, in their colours, left-aligned at ``anchor`` (figure fraction);
    the ``flagged`` ones in red, with ``!``."""
    from matplotlib.patches import Patch

    if not labels:
        fig.text(anchor, 0.5, "no vertebra\nin these cuts", fontsize=8, va="center")
        return
    colours = vertebra_colours()
    handles = [
        Patch(
            facecolor=colours.get(v, OTHER_LABEL_COLOUR),
            edgecolor="none",
            label=vertebra_name(v) + (" !" if v in flagged else ""),
        )
        for v in labels
    ]
    legend = fig.legend(
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
    for v, text in zip(labels, legend.get_texts(), strict=True):
        if v in flagged:
            text.set_color(_MARK_COLOUR)
            text.set_fontweight("bold")


def _pixel_box(view: PlaneView, mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """``(left, top, right, bottom)`` in mm of the pixels of ``mask`` (None: no pixel)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not rows.size:
        return None
    ph, pw = view.pixel_mm
    return cols[0] * pw, rows[0] * ph, (cols[-1] + 1) * pw, (rows[-1] + 1) * ph


def _outlined() -> list[Any]:
    from matplotlib import patheffects

    return [patheffects.withStroke(linewidth=2.0, foreground="white")]


def _draw_names(ax: Axes, view: PlaneView) -> None:
    """Each vertebra's name at the centre of its pixels."""
    from matplotlib import patheffects

    ph, pw = view.pixel_mm
    for value in (int(v) for v in np.unique(view.label) if v != 0):
        rows, cols = np.nonzero(view.label == value)
        ax.text(
            (float(np.median(cols)) + 0.5) * pw,
            (float(np.median(rows)) + 0.5) * ph,
            vertebra_name(value),
            fontsize=7,
            color="white",
            ha="center",
            va="center",
            path_effects=[patheffects.withStroke(linewidth=1.5, foreground="black")],
        )


def _draw_mark(ax: Axes, view: PlaneView, mark: Mark) -> None:
    """An ellipse around the pixels of ``mark.labels``, and its text beside it."""
    from matplotlib.patches import Ellipse

    box = _pixel_box(view, np.isin(view.label, mark.labels))
    if box is None:
        return
    left, top, right, bottom = box
    pad = 0.15 * max(right - left, bottom - top) + 2.0 * max(view.pixel_mm)
    centre = ((left + right) / 2, (top + bottom) / 2)
    size = (right - left + 2 * pad, bottom - top + 2 * pad)
    ax.add_patch(Ellipse(centre, *size, fill=False, edgecolor=_MARK_COLOUR, linewidth=1.6))
    ax.text(
        centre[0] + size[0] / 2,
        centre[1],
        " " + mark.text,
        fontsize=8,
        color=_MARK_COLOUR,
        weight="bold",
        ha="left",
        va="center",
        clip_on=False,
        path_effects=_outlined(),
    )


def _wrap(notes: Sequence[str], width_in: float) -> list[str]:
    """The notes wrapped to a figure ``width_in`` inches wide (8 pt monospace)."""
    import textwrap

    columns = max(40, int((width_in - 0.5) * 72 / (8 * 0.62)))
    lines: list[str] = []
    for note in notes:
        lines += textwrap.wrap(note, columns, subsequent_indent="  ") or [""]
    return lines
