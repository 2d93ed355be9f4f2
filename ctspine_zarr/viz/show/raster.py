"""A quick look drawn straight into pixels with Pillow: the fast path of ``show`` PNGs.

:func:`render_views` draws the layout of :mod:`.layout` (the panels of
:func:`ctspine_zarr.viz.show.draw_views`, their titles, orientation letters and the legend)
into an RGB image without matplotlib's figure machinery: each cut becomes its 8-bit RGB
picture (:func:`ctspine_zarr.viz.show.compose_rgb`), scaled to its physical size by nearest
neighbour, and the text is set in matplotlib's bundled DejaVu Sans. Drawing a quick look this
way takes a few milliseconds instead of the ~100 ms of a matplotlib figure (measured in
``docs/performance.md``), so a quick look from a downsampled level costs about what its
reads cost.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Final

from ...vertebrae import OTHER_LABEL_COLOUR, vertebra_colours, vertebra_name
from .layout import (
    LEGEND_COLUMN,
    LEGEND_ROW,
    PANEL_HEIGHT,
    SIDE,
    TOP,
    Layout,
    legend_labels,
)
from .views import PlaneView
from .window import OVERLAY_ALPHA, compose_rgb, parse_window

if TYPE_CHECKING:
    from PIL import ImageDraw
    from PIL.Image import Image
    from PIL.ImageFont import FreeTypeFont, ImageFont

__all__ = ["Picture", "render_views", "save_picture"]

_POINT: Final = 1.0 / 72.0  # inches
_TEXT: Final = (0, 0, 0)


@dataclass(frozen=True)
class Picture:
    """A rendered quick look.

    Attributes
    ----------
    image
        The RGB picture (a :class:`PIL.Image.Image`).
    panels
        Pixel box ``(left, top, right, bottom)`` of each cut in ``image``, right and bottom
        exclusive, in the order of the views.
    """

    image: Image
    panels: tuple[tuple[int, int, int, int], ...]


def render_views(
    views: Sequence[PlaneView],
    *,
    window: str | Sequence[float] = "bone",
    title: str | None = None,
    alpha: float = OVERLAY_ALPHA,
    panel_height: float = PANEL_HEIGHT,
    dpi: float = 100.0,
) -> Picture:
    """Draw cuts side by side into pixels: the same picture as :func:`draw_views`, faster.

    Parameters
    ----------
    views
        The cuts, e.g. from :func:`ctspine_zarr.viz.show.read_views`.
    window
        CT window (see :func:`ctspine_zarr.viz.show.parse_window`).
    title
        Title above the panels.
    alpha
        Opacity of the label overlay.
    panel_height
        Height of the panels in inches (reduced when the picture would be wider than 18 in).
    dpi
        Pixels per inch.

    Returns
    -------
    Picture
        The image and where each cut sits in it.
    """
    from PIL import Image as PILImage
    from PIL import ImageDraw

    if not views:
        raise ValueError("no view to draw")
    hu_range = parse_window(window)
    labels = legend_labels(views)
    layout = Layout.fit(views, len(labels), panel_height)
    size = (int(layout.width * dpi), int(layout.height * dpi))  # as matplotlib sizes a canvas
    canvas = PILImage.new("RGB", size, "white")
    draw = ImageDraw.Draw(canvas)

    top = round(TOP * dpi)
    height = max(1, round(layout.panel_height * dpi))
    panels = []
    left = 0.0
    for view, ratio in zip(views, layout.ratios, strict=True):
        left += SIDE
        x0 = round(left * dpi)
        x1 = max(x0 + 1, round((left + layout.panel_height * ratio) * dpi))
        cut = PILImage.fromarray(compose_rgb(view.image, view.label, hu_range, alpha), "RGB")
        canvas.paste(cut.resize((x1 - x0, height), PILImage.Resampling.NEAREST), (x0, top))
        panels.append((x0, top, x1, top + height))
        _panel_text(draw, view, panels[-1], dpi)
        left += layout.panel_height * ratio + SIDE

    _legend(draw, labels, round((left + 0.15) * dpi), layout, dpi)
    if title:
        draw.text(
            (canvas.width / 2, 0.08 * dpi), title, font=_font(11, dpi), fill=_TEXT, anchor="mt"
        )
    return Picture(image=canvas, panels=tuple(panels))


def save_picture(picture: Picture, out: str | os.PathLike) -> Path:
    """Write a picture as a PNG (fast zlib level; parent folders are created).

    Parameters
    ----------
    picture
        From :func:`render_views`.
    out
        The PNG file to write.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    picture.image.save(target, format="PNG", compress_level=1)
    return target


