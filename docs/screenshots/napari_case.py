"""Screenshot of one case of a ctspine store in napari: the CT with its coloured vertebrae.

What it shows: ``docs/napari-case.png``, the whole napari window with a mid-sagittal plane
through the spine of one case (the one with the most vertebrae) of a small synthetic store
(4 cases, 512x512 in-plane, 60-120 slices, seed 0: synthetic CT, not patient data). napari
opened the case group ``<store>/cases/<id>`` with the ``napari-ome-zarr`` plugin, as a
user would, and drew the image (a bone window is set here: level 400, width 1500 HU) and
the label image ``labels/vertebrae`` in the colours of its ``image-label`` metadata, the
package's :data:`ctspine_zarr.vertebrae.VERTEBRA_COLOURS`; the millimetre scale of the
OME metadata gives the true proportions. The script adds only text: the vertebra names (a
Points layer at each vertebra of the plane, its text the Labels layer's ``name`` feature,
which the plugin read from the same metadata), a caption and a scale bar.

Checks (the script exits 1 with a message when one fails): every case ingests; napari
makes exactly one Image layer (the case's ``image``: same shape, the OME scale) and one
Labels layer named ``.../vertebrae`` (napari-ome-zarr 0.10 names it
``labels/labels/vertebrae``) whose voxels equal the case's ``label`` and whose scale is the
OME scale; that layer draws every VerSe label 1-28 in its ``VERTEBRA_COLOURS`` colour and
its ``name`` feature is ``VERTEBRA_NAMES``; at least 3 vertebrae lie in the plane; the
screenshot holds grey CT pixels and a pixel of the colour of each vertebra in the plane;
the PNG is under 300 kB.

Rerun (from the repository root, as root on Debian 12; Python 3.11 or newer)::

    apt-get install -y xvfb xauth libgl1 libegl1 libxkbcommon-x11-0 libxcb-cursor0 \\
        libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libdbus-1-3 libfontconfig1
    python3 -m venv /work/napari-venv
    /work/napari-venv/bin/pip install "napari[pyqt6]" napari-ome-zarr -e .
    xvfb-run -a -s "-screen 0 1600x1200x24" \\
        /work/napari-venv/bin/python docs/screenshots/napari_case.py [--out PNG] [--workdir DIR]

Made with: napari 0.9.2, napari-ome-zarr 0.10.0, PyQt6 6.11.0 (Qt 6.11), vispy 0.17.0,
zarr 3.1.6, Python 3.11.7, Debian 12's Xvfb 21.1.7 and Mesa 22.3.6 (OpenGL 4.5, software).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "docs" / "napari-case.png"
#: Bone window: level 400 HU, width 1500 HU.
BONE_WINDOW = (-350.0, 1150.0)
MAX_BYTES = 300_000
WINDOW_SIZE = (1400, 1000)


class CheckFailed(RuntimeError):
    """A check of what napari shows failed."""


def check(condition: bool, message: str) -> None:
    """Raise :class:`CheckFailed` with ``message`` unless ``condition``."""
    if not condition:
        raise CheckFailed(message)


def make_store(workdir: Path) -> Path:
    """Write a small synthetic raw tree and ingest it; return the store path."""
    import ctspine_zarr
    from ctspine_zarr.testing.synthetic import make_raw_tree

    raw, store = workdir / "raw", workdir / "demo.zarr"
    make_raw_tree(raw, n_cases=4, shape=(512, 512), n_slices=(60, 120), seed=0)
    report = ctspine_zarr.ingest(raw, store, workers=2)
    bad = [o for o in report.outcomes if o.status != "ingested"]
    check(not bad, f"ingest failed for {[(o.case_id, o.problem) for o in bad]}")
    return store


def pick_case(store: Path) -> str:
    """The case of the store with the most vertebrae."""
    import ctspine_zarr

    ds = ctspine_zarr.open(store)
    counts = ds["has_vertebra"].sum("vertebra").values
    return str(ds["case"].values[int(np.argmax(counts))])


def hex_rgba(colour: str) -> np.ndarray:
    """``#rrggbb`` as RGBA floats in 0-1."""
    return np.array([int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)] + [1.0])


