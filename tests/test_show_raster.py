"""PNG quick looks drawn with Pillow: the layout of the figure, exact colours, the legend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib import colormaps
from matplotlib.colors import Normalize, to_rgb
from PIL import Image

import ctspine_zarr
from ctspine_zarr.vertebrae import VERTEBRA_COLOURS
from ctspine_zarr.viz.show import (
    OVERLAY_ALPHA,
    PlaneView,
    compose_rgb,
    label_overlay,
    parse_window,
    plot_case,
    read_views,
    render_views,
    save_case_png,
)


def _most_anisotropic(store: Path) -> str:
    ds = ctspine_zarr.open(store)
    ratio = ds["spacing_z"].values / ds["spacing_x"].values
    return str(ds["case"].values[int(np.argmax(ratio))])


def _matplotlib_rgb(view: PlaneView, hu_range: tuple[float, float]) -> np.ndarray:
    """What imshow of the CT in matplotlib's ``gray`` and of the overlay blends to, in 0..1."""
    grey = colormaps["gray"](Normalize(*hu_range)(view.image.astype(np.float64)))[..., :3]
    overlay = label_overlay(view.label)
    alpha = overlay[..., 3:]
    return alpha * overlay[..., :3] + (1 - alpha) * grey


def test_compose_rgb_is_the_figure_blend(store: Path) -> None:
    case = _most_anisotropic(store)
    for view in read_views(store, case):
        for window in ("bone", "soft", (80, 40)):
            hu_range = parse_window(window)
            rgb = compose_rgb(view.image, view.label, hu_range)
            assert rgb.dtype == np.uint8 and rgb.shape == (*view.image.shape, 3)
            expected = _matplotlib_rgb(view, hu_range)
            np.testing.assert_allclose(rgb / 255.0, expected, atol=0.51 / 255)
            chroma = rgb.max(axis=-1).astype(int) - rgb.min(axis=-1)
            np.testing.assert_array_equal(chroma > 0, view.label > 0)


def test_compose_rgb_blends_only_labelled_pixels() -> None:
    image = np.array([[-2000, -500, 400], [1300, 5000, 0]], dtype=np.int16)
    label = np.array([[0, 22, 0], [200, 0, -3]], dtype=np.int16)
    rgb = compose_rgb(image, label, (-500.0, 1300.0))
    grey = rgb[label == 0]
    assert (grey[:, 0] == grey[:, 1]).all() and (grey[:, 1] == grey[:, 2]).all()
    np.testing.assert_array_equal(rgb[0, 0], [0, 0, 0])  # below the window: black
    np.testing.assert_array_equal(rgb[1, 1], [255, 255, 255])  # above: white
    l3 = np.array(to_rgb(VERTEBRA_COLOURS[22]))
    np.testing.assert_allclose(rgb[0, 1] / 255, OVERLAY_ALPHA * l3, atol=0.6 / 255)
    assert not (rgb[1, 0] == rgb[1, 0, 0]).all()  # 200 and -3 are labels too: coloured
    assert not (rgb[1, 2] == rgb[1, 2, 0]).all()


def test_panels_are_to_scale_and_as_wide_as_the_figure(store: Path) -> None:
    case = _most_anisotropic(store)
    views = read_views(store, case)
    picture = render_views(views)
    fig = plot_case(store, case)
    assert picture.image.size == fig.canvas.get_width_height()
    heights = {bottom - top for _, top, _, bottom in picture.panels}
    assert len(heights) == 1  # one height: the widths follow the physical widths
    for (left, top, right, bottom), view in zip(picture.panels, views, strict=True):
        w_mm, h_mm = view.extent_mm
        assert (right - left) / (bottom - top) == pytest.approx(
            w_mm / h_mm, abs=1.5 / (bottom - top)
        )
    lefts = [box[0] for box in picture.panels]
    assert lefts == sorted(lefts) and all(
        a[2] < b[0] for a, b in zip(picture.panels, picture.panels[1:], strict=False)
    )


@pytest.mark.parametrize("plane", ["axial", "coronal", "sagittal"])
def test_every_pixel_of_a_panel_is_its_cut(store: Path, tmp_path: Path, plane: str) -> None:
    case = _most_anisotropic(store)
    out = save_case_png(store, case, tmp_path / f"{plane}.png", plane=plane, window="soft")
    (view,) = read_views(store, case, plane=plane)
    assert view.label.any()
    pixels = np.asarray(Image.open(out).convert("RGB"))
    ((left, top, right, bottom),) = render_views([view], window="soft").panels
    rows, cols = view.image.shape
    # nearest neighbour: an output pixel shows the cut's pixel under its centre; compare
    # the pixels whose centre is well inside one cut pixel (edges may round either way)
    fr = (np.arange(bottom - top) + 0.5) * rows / (bottom - top)
    fc = (np.arange(right - left) + 0.5) * cols / (right - left)
    keep_r = (fr % 1 > 0.2) & (fr % 1 < 0.8)
    keep_c = (fc % 1 > 0.2) & (fc % 1 < 0.8)
    assert keep_r.sum() >= 0.5 * len(fr) and keep_c.sum() >= 0.5 * len(fc)
    rgb = compose_rgb(view.image, view.label, parse_window("soft"))
    expected = rgb[np.ix_(fr[keep_r].astype(int), fc[keep_c].astype(int))]
    seen = pixels[top:bottom, left:right][np.ix_(keep_r, keep_c)]
    np.testing.assert_array_equal(seen, expected)
    # and every row of the cut is among them
    assert len(np.unique(fr[keep_r].astype(int))) == rows or rows > bottom - top
    assert tuple(pixels[0, 0]) == (255, 255, 255)  # paper around the panels


def test_the_legend_has_a_swatch_of_every_vertebra_shown_and_no_other(
    store: Path, tmp_path: Path
) -> None:
    case = _most_anisotropic(store)
    views = read_views(store, case)
    shown = set().union(*(set(np.unique(v.label).tolist()) for v in views)) - {0}
    picture = render_views(views)
    legend = np.asarray(picture.image)[:, picture.panels[-1][2] + 20 :]
    for value, colour in VERTEBRA_COLOURS.items():
        rgb = (np.array(to_rgb(colour)) * 255).round().astype(np.uint8)
        n = int((legend == rgb).all(axis=-1).sum())
        if value in shown:
            assert n >= 36, f"no swatch of {value}"  # a filled square of >= 6x6 pixels
        else:
            assert n == 0, f"a swatch of {value}, which the cuts do not show"


def test_no_vertebra_in_the_cuts_still_draws(store: Path) -> None:
    case = _most_anisotropic(store)
    (view,) = read_views(store, case, plane="axial", z=0)
    empty = PlaneView(**{**view.__dict__, "label": np.zeros_like(view.label)})
    picture = render_views([empty], title="empty")
    pixels = np.asarray(picture.image)
    legend = pixels[:, picture.panels[0][2] + 40 :]
    assert (legend < 128).any()  # the "no vertebra" note is written
    with pytest.raises(ValueError, match="no view"):
        render_views([])