def _panel_text(
    draw: ImageDraw.ImageDraw, view: PlaneView, box: tuple[int, int, int, int], dpi: float
) -> None:
    """The panel's title above it and its orientation letters on its four edges."""
    x0, y0, x1, y1 = box
    middle_x, middle_y = (x0 + x1) / 2, (y0 + y1) / 2
    gap = 0.02 * (x1 - x0)
    source = f"  [{view.downsample}x level]" if view.downsample > 1 else ""
    caption = f"{view.plane}  {view.axis} = {view.index}  ({view.position_mm:.1f} mm){source}"
    draw.text(
        (middle_x, y0 - 16 * _POINT * dpi), caption, font=_font(9, dpi), fill=_TEXT, anchor="md"
    )
    letters = _font(11, dpi, bold=True)
    left, right, top, bottom = view.letters
    draw.text((x0 - gap, middle_y), left, font=letters, fill=_TEXT, anchor="rm")
    draw.text((x1 + gap, middle_y), right, font=letters, fill=_TEXT, anchor="lm")
    draw.text((middle_x, y0 - 2), top, font=letters, fill=_TEXT, anchor="md")
    draw.text((middle_x, y1 + 2), bottom, font=letters, fill=_TEXT, anchor="ma")


def _legend(
    draw: ImageDraw.ImageDraw, labels: list[int], x: int, layout: Layout, dpi: float
) -> None:
    """The vertebrae shown, a colour swatch and a name each, in columns, centred vertically."""
    middle = (TOP + layout.panel_height / 2) * dpi
    if not labels:
        text = "no vertebra\nin these cuts"
        draw.multiline_text((x, middle), text, font=_font(8, dpi), fill=_TEXT, anchor="lm")
        return
    colours = vertebra_colours()
    rows = min(len(labels), layout.rows_per_column)
    row, column = LEGEND_ROW * dpi, LEGEND_COLUMN * dpi
    top = middle - (rows + 1) * row / 2
    draw.text((x, top + row / 2), "vertebrae", font=_font(9, dpi), fill=_TEXT, anchor="lm")
    swatch = round(0.7 * row)
    for i, value in enumerate(labels):
        left = x + (i // rows) * column
        y = top + (1 + i % rows) * row + row / 2
        box = (
            round(left),
            round(y - swatch / 2),
            round(left) + swatch - 1,
            round(y + swatch / 2) - 1,
        )
        draw.rectangle(box, fill=colours.get(value, OTHER_LABEL_COLOUR))
        draw.text(
            (left + swatch + 0.4 * swatch, y),
            vertebra_name(value),
            font=_font(8, dpi),
            fill=_TEXT,
            anchor="lm",
        )


@cache
def _font(points: float, dpi: float, bold: bool = False) -> FreeTypeFont | ImageFont:
    """DejaVu Sans (bundled with matplotlib) at ``points``; Pillow's own font without it."""
    from PIL import ImageFont

    size = max(1, round(points * _POINT * dpi))
    try:
        import matplotlib

        name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
        return ImageFont.truetype(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name, size)
    except (ImportError, OSError):  # pragma: no cover - matplotlib is a dependency
        return ImageFont.load_default(size)