def check_layers(layers: list, case_path: Path) -> tuple:
    """Check the layers napari made from the case; return (image layer, labels layer)."""
    import zarr
    from napari.layers import Image, Labels

    from ctspine_zarr.vertebrae import VERTEBRA_COLOURS, VERTEBRA_LABELS, VERTEBRA_NAMES

    images = [layer for layer in layers if isinstance(layer, Image)]
    labels = [layer for layer in layers if isinstance(layer, Labels)]
    kinds = [type(layer).__name__ for layer in layers]
    check(len(images) == 1, f"{case_path}: expected one Image layer, napari made {kinds}")
    check(len(labels) == 1, f"{case_path}: expected one Labels layer, napari made {kinds}")
    image, label = images[0], labels[0]
    check(
        label.name.rstrip("/").split("/")[-1] == "vertebrae",
        f"{case_path}: the Labels layer is named {label.name!r}, not .../vertebrae",
    )

    group = zarr.open_group(str(case_path), mode="r")
    ome = group.attrs["ome"]["multiscales"][0]["datasets"][0]["coordinateTransformations"]
    scale = next(t["scale"] for t in ome if t["type"] == "scale")
    check(
        tuple(image.data.shape) == group["image"].shape,
        f"{case_path}: image layer shape {image.data.shape} != {group['image'].shape}",
    )
    for layer in (image, label):
        check(
            np.allclose(layer.scale, scale),
            f"{case_path}: layer {layer.name!r} scale {layer.scale} != OME scale {scale}",
        )
    check(
        np.array_equal(np.asarray(label.data), group["label"][:]),
        f"{case_path}: the Labels layer's voxels differ from the case's label array",
    )

    got = label.colormap.map(np.array(VERTEBRA_LABELS))
    for value, rgba in zip(VERTEBRA_LABELS, got, strict=True):
        want = hex_rgba(VERTEBRA_COLOURS[value])
        check(
            np.allclose(rgba, want, atol=1 / 255),
            f"{case_path}: label {value} ({VERTEBRA_NAMES[value]}) is drawn in {rgba}, "
            f"not {VERTEBRA_COLOURS[value]}",
        )
    names = dict(zip(label.features["index"], label.features["name"], strict=True))
    check(
        names == {v: VERTEBRA_NAMES[v] for v in VERTEBRA_LABELS},
        f"{case_path}: the Labels layer's names are {names}",
    )
    return image, label


def sagittal_names(label: np.ndarray, x: int) -> list[tuple[int, float, float]]:
    """``(value, z, y)`` centre of every label in the sagittal plane ``x`` (voxel indices)."""
    plane = label[:, :, x]
    out = []
    for value in np.unique(plane[plane > 0]):
        zz, yy = np.nonzero(plane == value)
        out.append((int(value), float(zz.mean()), float(yy.max())))
    return out


def check_screenshot(shot: np.ndarray, colours: list[str]) -> None:
    """The screenshot holds grey CT and at least one pixel close to each colour in view."""
    rgb = shot[..., :3].astype(int)
    spread = rgb.max(axis=-1) - rgb.min(axis=-1)
    grey = (spread < 8) & (rgb.mean(axis=-1) > 60)
    check(grey.mean() > 0.02, f"the screenshot shows almost no grey CT ({grey.mean():.2%})")
    check((spread > 40).mean() > 0.005, "the screenshot shows almost no coloured pixels")
    for colour in colours:
        want = (hex_rgba(colour)[:3] * 255).astype(int)
        # the label layer is drawn half-opaque over the CT: look for a pixel of that hue
        close = np.abs(rgb - want).max(axis=-1) < 90
        hue_ok = np.argmax(rgb, axis=-1) == int(np.argmax(want))
        check(bool((close & hue_ok & (spread > 25)).any()), f"no pixel of colour {colour}")


