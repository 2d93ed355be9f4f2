"""Section ``volume``: whole-volume reads per case, interleaved, medians of per-case medians."""

from __future__ import annotations

import statistics
from collections.abc import Callable

import numpy as np

from benchmarks.common import fmt_ratio, fmt_seconds, markdown_table, ratio
from benchmarks.study.config import log
from benchmarks.study.contenders import per_case_medians, time_interleaved
from benchmarks.study.results import Ratio, Section, speed
from benchmarks.study.tree import BenchCase
from benchmarks.study.workspace import Workspace

VOLUME_LABELS = {
    "nibabel": "nibabel `np.asanyarray(nib.load(p).dataobj)`, image + label [anchor]",
    "arrow3d": "HF Arrow 3d: one row, `with_format('numpy')` (float32 + int) [anchor]",
    "npy": ".npy memmap: `np.array(image)`, `np.array(label)` [anchor]",
    "accessor": "**ours** `vol.image.values` + `vol.label.values`",
}


def section_volume(ws: Workspace, sec: Section) -> None:
    """Whole-volume reads, per case, interleaved; medians over cases of per-case medians."""
    cfg, cases = ws.cfg, ws.cases
    con, table, arrays = ws.anchors("3d")
    row_of = {c.case_id: i for i, c in enumerate(cases)}

    def arrow_volume(case: BenchCase, _: int = 0) -> object:
        row = table[row_of[case.case_id]]
        return row["image"], row["segmentation"]

    def npy_volume(case: BenchCase, _: int = 0) -> object:
        image, label = arrays[case.case_id]
        return np.array(image), np.array(label)

    readers: dict[str, Callable[[BenchCase, int], object]] = {
        "nibabel": con.volume_nibabel,
        "arrow3d": arrow_volume,
        "npy": npy_volume,
        "accessor": con.volume_accessor,
    }
    small = min(cases, key=lambda c: c.n_z)
    order = [c for _ in range(cfg.volume_repeats) for c in cases]
    log(f"volume: {len(order)} reads x {len(readers)} contenders ...")
    samples = time_interleaved(readers, [(c, 0) for c in order], [(small, 0)])
    per_case = per_case_medians(order, samples)
    med = {k: statistics.median(v.values()) for k, v in per_case.items()}
    tot = {k: sum(v.values()) for k, v in per_case.items()}
    n_slices = sum(c.n_z for c in cases)
    rows = [
        [
            label,
            fmt_seconds(med[key]),
            fmt_seconds(tot[key]),
            f"{n_slices / tot[key]:.0f}",
            speed(med["nibabel"], med[key]),
            speed(med["arrow3d"], med[key]),
            speed(med["npy"], med[key]),
        ]
        for key, label in VOLUME_LABELS.items()
    ]
    sec.lines += [
        f"{len(cases)} cases x {cfg.volume_repeats} read(s) each, contenders interleaved, one "
        "warm-up read excluded. Ratios: anchor / this on the median per case (how many times "
        "faster this is).",
        "",
        markdown_table(
            [
                "whole volume (image + label)",
                "median per case",
                "sum over cases",
                "slices/s",
                "nibabel / this",
                "Arrow 3d / this",
                ".npy / this",
            ],
            rows,
        ),
    ]
    sec.data = {"median_per_case_s": med, "sum_s": tot, "per_case_s": per_case}
    value = ratio(med["nibabel"], med["accessor"])
    wins = sum(per_case["accessor"][c] < per_case["nibabel"][c] for c in per_case["accessor"])
    sec.ratios.append(
        Ratio(
            "7",
            f"{fmt_ratio(value)} ({fmt_seconds(med['accessor'])} vs "
            f"{fmt_seconds(med['nibabel'])}; faster on {wins} of {len(per_case['accessor'])} "
            "cases)",
            value,
        )
    )
