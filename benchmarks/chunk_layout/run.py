"""Run the chunk-layout benchmark: inputs, candidates, contenders, timings, requests, loaders."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import fresh_tree, machine_info, work_directory, write_json

from .data import Candidate, Case, Config, Inputs, build_candidates, open_with, prepare
from .lean import Box
from .reference import (
    LeanPatches,
    NnunetCases,
    NnunetPatches,
    have_nnunet,
    have_torch,
    loader_rate,
    normaliser,
    save_nnunet,
)
from .remote import count_requests
from .report import Results, print_report
from .timing import (
    Contender,
    Op,
    lean_contender,
    measure,
    medians,
    morton_runs,
    plain_truth,
    random_picks,
    time_writes,
    whole,
    zarr_contender,
)

PACKAGES = (
    "ctspine_zarr",
    "numpy",
    "zarr",
    "zarrs",
    "numcodecs",
    "blosc2",
    "nnunetv2",
    "torch",
    "imagecodecs",
    "moto",
    "s3fs",
)
ZARRS = "zarrs.ZarrsCodecPipeline"
#: Lean variants of the side table: (column, threads or None for the configured, decoder).
LEAN_VARIANTS = (
    ("lean 1 thread", 1, "numcodecs"),
    ("lean blosc2 1 thread", 1, "blosc2"),
    ("lean blosc2", None, "blosc2"),
)


def _have_blosc2() -> bool:
    try:
        import blosc2  # noqa: F401
    except ImportError:
        return False
    return True


def _contenders(
    candidates: Sequence[Candidate], cases: Sequence[Case], cfg: Config, *, variants: bool
) -> tuple[list[Contender], list[Contender], bool]:
    """(every reader of every candidate, the plain readers only, whether zarrs is here)."""
    truth = plain_truth(cases)
    full: list[Contender] = []
    plain: list[Contender] = []
    zarrs_found = True
    for candidate in candidates:
        row = candidate.name
        mine = [zarr_contender(row, "zarr", dict(candidate.arrays), truth)]
        zarrs = open_with(candidate, ZARRS)
        if zarrs is None:
            zarrs_found = False
        else:
            mine.append(zarr_contender(row, "zarrs", zarrs, truth))
        mine.append(lean_contender(row, "lean", candidate, truth, threads=cfg.threads))
        plain += mine
        full += mine
        if variants:
            for column, threads, decoder in LEAN_VARIANTS:
                if decoder == "blosc2" and not _have_blosc2():
                    continue
                full.append(
                    lean_contender(
                        row,
                        column,
                        candidate,
                        truth,
                        threads=threads or cfg.threads,
                        decoder=decoder,
                    )
                )
    return full, plain, zarrs_found


def _accessor(store: Path, cases: Sequence[Case], row: str) -> Contender:
    """Today's ``ds.ctspine.slice`` (the package's lean slice reader)."""
    import ctspine_zarr

    ds = ctspine_zarr.open(store)
    by_id = {c.case_id: c for c in cases}

    def read(case_id: str, box: Box) -> tuple[Any, Any]:
        got = ds.ctspine.slice(case_id, box[0][0])
        return got["image"].values[None], got["label"].values[None]

    def truth(case_id: str, box: Box) -> tuple[np.ndarray, np.ndarray]:
        z = box[0][0]
        return by_id[case_id].image[z : z + 1], by_id[case_id].label[z : z + 1]

    return Contender(row, "accessor", read, truth)


def _sequence(store: Path, patch: tuple[int, int, int]) -> Contender:
    """Today's ``PatchSequence``: one item per call (its own random boxes, 33 % foreground)."""
    from ctspine_zarr.sampling import PatchSequence

    seq = PatchSequence(store, None, patch_size=patch, samples_per_epoch=10_000, seed=0)
    counter = iter(range(10**9))

    def read(case_id: str, box: Box) -> tuple[Any, Any]:
        (item,) = seq.getitems([next(counter) % len(seq)])
        return item["image"], item["segmentation"]

    return Contender("PatchSequence (today's store)", "ctspine_zarr", read, None)


