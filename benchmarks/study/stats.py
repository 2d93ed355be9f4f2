"""Section ``stats``: ``compute_stats`` against the nibabel loop of ``benchmarks.stats``."""

from __future__ import annotations

import statistics
from pathlib import Path

from benchmarks.common import fmt_seconds, markdown_table, time_call
from benchmarks.study.config import log
from benchmarks.study.results import Section, speed
from benchmarks.study.workspace import Workspace


def section_stats(ws: Workspace, sec: Section) -> None:
    """compute_stats (threads, no sampled fingerprint) vs the nibabel loop, interleaved."""
    import pandas as pd

    from benchmarks.stats import compare_tables, nibabel_tables
    from ctspine_zarr.stats import compute_stats

    cfg = ws.cfg
    store = ws.ensure_store()
    times: dict[str, list[float]] = {"nibabel": [], "ours": []}
    tables: dict[str, Path] = {}
    for r in range(cfg.stats_repeats):
        order = ["nibabel", "ours"] if r % 2 == 0 else ["ours", "nibabel"]
        for name in order:
            log(f"stats: round {r + 1}/{cfg.stats_repeats}, {name} ...")
            if name == "nibabel":
                seconds, (vertebrae, _) = time_call(lambda: nibabel_tables(ws.raw))
                frame = pd.DataFrame(vertebrae)
            else:
                seconds, stats = time_call(
                    lambda: compute_stats(store, progress=False, fingerprint_samples=None)
                )
                frame = stats.vertebrae
            times[name].append(seconds)
            if name not in tables:
                tables[name] = ws.root / f"stats-{name}.parquet"
                frame.to_parquet(tables[name], index=False)
    agree = compare_tables(str(tables["nibabel"]), str(tables["ours"]))
    med = {k: statistics.median(v) for k, v in times.items()}
    n_slices = sum(c.n_z for c in ws.cases)
    rows = [
        [
            "nibabel loop, serial (`benchmarks.stats.nibabel_tables`) [anchor]",
            fmt_seconds(med["nibabel"]),
            " / ".join(f"{t:.2f}" for t in times["nibabel"]),
            f"{n_slices / med['nibabel']:.0f}",
            "1.00x",
        ],
        [
            "**ours** `compute_stats(store, progress=False, fingerprint_samples=None)`",
            fmt_seconds(med["ours"]),
            " / ".join(f"{t:.2f}" for t in times["ours"]),
            f"{n_slices / med['ours']:.0f}",
            speed(med["nibabel"], med["ours"]),
        ],
    ]
    sec.lines += [
        "Per-vertebra table (voxels, volume, HU mean/std/min/max/percentiles, z extent, "
        "centroid) and per-case HU statistics of every case; ours on the default local "
        f"threaded scheduler, in this process; {cfg.stats_repeats} interleaved run(s), median. "
        f"Check: {agree}.",
        "",
        markdown_table(
            ["statistics", "wall (median)", "per run, s", "slices/s", "nibabel / this"], rows
        ),
    ]
    sec.data = {"seconds": times, "median_s": med, "check": agree}
