"""The result of the statistics: :class:`DatasetStats`, and how it is assembled and written.

:func:`assemble` turns the per-split results of the graph into the vertebra and case tables,
the intensity fingerprint and the split summaries; :class:`DatasetStats` writes them as
Parquet and JSON files (:meth:`DatasetStats.to_dir`) or into the store's root attrs
(:meth:`DatasetStats.to_store`). The pictures are :mod:`ctspine_zarr.viz.plots`'s.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
import zarr

from .._version import __version__
from ..errors import StoreError
from ..io.store import forget, to_store
from ..selection import describe_selection
from ..vertebrae import VERTEBRA_LABELS, vertebra_name
from .cases import _RANK, BOX_COLUMNS, OVERALL, _Group, merge_groups
from .graph import StatsGraph
from .histogram import Histogram, merge_histograms

__all__ = ["PERCENTILES", "STORE_ATTR", "DatasetStats", "assemble"]

#: Percentiles of the vertebra table and the fingerprint (nnU-Net's 0.5 / 50 / 99.5).
PERCENTILES: Final = (0.5, 50.0, 99.5)
#: Key of the statistics in the store's root attrs (``--write-to-store``).
STORE_ATTR: Final = "stats"

_CASE_COLUMNS: Final = (
    "case",
    "split",
    "source",
    "slices",
    "n_y",
    "n_x",
    "spacing_z",
    "spacing_y",
    "spacing_x",
    "image_dtype",
    "voxels",
    "hu_voxels",
    "nonfinite_voxels",
    "hu_min",
    "hu_max",
    "hu_mean",
    "hu_std",
    "foreground_voxels",
    "foreground_fraction",
    "n_vertebrae",
    "vertebrae",
    "vertebra_names",
    "first_vertebra",
    "last_vertebra",
    "has_l6",
    "has_t13",
    "other_labels",
    *BOX_COLUMNS,
)
_VERTEBRA_COLUMNS: Final = (
    "case",
    "label",
    "name",
    "split",
    "source",
    "voxels",
    "volume_ml",
    "hu_voxels",
    "hu_mean",
    "hu_std",
    "hu_min",
    "hu_max",
    "hu_p005",
    "hu_p50",
    "hu_p995",
    "z_start",
    "z_stop",
    "z_extent_slices",
    "z_extent_mm",
    "centroid_x_mm",
    "centroid_y_mm",
    "centroid_z_mm",
)


@dataclass
class DatasetStats:
    """Statistics of a set of cases.

    Attributes
    ----------
    vertebrae
        One row per (case, label > 0): voxels, volume (ml), HU statistics (``hu_std`` is the
        population std, ddof=0), z extent in slices and mm, centroid in world RAS+ mm.
    cases
        One row per case: shape, spacing, HU statistics, foreground fraction, vertebrae, and
        the box of the nonzero image voxels (``nonzero_start_z`` ... ``nonzero_stop_x``,
        half-open, ``(z, y, x)`` store indices; -1 for an all-zero image), the box nnU-Net
        crops a case to.
    fingerprint
        Foreground intensity properties, ``exact`` and nnU-Net ``nnunet`` sampled, for all
        cases (``"all"``) and per split (see :mod:`ctspine_zarr.stats`).
    summary
        DataFrames ``label_frequency``, ``vertebra_count`` and ``spacing``, per split and for
        all cases (``split == "all"``).
    histograms
        Exact HU histogram of each label over all cases.
    info
        How the statistics were computed.
    """

    vertebrae: pd.DataFrame
    cases: pd.DataFrame
    fingerprint: dict[str, Any]
    summary: dict[str, pd.DataFrame]
    histograms: dict[int, Histogram]
    info: dict[str, Any] = field(default_factory=dict)

    def to_dir(self, path: str | os.PathLike) -> list[Path]:
        """Write ``vertebrae.parquet``, ``cases.parquet``, ``fingerprint.json``,
        ``summary.json`` and ``hu_histograms.parquet`` into ``path``.

        The PNG plots are :func:`ctspine_zarr.viz.plots.write_stats_plots`'s.

        Returns
        -------
        list of Path
            The written files.
        """
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name, df in (("vertebrae", self.vertebrae), ("cases", self.cases)):
            target = out / f"{name}.parquet"
            df.to_parquet(target, index=False)
            written.append(target)
        target = out / "hu_histograms.parquet"
        self.histogram_table().to_parquet(target, index=False)
        written.append(target)
        target = out / "fingerprint.json"
        target.write_text(json.dumps(_json_safe(self.fingerprint), indent=2) + "\n", "utf-8")
        written.append(target)
        target = out / "summary.json"
        summary = {k: df.to_dict(orient="records") for k, df in self.summary.items()}
        payload = {"summary": summary, "info": self.info}
        target.write_text(json.dumps(_json_safe(payload), indent=2) + "\n", "utf-8")
        written.append(target)
        return written

    def describe(self) -> str:
        """Return a few lines: cases, vertebrae, and the overall fingerprint."""
        lines = [
            f"{len(self.cases)} cases, {len(self.vertebrae)} labelled structures "
            f"({self.info.get('block_tasks', 0)} block tasks, "
            f"{self.info.get('seconds', math.nan):.1f} s)"
        ]
        entry = self.fingerprint.get(OVERALL, {})
        for mode in ("exact", "nnunet"):
            if mode in entry:
                f = entry[mode]
                lines.append(
                    f"fingerprint {mode:6s}: mean {f['mean']:.2f}  std {f['std']:.2f}  "
                    f"median {f['median']:.1f}  p0.5 {f['percentile_00_5']:.1f}  "
                    f"p99.5 {f['percentile_99_5']:.1f}  ({f['n_voxels']} voxels)"
                )
        return "\n".join(lines)

    @property
    def selection(self) -> str:
        """The cases these statistics cover, in words: ``"all 6 cases"``, ``"split train: 3
        cases"``, ``"source COLONOG; holding L3: 2 cases"``, ``"2 chosen cases"`` (for plot
        titles)."""
        n = len(self.cases)
        chosen = self.info.get("cases")
        counted = f"{n} case" if n == 1 else f"{n} cases"
        filters = describe_selection(
            self.info.get("split") or None,
            self.info.get("source") or None,
            self.info.get("vertebra"),
        )
        if filters:
            return f"{filters}: {counted}" + (" chosen" if chosen else "")
        return f"{counted} chosen" if chosen else f"all {counted}"

    def histogram_table(self) -> pd.DataFrame:
        """Return the per-label HU histograms as a long table ``label, name, hu, voxels``."""
        frames = [
            pd.DataFrame(
                {
                    "label": np.full(h.values.size, value, dtype=np.int64),
                    "name": vertebra_name(value),
                    "hu": h.values.astype(np.float64),
                    "voxels": h.counts,
                }
            )
            for value, h in sorted(self.histograms.items())
        ]
        if not frames:
            return pd.DataFrame({"label": [], "name": [], "hu": [], "voxels": []})
        return pd.concat(frames, ignore_index=True)

    def store_payload(self) -> dict[str, Any]:
        """Return what ``to_store`` records in the root attrs (JSON-able)."""
        per_case = {}
        keep = (
            "split",
            "n_vertebrae",
            "vertebra_names",
            "first_vertebra",
            "last_vertebra",
            "has_l6",
            "has_t13",
            "foreground_fraction",
            "hu_min",
            "hu_max",
            "hu_mean",
            "hu_std",
        )
        for row in self.cases.to_dict(orient="records"):
            per_case[str(row["case"])] = {k: row[k] for k in keep}
        return _json_safe(
            {
                "created_by": f"ctspine_zarr {__version__}",
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "split": self.info.get("split"),
                "source": self.info.get("source"),
                "vertebra": self.info.get("vertebra"),
                "n_cases": int(len(self.cases)),
                "fingerprint": self.fingerprint,
                "label_frequency": self.summary["label_frequency"].to_dict(orient="records"),
                "vertebra_count": self.summary["vertebra_count"].to_dict(orient="records"),
                "cases": per_case,
            }
        )

    def to_store(
        self, location: str | os.PathLike, *, storage_options: dict[str, Any] | None = None
    ) -> None:
        """Record the statistics in the store's root attrs under ``"stats"``.

        The fingerprint, the label frequency, the vertebra-count distribution and a summary
        per case replace an earlier ``"stats"``; every other root attribute is kept. The root
        document is rewritten once, with its consolidated metadata, so readers see either the
        old or the new attrs.
        """
        from ..io.catalogue import replace_root_attributes
        from ..io.location import Location
        from ..write.lock import WriterLock

        text = os.fspath(location) if isinstance(location, os.PathLike) else location
        store = to_store(text, storage_options=storage_options, read_only=False)
        try:
            root = zarr.open_group(store, mode="r+", zarr_format=3, use_consolidated=False)
        except (FileNotFoundError, zarr.errors.GroupNotFoundError) as err:
            raise StoreError(f"{location}: no Zarr v3 store there") from err
        loc = Location.resolve(store)
        with WriterLock(loc):  # never beside an ingest's catalogue switch
            attrs = dict(root.attrs)
            attrs[STORE_ATTR] = self.store_payload()
            replace_root_attributes(loc, attrs)
        forget(text)


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_json_safe(v) for v in obj.tolist()]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is pd.NA or obj is pd.NaT:
        return None
    return obj


def _fingerprint(groups: Mapping[str, _Group], overall: _Group, graph: StatsGraph) -> dict:
    def fg(g: _Group) -> Histogram:
        return merge_histograms(g.label_hists.values())

    def entry(g: _Group, sample: Histogram, name: str) -> dict[str, Any]:
        out: dict[str, Any] = {"n_cases": len(g.cases), "exact": fg(g).summary()}
        if graph.samples:
            out["nnunet"] = {
                **sample.summary(),
                "samples_per_case": graph.samples[name],
                "seed": graph.seed,
            }
        return out

    return {
        "definition": {
            "voxels": "foreground: label > 0; NaN/Inf voxels skipped",
            "exact": "over every foreground voxel, from exact histograms; std is the "
            "population std (ddof=0); percentiles as np.percentile (linear)",
            "nnunet": "nnU-Net v2 DatasetFingerprintExtractor: per case samples_per_case = "
            "int(10e7 // n_cases) foreground voxels (or a fixed count), drawn with "
            "np.random.RandomState(seed).choice(fg, n, replace=True), fg in the store's "
            "canonical [z, y, x] order; statistics of the concatenated sample, exact",
        },
        OVERALL: entry(overall, overall.sample_overall, OVERALL),
        "splits": {name: entry(g, g.sample_split, name) for name, g in sorted(groups.items())},
    }


def _summary(cases: pd.DataFrame) -> dict[str, pd.DataFrame]:
    freq, counts, spacing = [], [], []
    names = [*sorted(set(cases["split"])), OVERALL] if len(cases) else [OVERALL]
    for name in names:
        part = cases if name == OVERALL else cases[cases["split"] == name]
        n = len(part)
        present: dict[int, int] = {}
        for labels in part["vertebrae"]:
            for v in labels:
                present[int(v)] = present.get(int(v), 0) + 1
        for v in VERTEBRA_LABELS:
            k = present.get(v, 0)
            freq.append(
                {
                    "split": name,
                    "label": v,
                    "name": vertebra_name(v),
                    "cases": k,
                    "fraction": k / n if n else math.nan,
                }
            )
        for value, k in sorted(part["n_vertebrae"].value_counts().items()):
            counts.append({"split": name, "n_vertebrae": int(value), "cases": int(k)})
        for axis in ("z", "y", "x"):
            values = part[f"spacing_{axis}"].to_numpy(dtype=np.float64)
            row: dict[str, Any] = {"split": name, "axis": axis, "cases": n}
            for key, q in (
                ("min", 0),
                ("p05", 5),
                ("p25", 25),
                ("median", 50),
                ("p75", 75),
                ("p95", 95),
                ("max", 100),
            ):
                row[key] = float(np.percentile(values, q)) if n else math.nan
            row["mean"] = float(values.mean()) if n else math.nan
            row["distinct"] = int(np.unique(values).size)
            spacing.append(row)
    return {
        "label_frequency": pd.DataFrame(freq),
        "vertebra_count": pd.DataFrame(counts, columns=["split", "n_vertebrae", "cases"]),
        "spacing": pd.DataFrame(spacing),
    }


def assemble(graph: StatsGraph, groups: Mapping[str, _Group]) -> DatasetStats:
    """Turn the computed per-split results into a :class:`DatasetStats`."""
    overall = merge_groups(list(groups.values())) if groups else merge_groups([])
    cases = pd.DataFrame(overall.cases, columns=list(_CASE_COLUMNS))
    order = {m.case: i for i, m in enumerate(graph.metas)}
    cases = cases.sort_values("case", key=lambda s: s.map(order)).reset_index(drop=True)
    vertebrae = pd.DataFrame(overall.vertebrae, columns=list(_VERTEBRA_COLUMNS))
    if len(vertebrae):
        vertebrae["_c"] = vertebrae["case"].map(order)
        vertebrae["_r"] = vertebrae["label"].map(lambda v: _RANK.get(int(v), 1000 + int(v)))
        vertebrae = vertebrae.sort_values(["_c", "_r"]).drop(columns=["_c", "_r"])
        vertebrae = vertebrae.reset_index(drop=True)
    for df, ints in (
        (
            cases,
            (
                "slices",
                "n_y",
                "n_x",
                "voxels",
                "hu_voxels",
                "nonfinite_voxels",
                "foreground_voxels",
                "n_vertebrae",
                *BOX_COLUMNS,
            ),
        ),
        (vertebrae, ("label", "voxels", "hu_voxels", "z_start", "z_stop", "z_extent_slices")),
    ):
        for col in ints:
            df[col] = df[col].astype(np.int64)
    return DatasetStats(
        vertebrae=vertebrae,
        cases=cases,
        fingerprint=_fingerprint(groups, overall, graph),
        summary=_summary(cases),
        histograms=dict(sorted(overall.label_hists.items())),
        info={
            "n_cases": len(graph.metas),
            "block_tasks": graph.blocks,
            "samples_per_case": dict(graph.samples),
            "seed": graph.seed,
            "created_by": f"ctspine_zarr {__version__}",
        },
    )