def _nnunet(folder: Path, inputs: Inputs, cfg: Config, results: Results) -> dict[str, NnunetCases]:
    """Save the cases as nnU-Net does, once per patch size; its readers by row name."""
    if not have_nnunet():
        results.notes.append("nnU-Net: nnunetv2 is not installed here; its rows are left out")
        return {}
    root = fresh_tree(folder / "nnunet")
    readers = {}
    for scheme, patch in NNUNET_ROWS(cfg):
        norm = normaliser(inputs.cases, scheme)
        size = "x".join(map(str, patch))
        row = f"nnU-Net blosc2, {scheme} norm., chunks for {size}"
        sub = root / f"{scheme}-{size}"
        seconds, nbytes, choice = save_nnunet(sub, inputs.cases, patch, norm)
        results.nnunet[row] = {"write": seconds, "bytes": nbytes, "choice": choice}
        results.normalisers[row] = norm
        readers[row] = NnunetCases(sub, [c.case_id for c in inputs.cases])
    return readers


def NNUNET_ROWS(cfg: Config) -> list[tuple[str, tuple[int, int, int]]]:  # noqa: N802
    """nnU-Net's files: its CT normalisation for both patch sizes, z-score for the first."""
    return [("CT", cfg.patches[0]), ("CT", cfg.patches[1]), ("z-score", cfg.patches[0])]


def _nnunet_contenders(
    readers: dict[str, NnunetCases], inputs: Inputs, results: Results
) -> list[Contender]:
    by_id = {c.case_id: c for c in inputs.cases}
    out = []
    for row, reader in readers.items():

        def truth(
            case_id: str, box: Box, norm: Any = results.normalisers[row]
        ) -> tuple[np.ndarray, np.ndarray]:
            s = tuple(slice(lo, hi) for lo, hi in box)
            case = by_id[case_id]
            return norm(case_id, case.image[s]), case.label[s].astype(np.int16)

        out.append(Contender(row, "nnU-Net", reader.patch, truth))
    return out


def _loaders(
    inputs: Inputs,
    candidates: Sequence[Candidate],
    nnunet: dict[str, NnunetCases],
    cfg: Config,
    results: Results,
) -> None:
    """Patches per second through 2-worker DataLoaders, the loaders alternating per round."""
    if not have_torch():
        results.notes.append("DataLoaders: torch is not installed here; left out")
        return
    from ctspine_zarr.torch import PatchDataset

    patch = cfg.patches[0]
    n = cfg.loader_patches
    total = n + 2 * cfg.loader_batch
    rng = np.random.default_rng(cfg.seed + 7)
    boxes = random_picks(inputs.cases, patch, total, rng)
    case_ids = [c.case_id for c in inputs.cases]
    makers: list[tuple[str, Any]] = [
        (
            "PatchDataset (today's store)",
            lambda r: PatchDataset(
                inputs.store, None, patch_size=patch, samples_per_epoch=total, seed=r
            ),
        )
    ]
    for row, reader in nnunet.items():
        if "chunks for " + "x".join(map(str, patch)) not in row:
            continue
        makers.append((row, lambda r, f=reader.folder: NnunetPatches(f, case_ids, boxes)))
    for candidate in candidates:
        makers.append(
            (
                f"lean prototype, {candidate.name}",
                lambda r, c=candidate: LeanPatches(c.arrays, boxes),
            )
        )
    rates: dict[str, list[float]] = {}
    for r in range(cfg.repeats):
        k = r % len(makers)
        for name, make in makers[k:] + makers[:k]:
            rates.setdefault(name, []).append(loader_rate(make(r), n, cfg.loader_batch))
    results.loaders = {name: statistics.median(v) for name, v in rates.items()}


