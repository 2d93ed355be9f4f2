"""Section ``patch``: the 3D patches ``PatchSequence`` draws, read by every contender."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from benchmarks.common import markdown_table, summarize
from benchmarks.study.anchors import Box, arrow_box, clip_box, file_box, same_values
from benchmarks.study.config import log
from benchmarks.study.contenders import time_interleaved
from benchmarks.study.results import Section, latency_row, speed
from benchmarks.study.tree import BenchCase
from benchmarks.study.workspace import Workspace

PATCH_LABELS = {
    "nibabel": "nibabel `dataobj[box]`, files kept open, indexed [anchor]",
    "arrow3d": "HF Arrow 3d: row read, then cropped [anchor]",
    "npy": ".npy memmap: `np.array(image[box])`, `np.array(label[box])` [anchor]",
    "ours": "**ours** `PatchSequence[i]` (float32 / int64, padded)",
}

#: The anchors of the ratio columns, in the table's order.
ANCHORS = ("nibabel", "arrow3d", "npy")


def section_patch(ws: Workspace, sec: Section) -> None:
    """3D patch reads: the patches PatchSequence draws, read by every contender."""
    from ctspine_zarr.sampling import PatchSequence

    cfg, store = ws.cfg, ws.ensure_store()
    con, table, arrays = ws.anchors("3d")
    by_id = {c.case_id: c for c in ws.cases}
    row_of = {c.case_id: i for i, c in enumerate(ws.cases)}
    n = cfg.patches + cfg.patch_warmup
    seq = PatchSequence(
        store, split=None, patch_size=cfg.patch_size, samples_per_epoch=n, seed=cfg.seed
    )
    plans: list[tuple[BenchCase, Box]] = []
    checks: dict[str, bool] = {}
    for i in range(n):
        item = seq[i]
        case = by_id[item["patient_id"]]
        shape_zyx = tuple(int(v) for v in np.asarray(con.arrays[case.case_id][0].shape))
        start = [int(v) for v in item["patch_start"]]
        box = clip_box(start, cfg.patch_size, shape_zyx)
        plans.append((case, box))
        if case.case_id not in checks:  # the nibabel box holds our patch's voxels
            inner = tuple(slice(b.start - s, b.stop - s) for b, s in zip(box, start, strict=True))
            mine = item["image"][inner]
            fb = file_box(case, ws.ornt[case.case_id], box)
            theirs = con.nifti[case.case_id][0].dataobj[fb]
            checks[case.case_id] = same_values(mine, theirs)

    def ours(case: BenchCase, i: int) -> object:
        return seq[i]

    def nibabel_patch(case: BenchCase, i: int) -> object:
        image, label = con.nifti[case.case_id]
        fb = file_box(case, ws.ornt[case.case_id], plans[i][1])
        return image.dataobj[fb], label.dataobj[fb]

    def npy_patch(case: BenchCase, i: int) -> object:
        image, label = arrays[case.case_id]
        box = plans[i][1]
        return np.array(image[box]), np.array(label[box])

    def arrow_patch(case: BenchCase, i: int) -> object:
        row = table[row_of[case.case_id]]
        ab = arrow_box(case, ws.ornt[case.case_id], plans[i][1])
        return np.array(row["image"][ab]), np.array(row["segmentation"][ab])

    readers: dict[str, Callable[[BenchCase, int], object]] = {
        "nibabel": nibabel_patch,
        "arrow3d": arrow_patch,
        "npy": npy_patch,
        "ours": ours,
    }
    pairs = [(plans[i][0], i) for i in range(n)]
    warm, timed = pairs[: cfg.patch_warmup], pairs[cfg.patch_warmup :]
    log(f"patch: {len(timed)} patches x {len(readers)} contenders ...")
    samples = time_interleaved(readers, timed, warm)
    sums = {k: summarize(v) for k, v in samples.items()}
    rows = [
        latency_row(label, sums[key], *(speed(sums[a].p50, sums[key].p50) for a in ANCHORS))
        for key, label in PATCH_LABELS.items()
    ]
    pz, py, px = cfg.patch_size
    fg = int(np.count_nonzero(seq.is_foreground()[cfg.patch_warmup :]))
    sec.lines += [
        f"{len(timed)} patches of {pz}x{py}x{px} (z, y, x) drawn by `PatchSequence(store, "
        f"split=None, patch_size=({pz}, {py}, {px}), seed={cfg.seed})` ({fg} forced to hold a "
        "vertebra), read by every contender at the same place (clipped to the volume; ours "
        f"also pads), interleaved, {len(warm)} warm-up patches excluded. Mapping checked on "
        f"one patch per case: {'all match' if all(checks.values()) else checks}. Ratios: "
        "anchor / this on p50.",
        "",
        markdown_table(
            [
                "3D patch (image + label)",
                "n",
                "p50",
                "p95",
                "nibabel / this",
                "Arrow 3d / this",
                ".npy / this",
            ],
            rows,
        ),
    ]
    sec.data = {
        "summary_s": {k: s.to_json() for k, s in sums.items()},
        "samples_s": samples,
        "patches": [[c.case_id, [[s.start, s.stop] for s in b]] for c, b in plans],
        "checks": checks,
    }
