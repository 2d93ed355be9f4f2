"""Section ``slices``: random slice-pair latency of every contender on the same pairs.

nibabel kept open (anchor), an Arrow 2d row, the .npy memmap, our xarray accessor
(``ds.ctspine.slice(case, z).compute()``) and our training-loader item (``SliceSequence``),
interleaved, p50 / p95.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from benchmarks.common import fmt_ratio, fmt_seconds, markdown_table, ratio, summarize
from benchmarks.study.anchors import arrow_slice, same_values
from benchmarks.study.config import log
from benchmarks.study.contenders import (
    Contenders,
    check_mapping,
    have_indexed_gzip,
    random_pairs,
    time_interleaved,
)
from benchmarks.study.results import Ratio, Section, latency_row, speed
from benchmarks.study.tree import BenchCase
from benchmarks.study.workspace import Workspace

SLICE_LABELS = {
    "nibabel": "nibabel + indexed_gzip, files kept open, seek index built [anchor]",
    "arrow2d": "HF Arrow 2d: one random row, `with_format('numpy')` [anchor]",
    "npy": ".npy memmap: `np.array(image[z])`, `np.array(label[z])` [anchor]",
    "accessor": "**ours: xarray accessor** `ds.ctspine.slice(case, z).compute()`",
    "sequence": "**ours: training loader item** `SliceSequence[i]` (float32 / int64)",
}


SLICE_SHORT = {
    "nibabel": "nibabel",
    "arrow2d": "Arrow 2d",
    "npy": ".npy",
    "accessor": "ours accessor",
    "sequence": "ours SliceSequence",
}


def section_slices(ws: Workspace, sec: Section) -> None:
    """Random slice-pair latency of every contender on the same pairs, interleaved."""
    from ctspine_zarr.sampling import SliceSequence

    cfg, store, cases = ws.cfg, ws.ensure_store(), ws.cases
    con, table, arrays = ws.anchors("2d")
    seq = SliceSequence(store, split=None)
    item_of = {
        (seq.case_ids[int(c)], int(z)): i
        for i, (c, z) in enumerate(zip(seq.item_case, seq.item_z, strict=True))
    }
    offsets: dict[str, int] = {}
    total = 0
    for case in cases:
        offsets[case.case_id] = total
        total += case.n_z
    if len(table) != total or len(seq) != total:
        raise RuntimeError(f"slice counts differ: Arrow {len(table)}, ours {len(seq)}, {total}")

    def arrow_row(case: BenchCase, z: int) -> object:
        row = table[offsets[case.case_id] + arrow_slice(case, z)]
        return row["image"], row["segmentation"]

    def npy_pair(case: BenchCase, z: int) -> object:
        image, label = arrays[case.case_id]
        return np.array(image[z]), np.array(label[z])

    def sequence_item(case: BenchCase, z: int) -> object:
        return seq[item_of[(case.case_id, z)]]

    readers: dict[str, Callable[[BenchCase, int], object]] = {
        "nibabel": con.nibabel_warm,
        "arrow2d": arrow_row,
        "npy": npy_pair,
        "accessor": con.accessor_compute,
        "sequence": sequence_item,
    }
    checks = check_slices(cases, con, arrow_row, npy_pair, sequence_item)
    rng = np.random.default_rng(cfg.seed + 1)
    warm = random_pairs(cases, cfg.warmup, rng)
    pairs = random_pairs(cases, cfg.reads, rng)
    log(f"slices: {len(pairs)} pairs x {len(readers)} contenders ...")
    samples = time_interleaved(readers, pairs, warm)
    sums = {k: summarize(v) for k, v in samples.items()}
    by_variant: dict[str, dict[str, list[float]]] = {}
    for n, (case, _) in enumerate(pairs):
        for key, ts in samples.items():
            by_variant.setdefault(case.variant, {}).setdefault(key, []).append(ts[n])
    rows = [
        latency_row(
            label,
            sums[key],
            speed(sums["nibabel"].p50, sums[key].p50),
            speed(sums["nibabel"].p95, sums[key].p95),
            speed(sums["arrow2d"].p50, sums[key].p50),
            speed(sums["npy"].p50, sums[key].p50),
        )
        for key, label in SLICE_LABELS.items()
    ]
    sec.lines += [
        f"{len(pairs)} random (case, z) pairs (case uniform, then z uniform), the same pairs "
        f"for every contender, {len(warm)} warm-up pairs excluded, contenders interleaved "
        "(rotating order). Every contender reads the same anatomical slice (checked per case: "
        f"{'all match' if all(checks.values()) else f'MISMATCH {checks}'}). "
        "Ratios are anchor / this: how many times faster this is.",
        "",
        markdown_table(
            [
                "slice pair (image + label)",
                "n",
                "p50",
                "p95",
                "nibabel / this p50",
                "nibabel / this p95",
                "Arrow 2d / this p50",
                ".npy / this p50",
            ],
            rows,
        ),
        "",
        "p50 by header variant"
        + (
            " (the sagittal file holds an axial plane across its 2nd axis: nibabel "
            "decompresses nearly the whole file for it, hence its p95):"
            if "sagittal" in by_variant
            else ":"
        ),
        "",
        markdown_table(
            ["variant", "pairs", *(SLICE_SHORT[k] for k in SLICE_LABELS)],
            [
                [
                    variant,
                    str(len(ts["nibabel"])),
                    *(fmt_seconds(statistics.median(ts[k])) for k in SLICE_LABELS),
                ]
                for variant, ts in sorted(by_variant.items())
            ],
        ),
        "",
        f"nibabel reads through {con.gzip_file_type()} (HAVE_INDEXED_GZIP: "
        f"{have_indexed_gzip()}); building the seek indexes of all files took "
        f"{fmt_seconds(ws.gzip_index_s)} beforehand, not counted.",
    ]
    sec.data = {
        "summary_s": {k: s.to_json() for k, s in sums.items()},
        "samples_s": samples,
        "pairs": [[c.case_id, z] for c, z in pairs],
        "p50_by_variant_s": {
            v: {k: statistics.median(t) for k, t in ts.items()} for v, ts in by_variant.items()
        },
        "checks": checks,
        "gzip_index_build_s": ws.gzip_index_s,
    }
    loader = ratio(sums["arrow2d"].p50, sums["sequence"].p50)
    accessor = ratio(sums["nibabel"].p50, sums["accessor"].p50)
    sec.ratios += [
        Ratio(
            "3a",
            f"{fmt_ratio(loader)} ({fmt_seconds(sums['sequence'].p50)} vs "
            f"{fmt_seconds(sums['arrow2d'].p50)}; p95 "
            f"{speed(sums['arrow2d'].p95, sums['sequence'].p95)})",
            loader,
        ),
        Ratio(
            "4",
            f"{fmt_ratio(accessor)} ({fmt_seconds(sums['accessor'].p50)} vs "
            f"{fmt_seconds(sums['nibabel'].p50)}; p95 "
            f"{speed(sums['nibabel'].p95, sums['accessor'].p95)})",
            accessor,
        ),
    ]


def check_slices(
    cases: Sequence[BenchCase],
    con: Contenders,
    arrow_row: Callable[[BenchCase, int], object],
    npy_pair: Callable[[BenchCase, int], object],
    sequence_item: Callable[[BenchCase, int], object],
) -> dict[str, bool]:
    """Check, on one slice per case, that every contender reads the store's slice."""
    result = dict(check_mapping(con, cases))
    for case in cases:
        z = case.n_z // 3
        pair: Any = con.zarr_direct(case, z)
        image, label = (np.asarray(a) for a in pair)
        arrow = arrow_row(case, z)
        npy = npy_pair(case, z)
        item: Any = sequence_item(case, z)
        assert isinstance(arrow, tuple) and isinstance(npy, tuple)
        result[case.case_id] = bool(
            result[case.case_id]
            and same_values(arrow[0], image)
            and same_values(arrow[1], label)
            and np.array_equal(npy[0], image)
            and np.array_equal(npy[1], label)
            and np.array_equal(item["image"], image)
            and np.array_equal(item["segmentation"], label)
        )
    return result
