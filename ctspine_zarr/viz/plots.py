"""Pictures of the dataset statistics (PNG, matplotlib without a display).

Figures are built with :class:`matplotlib.figure.Figure` directly (no ``pyplot``, no global
backend switch), so this works headless and from worker threads. Every picture colours a
vertebra with its colour of :data:`ctspine_zarr.vertebrae.VERTEBRA_COLOURS`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np

from ..vertebrae import (
    ANATOMICAL_ORDER,
    T13_LABEL,
    vertebra_colours,
    vertebra_name,
)

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from ..stats.histogram import Histogram
    from ..stats.results import DatasetStats

__all__ = [
    "plot_hu_histograms",
    "plot_vertebrae_per_case",
    "plot_volume_by_level",
    "write_stats_plots",
]

_REGIONS: Final = (
    ("cervical (C1-C7)", tuple(range(1, 8))),
    ("thoracic (T1-T13)", (*range(8, 20), T13_LABEL)),
    ("lumbosacral (L1-L6, sacrum, coccyx)", tuple(range(20, 28))),
)
_SPLIT_COLOURS: Final = {
    "train": "#1f77b4",
    "validation": "#ff7f0e",
    "test": "#2ca02c",
    "unassigned": "#7f7f7f",
}


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _save(fig: Figure, path: str | os.PathLike, title: str) -> Path:
    """Save ``fig`` as a PNG whose ``Title`` text chunk is ``title`` (what it shows)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=110, metadata={"Title": title})
    return target


def _titled(title: str, selection: str) -> str:
    return f"{title} ({selection})" if selection else title


def plot_hu_histograms(
    histograms: Mapping[int, Histogram],
    path: str | os.PathLike,
    *,
    bin_width: int = 10,
    selection: str = "",
) -> Path:
    """Plot the HU distribution of each vertebra level (one panel per spine region).

    Parameters
    ----------
    histograms
        Exact HU histogram per label (``DatasetStats.histograms``).
    path
        PNG file to write.
    bin_width
        HU per plotted bin.
    selection
        The cases the histograms cover, for the title (``DatasetStats.selection``).

    Returns
    -------
    Path
    """
    colours = vertebra_colours()
    fig = _figure(13, 4.2)
    axes = fig.subplots(1, len(_REGIONS), sharey=True)
    present = [v for v in ANATOMICAL_ORDER if v in histograms and histograms[v].total > 0]
    lo, hi = _hu_range([histograms[v] for v in present])
    for ax, (title, labels) in zip(axes, _REGIONS, strict=True):
        shown = 0
        for label in (v for v in ANATOMICAL_ORDER if v in labels and v in present):
            h = histograms[label]
            values = h.values.astype(np.float64)
            bins = np.floor(values / bin_width).astype(np.int64)
            first = int(bins.min())
            counts = np.bincount(bins - first, weights=h.counts.astype(np.float64))
            centres = (np.arange(counts.size) + first + 0.5) * bin_width
            density = counts / (h.total * bin_width)
            ax.plot(
                centres, density, color=colours.get(label, "k"), lw=1.2, label=vertebra_name(label)
            )
            shown += 1
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("HU")
        if lo < hi:
            ax.set_xlim(lo, hi)
        if shown:
            ax.legend(fontsize=7, ncol=2 if shown > 7 else 1, frameon=False)
        else:
            ax.text(0.5, 0.5, "no vertebrae", ha="center", va="center", transform=ax.transAxes)
    axes[0].set_ylabel("fraction of voxels per HU")
    title = _titled("HU histogram per vertebra level", selection)
    fig.suptitle(title)
    return _save(fig, path, title)


def _hu_range(hists: list[Histogram]) -> tuple[float, float]:
    if not hists:
        return 0.0, 0.0
    from ..stats.histogram import merge_histograms

    merged = merge_histograms(hists)
    return merged.percentile(0.1), merged.percentile(99.9)


