"""The data the codecs are measured on: pydicom-data's real CT slices, synthetic volumes."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.codecs.configs import (
    REAL_FILES,
    SLICE_YX,
)

# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def data_store_dir() -> Path:
    """Return the ``data`` folder of the installed ``pydicom-data`` package (``data_store``)."""
    spec = importlib.util.find_spec("data_store")
    if spec is None or spec.origin is None:
        raise RuntimeError("pydicom-data (module data_store) is not installed")
    return Path(spec.origin).parent / "data"


@dataclass
class RealSlice:
    """A real CT slice in HU plus notes about its origin and padding."""

    name: str
    hu: np.ndarray  # (1, 512, 512) int16
    notes: list[str] = field(default_factory=list)


def load_real_slices() -> list[RealSlice]:
    """Read the pydicom-data CT slices as HU int16 (pixel * RescaleSlope + RescaleIntercept)."""
    import pydicom

    out = []
    for name in REAL_FILES:
        ds = pydicom.dcmread(data_store_dir() / f"{name}.dcm")
        slope, inter = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        hu64 = np.rint(ds.pixel_array.astype(np.float64) * slope + inter)
        if hu64.min() < -32768 or hu64.max() > 32767:
            raise ValueError(f"{name}: HU out of int16 range")
        hu = hu64.astype(np.int16)
        yy, xx = np.mgrid[: hu.shape[0], : hu.shape[1]]
        cy, cx = (hu.shape[0] - 1) / 2, (hu.shape[1] - 1) / 2
        outside = np.hypot(yy - cy, xx - cx) > min(hu.shape) / 2
        notes = [
            f"ImageType {'/'.join(v.strip() for v in ds.ImageType)}, "
            f"DerivationDescription {ds.get('DerivationDescription', '-')!r}, "
            f"LossyImageCompression {ds.get('LossyImageCompression', '-')!r}",
            f"HU range {hu.min()}..{hu.max()}, {np.unique(hu).size} distinct values",
        ]
        pad = ds.get("PixelPaddingValue")
        if pad is not None:
            pad_hu = round(pad * slope + inter)
            notes.append(
                f"PixelPaddingValue {pad} (= {pad_hu} HU): "
                f"{np.mean(hu == pad_hu):.1%} of the pixels"
            )
        out_vals = hu[outside]
        notes.append(
            f"outside the inscribed reconstruction circle ({outside.mean():.1%} of the pixels): "
            f"{np.unique(out_vals).size} distinct values, {out_vals.min()}..{out_vals.max()} HU, "
            f"median {int(np.median(out_vals))}"
        )
        out.append(RealSlice(name, hu[None], notes))
    return out


def _standin_volume(shape_zyx: tuple[int, int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stand-in CT: -1024 air outside an ellipse, tissue 40 +- 15 noise, bone disk 300..1000."""
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape_zyx
    yy, xx = np.mgrid[:ny, :nx].astype(np.float32)
    body = ((yy - ny / 2) / (0.40 * ny)) ** 2 + ((xx - nx / 2) / (0.46 * nx)) ** 2 <= 1
    hu = np.full(shape_zyx, -1024, np.int16)
    label = np.zeros(shape_zyx, np.uint8)
    per_vertebra = 24  # slices: 20 of vertebra, 4 of disc
    for z in range(nz):
        cy = 0.62 * ny + 3 * np.sin(z / 15)
        cx = nx / 2 + 2 * np.cos(z / 11)
        r = np.hypot(yy - cy, xx - cx) / (0.07 * nx)
        tissue = 40 + rng.normal(0, 15, (ny, nx))
        bone = (r <= 1) & (z % per_vertebra < 20)
        img = np.where(body, tissue, -1024.0)
        img = np.where(bone, 300 + 700 * (1 - r) + rng.normal(0, 30, (ny, nx)), img)
        hu[z] = np.rint(img).astype(np.int16)
        label[z][bone] = 8 + z // per_vertebra
    return hu, label


@dataclass
class Synth:
    """A synthetic volume: name, HU int16 [z, y, x], labels uint8 and where it came from."""

    name: str
    hu: np.ndarray
    label: np.ndarray
    source: str


def synthetic_volume(n_slices: int, seed: int = 0) -> Synth:
    """A synthetic volume from ``ctspine_zarr.testing.synthetic.make_volume`` if available."""
    shape = (n_slices, *SLICE_YX)
    spacing = (1.0, 0.8, 0.8)
    try:
        from ctspine_zarr.testing.synthetic import make_volume
    except ImportError as exc:
        hu, label = _standin_volume(shape, seed)
        return Synth(f"seed {seed}", hu, label, f"benchmark stand-in ({exc})")
    hu, label = make_volume(shape_zyx=shape, spacing_zyx=spacing, seed=seed)
    return Synth(
        f"seed {seed}",
        np.asarray(hu, np.int16),
        np.asarray(label, np.uint8),
        f"ctspine_zarr.testing.synthetic.make_volume(spacing_zyx={spacing}, seed={seed})",
    )
