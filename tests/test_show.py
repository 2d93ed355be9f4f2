"""Quick-look pictures: physical aspect, window, label colours, orientation letters, reads."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

if importlib.util.find_spec("matplotlib") is None and not os.environ.get("CI"):
    pytest.skip("pictures need matplotlib", allow_module_level=True)  # CI: an import error

from matplotlib import colormaps  # noqa: E402
from matplotlib.colors import Normalize, to_rgb  # noqa: E402
from matplotlib.image import imread  # noqa: E402

import ctspine_zarr  # noqa: E402
from ctspine_zarr.testing.synthetic import write_case, write_split_file  # noqa: E402
from ctspine_zarr.vertebrae import VERTEBRA_NAMES  # noqa: E402
from ctspine_zarr.viz.plots import vertebra_colours  # noqa: E402
from ctspine_zarr.viz.show import (  # noqa: E402
    OVERLAY_ALPHA,
    PLANES,
    PlaneView,
    label_overlay,
    parse_window,
    plot_case,
    read_views,
    save_case_png,
    volume_views,
)


def _most_anisotropic(store: Path) -> str:
    ds = ctspine_zarr.open(store)
    ratio = ds["spacing_z"].values / ds["spacing_x"].values
    return str(ds["case"].values[int(np.argmax(ratio))])


def test_parse_window() -> None:
    assert parse_window("bone") == (-500.0, 1300.0)
    assert parse_window("soft") == (-160.0, 240.0)
    assert parse_window("1500,-600") == (-1350.0, 150.0)
    assert parse_window((80, 40)) == (0.0, 80.0)
    for bad in ("lung", "1500", "0,40", "-10,40", "a,b"):
        with pytest.raises(ValueError, match="window"):
            parse_window(bad)


def test_overlay_colours_exactly_the_mask() -> None:
    label = np.zeros((6, 7), dtype=np.uint8)
    label[1, 2], label[3, 4], label[5, 6], label[0, 0] = 1, 22, 28, 200
    rgba = label_overlay(label)
    assert rgba.shape == (6, 7, 4)
    np.testing.assert_array_equal(rgba[..., 3] > 0, label > 0)
    np.testing.assert_allclose(rgba[label > 0, 3], OVERLAY_ALPHA)
    colours = vertebra_colours()
    for value in (1, 22, 28):
        (r, c) = np.argwhere(label == value)[0]
        np.testing.assert_allclose(rgba[r, c, :3], to_rgb(colours[value]))
    # a value outside 1..28 is drawn (it is in the mask) but in no vertebra's colour
    assert not any(np.allclose(rgba[0, 0, :3], to_rgb(c)) for c in colours.values())


def test_vertebra_colours_are_distinct() -> None:
    colours = vertebra_colours()
    assert sorted(colours) == list(range(1, 29))
    assert len({to_rgb(c) for c in colours.values()}) == 28


def _asymmetric_store(root: Path, variant: str) -> tuple[Path, np.ndarray, np.ndarray]:
    """A case whose HU encode where a voxel is: +100 right half, +200 anterior, +400 superior."""
    nz, ny, nx = 11, 13, 15
    z, y, x = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    # RAS voxel order: x grows to the patient's right, y to anterior, z to superior
    hu = (100 * (x > nx // 2) + 200 * (y > ny // 2) + 400 * (z > nz // 2)).astype(np.int16)
    label = np.zeros(hu.shape, dtype=np.uint8)
    label[2:9, 3:10, 4:11] = 22
    raw = root / "raw"
    case = write_case(
        raw,
        "asym",
        "COLONOG",
        image_zyx=hu,
        label_zyx=label,
        spacing_zyx=(3.0, 0.8, 0.6),
        variant=variant,
    )
    write_split_file(raw / "metadata" / "data_split.txt", {"trainset": [case.image_path.name]})
    store = root / "s.zarr"
    report = ctspine_zarr.ingest(raw, store, workers=1, scheduler="sync", progress=False)
    assert report.ok, report.summary()
    return store, hu, label


#: letter -> (bit of ``hu // 100``, its value on that edge)
_MEANING = {"R": (0, 1), "L": (0, 0), "A": (1, 1), "P": (1, 0), "S": (2, 1), "I": (2, 0)}


def _edges(view: PlaneView) -> dict[str, np.ndarray]:
    image = view.image.astype(np.int64)
    left, right, top, bottom = view.letters
    return {left: image[:, 0], right: image[:, -1], top: image[0, :], bottom: image[-1, :]}


@pytest.mark.parametrize("variant", ["lps-uint16-inter", "sagittal"])
def test_orientation_letters_match_the_anatomy(tmp_path: Path, variant: str) -> None:
    store, hu, label = _asymmetric_store(tmp_path, variant)
    views = read_views(store, "asym", z=5, y=6, x=7)
    assert [v.plane for v in views] == list(PLANES)
    assert [v.letters for v in views] == [
        ("R", "L", "A", "P"),
        ("R", "L", "S", "I"),
        ("A", "P", "S", "I"),
    ]
    for view in views:
        for letter, pixels in _edges(view).items():
            bit, value = _MEANING[letter]
            assert np.all((pixels // 100 >> bit) & 1 == value), (view.plane, letter, pixels)
    axial, coronal, sagittal = views
    # the cuts are the stored ones, both axes reversed
    np.testing.assert_array_equal(axial.image, hu[5][::-1, ::-1])
    np.testing.assert_array_equal(coronal.label, label[:, 6, :][::-1, ::-1])
    np.testing.assert_array_equal(sagittal.image, hu[:, :, 7][::-1, ::-1])
    assert axial.pixel_mm == pytest.approx((0.8, 0.6))
    assert coronal.pixel_mm == pytest.approx((3.0, 0.6))
    assert sagittal.pixel_mm == pytest.approx((3.0, 0.8))


def test_volume_views_of_a_case_and_of_a_crop(tmp_path: Path) -> None:
    store, hu, label = _asymmetric_store(tmp_path, "sagittal")
    stored = read_views(store, "asym", z=5, y=6, x=7)
    volume = ctspine_zarr.open(store).ctspine.volume("asym")
    for ours, theirs in zip(volume_views(volume, z=5, y=6, x=7), stored, strict=True):
        np.testing.assert_array_equal(ours.image, theirs.image)
        np.testing.assert_array_equal(ours.label, theirs.label)
        assert (ours.plane, ours.index, ours.letters) == (
            theirs.plane,
            theirs.index,
            theirs.letters,
        )
        assert ours.position_mm == pytest.approx(theirs.position_mm)
        assert ours.pixel_mm == pytest.approx(theirs.pixel_mm)
    crop = volume.isel(z=slice(2, 9), y=slice(3, 10), x=slice(4, 11))
    axial, coronal, sagittal = volume_views(crop, z=3, y=0, x=6)
    assert (axial.index, coronal.index, sagittal.index) == (5, 3, 10)  # indices in the case
    np.testing.assert_array_equal(sagittal.image, hu[2:9, 3:10, 10][::-1, ::-1])
    with pytest.raises(IndexError, match="x index"):
        volume_views(crop, x=7)


def _render(store: Path, case: str, tmp_path: Path, **kwargs):  # type: ignore[no-untyped-def]
    fig = plot_case(store, case, **kwargs)
    png = tmp_path / "case.png"
    fig.savefig(png, dpi=fig.dpi)
    return fig, imread(png)


def test_panels_follow_the_physical_extent(store: Path, tmp_path: Path) -> None:
    case = _most_anisotropic(store)
    views = read_views(store, case)
    fig, pixels = _render(store, case, tmp_path)
    width, height = fig.canvas.get_width_height()
    assert pixels.shape[:2] == (height, width)
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 3
    for ax, view in zip(panels, views, strict=True):
        box = ax.get_window_extent()
        w_mm, h_mm = view.extent_mm
        assert box.width / box.height == pytest.approx(w_mm / h_mm, rel=0.02), view.plane
        if view.plane != "axial":  # anisotropic: not the voxel-count ratio
            rows, cols = view.image.shape
            assert abs(box.width / box.height - cols / rows) > 0.2 * (cols / rows)
    # the three panels share their height, so their widths follow the physical widths
    boxes = [ax.get_window_extent() for ax in panels]
    assert max(b.height for b in boxes) - min(b.height for b in boxes) < 1.5


def _expected_rgb(view: PlaneView, vmin: float, vmax: float) -> np.ndarray:
    grey = colormaps["gray"](Normalize(vmin, vmax)(view.image.astype(np.float64)))[..., :3]
    overlay = label_overlay(view.label)
    alpha = overlay[..., 3:]
    return alpha * overlay[..., :3] + (1 - alpha) * grey


@pytest.mark.parametrize("plane", ["axial", "coronal", "sagittal"])
def test_label_colours_exactly_where_the_mask_is(store: Path, tmp_path: Path, plane: str) -> None:
    case = _most_anisotropic(store)
    (view,) = read_views(store, case, plane=plane)
    assert view.label.any()
    fig, pixels = _render(store, case, tmp_path, plane=plane, window="soft")
    vmin, vmax = parse_window("soft")
    (ax,) = [ax for ax in fig.axes if ax.images]
    box = ax.get_window_extent()
    rows, cols = view.image.shape
    height = pixels.shape[0]
    # centres of the PNG pixels inside the panel, in data pixels (row 0 at the top)
    px = np.arange(int(np.ceil(box.x0)), int(np.floor(box.x1)))
    py = np.arange(int(np.ceil(height - box.y1)), int(np.floor(height - box.y0)))
    fx = (px + 0.5 - box.x0) / box.width * cols
    fy = (py + 0.5 - (height - box.y1)) / box.height * rows
    # only pixels well inside one data pixel (nearest-neighbour edges may round either way)
    keep_x = (fx % 1 > 0.25) & (fx % 1 < 0.75)
    keep_y = (fy % 1 > 0.25) & (fy % 1 < 0.75)
    assert keep_x.sum() >= cols and keep_y.sum() >= rows  # every data pixel is sampled
    grid = np.ix_(py[keep_y], px[keep_x])
    seen = pixels[grid][..., :3].astype(np.float64)
    data = np.ix_(fy[keep_y].astype(int), fx[keep_x].astype(int))
    mask = view.label[data] > 0

    # the exact colour of every sampled pixel: CT grey, blended with its vertebra's colour
    np.testing.assert_allclose(seen, _expected_rgb(view, vmin, vmax)[data], atol=3.5 / 255)
    # and, independently of the blend: coloured pixels are the mask, grey ones the rest
    chroma = seen.max(axis=-1) - seen.min(axis=-1)
    np.testing.assert_array_equal(chroma > 6 / 255, mask)
    # each labelled pixel is nearest to its own vertebra's colour among all 28
    colours = vertebra_colours()
    grey = _expected_rgb(replace(view, label=0 * view.label), vmin, vmax)
    grey = grey[data][mask]
    candidates = np.array([to_rgb(colours[v]) for v in range(1, 29)])
    blended = OVERLAY_ALPHA * candidates[None] + (1 - OVERLAY_ALPHA) * grey[:, None]
    nearest = np.argmin(((seen[mask][:, None] - blended) ** 2).sum(-1), axis=1) + 1
    np.testing.assert_array_equal(nearest, view.label[data][mask])


def test_legend_lists_the_vertebrae_shown(store: Path) -> None:
    case = _most_anisotropic(store)
    views = read_views(store, case)
    shown = sorted(set().union(*(set(np.unique(v.label)) for v in views)) - {0})
    fig = plot_case(store, case)
    (legend,) = fig.legends
    names = [t.get_text() for t in legend.get_texts()]
    assert sorted(names) == sorted(VERTEBRA_NAMES[int(v)] for v in shown)
    by_name = {VERTEBRA_NAMES[v]: c for v, c in vertebra_colours().items()}
    for handle, name in zip(legend.legend_handles, names, strict=True):
        assert handle is not None
        np.testing.assert_allclose(handle.get_facecolor()[:3], to_rgb(by_name[name]))


def test_default_cut_is_inside_the_labelled_range(store: Path) -> None:
    ds = ctspine_zarr.open(store)
    for case in ds["case"].values:
        case = str(case)
        views = read_views(store, case)
        present = ds["has_vertebra"].sel(case=case).values
        z0 = ds["bbox_start"].sel(case=case, axis="z").values[present].min()
        z1 = ds["bbox_stop"].sel(case=case, axis="z").values[present].max()
        assert z0 <= views[0].index < z1
        assert any(v.label.any() for v in views)


def test_axial_picture_reads_one_slice(counting_store, store: Path) -> None:  # type: ignore[no-untyped-def]
    case = str(ctspine_zarr.open(store)["case"].values[0])
    read_views(counting_store, case, plane="axial", z=3)  # opens the case (metadata)
    counting_store.reads.clear()
    read_views(counting_store, case, plane="axial", z=3)
    chunk_reads = [r for r in counting_store.reads if "/c/" in r[0]]
    assert {r[0].rsplit("/c/", 1)[0].rsplit("/", 1)[1] for r in chunk_reads} == {"image", "label"}
    assert {r[0].rsplit("/c/", 1)[1] for r in chunk_reads} == {"0/0/0"}
    assert all(r[1] is not None for r in chunk_reads)  # byte ranges of a shard, never whole


def test_save_png_and_errors(store: Path, tmp_path: Path) -> None:
    case = str(ctspine_zarr.open(store)["case"].values[0])
    out = save_case_png(store, case, tmp_path / "deep" / "q.png", plane="sagittal", window="soft")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(IndexError, match="z index"):
        plot_case(store, case, z=10_000)
    with pytest.raises(ValueError, match="plane"):
        plot_case(store, case, plane="oblique")
    with pytest.raises(ctspine_zarr.CaseNotFoundError):
        plot_case(store, "no-such-case")


def test_cli_show_writes_the_png(store: Path, tmp_path: Path) -> None:
    from ctspine_zarr.cli import main

    case = _most_anisotropic(store)
    out = tmp_path / "show.png"
    argv = ["show", str(store), case, "--z", "3", "--plane", "coronal", "--window", "400,40"]
    assert main([*argv, str(out)]) == 0
    pixels = imread(out)
    fig = plot_case(store, case, z=3, plane="coronal", window=(400, 40))
    width, height = fig.canvas.get_width_height()
    assert pixels.shape[:2] == (height, width)
    assert main(["show", str(store), case, "--window", "wide", str(out)]) == 2
    assert main(["show", str(store), "no-such-case", str(out)]) == 2


def test_cli_show_takes_the_output_last_and_still_the_old_out_option(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from ctspine_zarr.cli import main

    case = _most_anisotropic(store)
    old = tmp_path / "old.png"
    assert main(["show", str(store), case, "--plane", "axial", "--out", str(old)]) == 0
    assert imread(old).shape[2] in (3, 4)
    capsys.readouterr()
    assert main(["show", str(store), case]) == 2
    assert "ctspine-zarr show: error: give the PNG file to write" in capsys.readouterr().err
    assert main(["show", str(store), case, str(tmp_path / "a.png"), "--out", str(old)]) == 2
    assert "error: two output paths" in capsys.readouterr().err
    assert not (tmp_path / "a.png").exists()


def test_accessor_plot_is_plot_case(store: Path) -> None:
    from matplotlib.figure import Figure

    ds = ctspine_zarr.open(store)
    case = str(ds["case"].values[0])
    fig = ds.ctspine.plot(case, plane="axial", z=2, window="soft")
    assert isinstance(fig, Figure)
    (ax,) = [ax for ax in fig.axes if ax.images]
    (view,) = read_views(store, case, plane="axial", z=2)
    np.testing.assert_array_equal(ax.images[0].get_array(), view.image)
    np.testing.assert_array_equal(ax.images[1].get_array(), label_overlay(view.label))
    assert ax.images[0].get_clim() == parse_window("soft")
    with pytest.raises(ctspine_zarr.CaseNotFoundError):
        ds.ctspine.plot("no-such-case")