def plot_volume_by_level(
    vertebrae: pd.DataFrame, path: str | os.PathLike, *, selection: str = ""
) -> Path:
    """Box plot of the vertebra volume (ml) per level, in cranio-caudal order.

    Parameters
    ----------
    vertebrae
        The per-vertebra table (``DatasetStats.vertebrae``).
    path
        PNG file to write.
    selection
        The cases the table covers, for the title (``DatasetStats.selection``).

    Returns
    -------
    Path
    """
    colours = vertebra_colours()
    present = set(int(v) for v in vertebrae["label"]) if len(vertebrae) else set()
    labels = [v for v in ANATOMICAL_ORDER if v in present]
    fig = _figure(max(6.0, 0.42 * len(labels) + 2), 4.2)
    ax = fig.subplots()
    if labels:
        data = [vertebrae.loc[vertebrae["label"] == v, "volume_ml"].to_numpy() for v in labels]
        boxes = ax.boxplot(
            data, tick_labels=[vertebra_name(v) for v in labels], patch_artist=True, widths=0.6
        )
        for patch, label in zip(boxes["boxes"], labels, strict=True):
            patch.set_facecolor(colours[label])
            patch.set_alpha(0.8)
        for median in boxes["medians"]:
            median.set_color("black")
        jitter = np.random.default_rng(0)
        for x, (values, label) in enumerate(zip(data, labels, strict=True), start=1):
            xs = x + jitter.uniform(-0.18, 0.18, values.size)
            ax.scatter(
                xs, values, s=7, color=colours[label], edgecolors="black", linewidths=0.3, zorder=3
            )
        ax.tick_params(axis="x", labelrotation=90, labelsize=8)
    else:
        ax.text(0.5, 0.5, "no vertebrae", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylabel("volume (ml)")
    title = _titled("Vertebra volume by level", selection)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path, title)


def plot_vertebrae_per_case(
    cases: pd.DataFrame, path: str | os.PathLike, *, selection: str = ""
) -> Path:
    """Bar chart of how many vertebrae the cases hold, stacked by split (legend beside it).

    Parameters
    ----------
    cases
        The per-case table (``DatasetStats.cases``).
    path
        PNG file to write.
    selection
        The cases the table covers, for the title (``DatasetStats.selection``).

    Returns
    -------
    Path
    """
    from matplotlib.ticker import MaxNLocator

    fig = _figure(7, 4.2)
    ax = fig.subplots()
    if len(cases):
        counts = cases["n_vertebrae"].to_numpy(dtype=np.int64)
        xs = np.arange(int(counts.min()), int(counts.max()) + 1)
        bottom = np.zeros(xs.size)
        for split in sorted(set(cases["split"])):
            part = cases.loc[cases["split"] == split, "n_vertebrae"].to_numpy(dtype=np.int64)
            heights = np.array([(part == x).sum() for x in xs], dtype=float)
            colour = _SPLIT_COLOURS.get(split, "#9467bd")
            ax.bar(xs, heights, bottom=bottom, color=colour, label=split, width=0.8)
            bottom += heights
        ax.set_xticks(xs)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        # outside the axes, so that it never covers a bar
        ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="split")
    else:
        ax.text(0.5, 0.5, "no cases", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("vertebrae per case (labels 1-28 present)")
    ax.set_ylabel("cases")
    title = _titled("Vertebrae per case", selection)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path, title)


def write_stats_plots(stats: DatasetStats, out_dir: str | os.PathLike) -> list[Path]:
    """Write the three statistics pictures into ``out_dir``, titled with the cases they cover.

    Returns
    -------
    list of Path
        ``hu_histogram_by_level.png``, ``volume_by_level.png``, ``vertebrae_per_case.png``.
    """
    out = Path(out_dir)
    chosen = stats.selection
    return [
        plot_hu_histograms(stats.histograms, out / "hu_histogram_by_level.png", selection=chosen),
        plot_volume_by_level(stats.vertebrae, out / "volume_by_level.png", selection=chosen),
        plot_vertebrae_per_case(stats.cases, out / "vertebrae_per_case.png", selection=chosen),
    ]
