"""A short text summary of a catalogue (counts per split and source, sizes, vertebrae), and
the table of its cases ``ctspine-zarr cases`` prints."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from .schema import CASE_DIM
from .selection import Names, Vertebrae, select
from .vertebrae import ANATOMICAL_ORDER, VERTEBRA_NAMES

__all__ = ["CASE_COLUMNS", "case_table", "describe"]

#: The columns of :func:`case_table`.
CASE_COLUMNS = ("case", "split", "source", "slices", "vertebrae", "n_vertebrae")


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


def case_table(
    ds: xr.Dataset,
    *,
    split: Names = None,
    source: Names = None,
    vertebra: Vertebrae = None,
) -> pd.DataFrame:
    """Return one row per case of a catalogue: id, split, source, slices, vertebrae.

    Reads the catalogue only (no case group). ``vertebrae`` is the range of the vertebrae
    present, cranio-caudally (``"C3-L5"``; empty for a case without any), ``n_vertebrae``
    how many of them there are.

    Parameters
    ----------
    ds
        A catalogue (``ctspine_zarr.open`` or ``xr.open_zarr``).
    split, source, vertebra
        Only the cases of this split or source, or holding this vertebra (or any of
        several): :func:`ctspine_zarr.selection.select`; default: every case.

    Raises
    ------
    SelectionError
        For an unknown split, source or vertebra (a ``ValueError``); the message names the
        valid ones and those the store holds.
    """
    ds = select(ds, split=split, source=source, vertebra=vertebra)
    if not ds.sizes.get(CASE_DIM, 0):
        return pd.DataFrame({name: [] for name in CASE_COLUMNS}, columns=list(CASE_COLUMNS))
    ids = [str(c) for c in ds[CASE_DIM].values]
    table = pd.DataFrame(
        {
            "case": ids,
            "split": [str(v) for v in ds["split"].values],
            "source": [str(v) for v in ds["source"].values],
            "slices": np.asarray(ds["n_slices"].values, dtype=np.int64),
            "vertebrae": _ranges(ds),
            "n_vertebrae": np.asarray(ds["has_vertebra"].values).sum(axis=1).astype(np.int64),
        },
        columns=list(CASE_COLUMNS),
    )
    return table


def _ranges(ds: xr.Dataset) -> list[str]:
    """Per case: the first and last vertebra present, cranio-caudally (``"C3-L5"``)."""
    labels = [int(v) for v in ds["vertebra"].values]
    present = np.asarray(ds["has_vertebra"].values, dtype=bool)
    rank = {label: i for i, label in enumerate(ANATOMICAL_ORDER)}
    order = sorted(range(len(labels)), key=lambda i: rank.get(labels[i], len(rank) + labels[i]))
    ranges = []
    for row in present:
        found = [VERTEBRA_NAMES.get(labels[i], str(labels[i])) for i in order if row[i]]
        if len(found) > 1:
            ranges.append(f"{found[0]}-{found[-1]}")
        else:
            ranges.append(found[0] if found else "")
    return ranges