def run(folder: Path, cfg: Config) -> Results:
    """Measure everything in ``folder``; return the results."""
    results = Results(cfg=cfg, machine=machine_info(PACKAGES))
    inputs = prepare(folder, cfg)
    results.inputs = inputs
    results.notes += inputs.notes
    layouts = fresh_tree(folder / "layouts")
    threads = cfg.threads
    candidates = build_candidates(
        layouts, inputs.cases, cfg.layouts, "synth", threads, lever=cfg.lever
    )
    real = (
        build_candidates(layouts, inputs.real, cfg.layouts, "realct", threads)
        if inputs.real
        else []
    )
    results.candidates, results.real = candidates, real
    nnunet = _nnunet(folder, inputs, cfg, results)

    full, plain, zarrs_found = _contenders(candidates, inputs.cases, cfg, variants=True)
    if not zarrs_found:
        results.notes.append("zarrs: not installed here; its columns are n/a")
    today = candidates[0].name
    rng = np.random.default_rng(cfg.seed)
    rounds = range(cfg.repeats)
    patch_a, patch_b = cfg.patches
    nn = _nnunet_contenders(nnunet, inputs, results)
    ops = [
        Op(
            "slice",
            [random_picks(inputs.cases, None, cfg.slice_picks, rng) for _ in rounds],
            [*full, _accessor(inputs.store, inputs.cases, today)],
        ),
        Op(
            "patch_a",
            [random_picks(inputs.cases, patch_a, cfg.patch_picks, rng) for _ in rounds],
            [*full, *nn],
        ),
        Op(
            "patch_b",
            [random_picks(inputs.cases, patch_b, cfg.big_patch_picks, rng) for _ in rounds],
            [*full, *nn],
        ),
        Op(
            "volume",
            [[whole(inputs.cases[r % len(inputs.cases)])] for r in rounds],
            [*plain, *nn],
        ),
        Op(
            "sequence",
            [[("", ((0, 0), (0, 0), (0, 0)))] * cfg.sequence_picks for _ in rounds],
            [_sequence(inputs.store, patch_a)],
        ),
    ]
    if real:
        real_full, _, _ = _contenders(real, inputs.real, cfg, variants=False)
        ops.append(
            Op(
                "real_slice",
                [[whole(c) for c in inputs.real] for _ in rounds],
                real_full,
            )
        )
    print(f"timing reads: {cfg.repeats} rounds", file=sys.stderr)
    results.times = medians(measure(ops, cfg.repeats))
    print("timing writes", file=sys.stderr)
    writes = time_writes(
        candidates, inputs.cases, layouts / "write-scratch.zarr", cfg.repeats, threads, zarrs_found
    )
    results.writes = {key: statistics.median(v) for key, v in writes.items()}
    results.morton = {
        c.name: morton_runs(c, inputs.cases[0], layouts / "morton-scratch.zarr") for c in candidates
    }
    print("timing DataLoaders", file=sys.stderr)
    _loaders(inputs, candidates, nnunet, cfg, results)
    # after the DataLoaders: their forked workers must not inherit S3 sessions
    print("counting requests over S3", file=sys.stderr)
    case = inputs.cases[0]
    nz, ny, nx = case.image.shape
    pz, py, px = (min(s, n) for s, n in zip(patch_a, case.image.shape, strict=True))
    z = min(nz - pz, 3)
    y0 = min((ny - py) * 2 // 5 + 5, ny - py)  # on no tile border
    x0 = min((nx - px) // 3 + 13, nx - px)
    patch: Box = ((z, z + pz), (y0, y0 + py), (x0, x0 + px))
    results.requests = count_requests(candidates, case, z + 1, patch)
    results.load_end = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark from the command line; print the tables."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.chunk_layout",
        description="Choose the inner chunk layout by measurement (issue #18), against nnU-Net.",
    )
    parser.add_argument("--quick", action="store_true", help="tiny inputs (a smoke test)")
    parser.add_argument("--workdir", help="keep the raw trees and the stores here")
    parser.add_argument("--repeats", type=int, default=5, help="rounds (default: 5)")
    parser.add_argument("--json", help="also write every number to this JSON file")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    cfg = Config.quick(args.repeats) if args.quick else Config(repeats=args.repeats)
    with work_directory(args.workdir, prefix="ctspine-layout-") as folder:
        results = run(folder, cfg)
        print_report(results)
    if args.json:
        write_json(args.json, results.to_json())
    return 0