def shoot(case_path: Path, out: Path) -> None:
    """Open ``case_path`` in napari, check it, and save the screenshot to ``out``."""
    import napari
    from PIL import Image as PILImage

    from ctspine_zarr.vertebrae import VERTEBRA_COLOURS, VERTEBRA_NAMES

    viewer = napari.Viewer(title=f"napari: {case_path.name}", show=True)
    viewer.window.resize(*WINDOW_SIZE)
    with warnings.catch_warnings():
        # the plugin gives napari a colour per label value and none for the background,
        # which napari warns will be transparent: just what a label overlay needs
        warnings.filterwarnings("ignore", "color_dict did not provide a default color")
        layers = viewer.open(str(case_path), plugin="napari-ome-zarr")
    image, label = check_layers(layers, case_path)

    image.contrast_limits_range = (-1024.0, 3071.0)
    image.contrast_limits = BONE_WINDOW
    image.colormap = "gray"
    label.visible = True
    label.opacity = 0.6

    data = np.asarray(label.data)
    _, ys, xs = np.nonzero(data)
    x = int(np.median(xs))  # mid-sagittal plane of the spine
    # sagittal: show (z, y) with x sliced; z (superior) up, y (anterior) to the left
    viewer.dims.order = (2, 0, 1)
    viewer.dims.set_point(2, x * label.scale[2] + label.translate[2])
    viewer.scene.camera.orientation2d = ("up", "left")

    # the vertebra names from the label layer's features, to the right of each vertebra
    names = dict(zip(label.features["index"], label.features["name"], strict=True))
    spots = sagittal_names(data, x)
    check(len(spots) >= 3, f"{case_path}: only {len(spots)} vertebrae in the sagittal plane")
    points = np.array([[z, y + 14, x] for _, z, y in spots], dtype=float)
    viewer.add_points(
        points,
        name="vertebra names",
        scale=label.scale,
        translate=label.translate,
        units=label.units,
        size=0,
        features={"name": [names[v] for v, _, _ in spots]},
        text={"string": "{name}", "color": "white", "size": 11, "anchor": "center"},
    )
    caption = viewer.canvas.overlays.text
    caption.text = f"cases/{case_path.name} via napari-ome-zarr, sagittal plane x = {x}"
    caption.position = "bottom_left"
    caption.font_size = 10
    caption.color = "white"
    caption.visible = True
    viewer.canvas.overlays.scale_bar.visible = True
    viewer.layers.selection.active = label
    viewer.reset_view()
    viewer.scene.camera.zoom *= 0.95
    viewer.help = ""  # the status bar's key hints of the active layer
    viewer.status = ""

    shot = viewer.screenshot(canvas_only=False, flash=False)
    viewer.close()
    check_screenshot(shot, [VERTEBRA_COLOURS[v] for v, _, _ in spots])

    out.parent.mkdir(parents=True, exist_ok=True)
    picture = PILImage.fromarray(shot[..., :3])
    picture.quantize(colors=256, method=PILImage.Quantize.MEDIANCUT, dither=0).save(
        out, optimize=True
    )
    size = out.stat().st_size
    check(size < MAX_BYTES, f"{out}: {size} bytes, over {MAX_BYTES}")
    shown = ", ".join(VERTEBRA_NAMES[v] for v, _, _ in spots)
    print(f"{out}: {shot.shape[1]}x{shot.shape[0]} px, {size} bytes; {case_path}: {shown}")


def main(argv: list[str] | None = None) -> int:
    """Make the store, open one case in napari, check the layers and save the screenshot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="PNG to write")
    parser.add_argument("--workdir", type=Path, help="keep the demo store here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="napari-case-") as tmp:
        workdir = args.workdir or Path(tmp)
        try:
            store = make_store(workdir)
            shoot(store / "cases" / pick_case(store), args.out)
        except CheckFailed as error:
            print(f"napari_case.py: {error}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
