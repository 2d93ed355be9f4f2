"""A short text summary of a catalogue: counts per split and source, sizes, vertebrae."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from .schema import CASE_DIM
from .vertebrae import VERTEBRA_NAMES

__all__ = ["describe"]


def describe(ds: xr.Dataset, *, location: str = "") -> str:
    """Return the catalogue summary ``ctspine-zarr info`` prints.

    Parameters
    ----------
    ds
        A catalogue (``ctspine_zarr.open`` or ``xr.open_zarr``).
    location
        The store, for the heading.
    """
    n = ds.sizes.get(CASE_DIM, 0)
    lines = [f"ctspine store {location}".rstrip(), f"{n} cases"]
    if n == 0:
        return "\n".join(lines)
    table = pd.DataFrame(
        {
            "split": np.asarray(ds["split"].values).astype(object),
            "source": np.asarray(ds["source"].values).astype(object),
            "slices": np.asarray(ds["n_slices"].values),
        }
    )
    counts = pd.crosstab(table["source"], table["split"], margins=True, margins_name="all")
    lines += ["", "cases per source and split:", counts.to_string()]
    slices = table["slices"]
    n_y, n_x = ds["n_y"].values.tolist(), ds["n_x"].values.tolist()
    shapes = sorted(set(zip(n_y, n_x, strict=True)))
    lines += [
        "",
        f"slices: {int(slices.sum())} in all, {int(slices.min())} to {int(slices.max())} per case",
        "in-plane: " + ", ".join(f"{y}x{x}" for y, x in shapes),
        f"spacing z: {_span(ds['spacing_z'])} mm; in-plane {_span(ds['spacing_x'])} mm",
    ]
    present = np.asarray(ds["has_vertebra"].values).sum(axis=0)
    labels = np.asarray(ds["vertebra"].values)
    freq = ", ".join(
        f"{VERTEBRA_NAMES[int(v)]}:{int(c)}" for v, c in zip(labels, present, strict=True) if c > 0
    )
    lines += [f"cases per vertebra: {freq}"]
    if "image_codec" in ds:
        codecs = pd.Series([str(v) for v in ds["image_codec"].values]).value_counts()
        text = ", ".join(f"{name}: {int(k)}" for name, k in sorted(codecs.items()))
        if any(name.startswith("ctspine_zarr.") for name in codecs.index):
            text += " (reading needs pip install 'ctspine-zarr[compact]')"
        lines += [f"image codecs (cases): {text}"]
        compact = sorted(
            str(c)
            for c, codec in zip(ds["case"].values, ds["image_codec"].values, strict=True)
            if str(codec).startswith("ctspine_zarr.")
        )
        if compact:
            shown = ", ".join(compact[:10]) + (
                f", ... ({len(compact)} in all)" if len(compact) > 10 else ""
            )
            lines += [
                "other Zarr implementations (tensorstore, zarrs, napari, neuroglancer) cannot "
                f"decode the images of these cases (compact codec): {shown}"
            ]
    return "\n".join(lines)


def _span(values: xr.DataArray) -> str:
    return f"{float(values.min()):.2f} to {float(values.max()):.2f}"
