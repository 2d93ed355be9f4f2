"""The label audit against the statistics on the same store, on 1 and 2 workers (issue #19).

``python -m benchmarks.audit [--quick] [--cases N] [--repeats R] [--workdir DIR] [--json OUT]``
synthesises a CTSpine1K-like raw tree (default 4 cases of 512 x 512 and 100-300 slices;
``--quick`` 2 cases of 256 x 256 and 40-80 slices), ingests it, and times in one run, on the
local threaded scheduler with 1 and with 2 workers:

- ``stats``: :func:`ctspine_zarr.stats.compute_stats` as ``ctspine-zarr stats`` runs it (with
  the nnU-Net sampled fingerprint), and without the sampled fingerprint (the per-vertebra
  and per-case tables alone: its least work);
- ``audit``: :func:`ctspine_zarr.audit.audit_store` with its five checks.

The contenders alternate within each of ``--repeats`` rounds (default 3) and the medians
are reported; before every call the process's store caches are dropped (each opens the store
as a new process would; the operating system's page cache stays warm for all). It prints
the times, the audit's share of each ``stats`` and the speed-up from 1 to 2 workers.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import (
    NOISE_NOTE,
    fmt_seconds,
    fresh_tree,
    machine_info,
    machine_lines,
    markdown_table,
    remove_store,
    work_directory,
    write_json,
)

WORKERS = (1, 2)


def _make(folder: Path, n_cases: int, shape: tuple[int, int], slices: tuple[int, int]) -> Path:
    """Write the raw tree and ingest it; the store."""
    import ctspine_zarr
    from ctspine_zarr.testing.synthetic import make_raw_tree

    raw, store = folder / "raw", folder / "audit.zarr"
    make_raw_tree(fresh_tree(raw), n_cases=n_cases, shape=shape, n_slices=slices, seed=19)
    remove_store(store)
    report = ctspine_zarr.ingest(raw, store, workers=2)
    assert report.ok, report.summary()
    return store


def _contenders(store: Path) -> dict[str, Callable[[int], Any]]:
    from ctspine_zarr.audit import audit_store
    from ctspine_zarr.stats import compute_stats

    return {
        "stats (the command's default: nnU-Net samples)": lambda w: compute_stats(store, workers=w),
        "stats without the sampled fingerprint": lambda w: compute_stats(
            store, workers=w, fingerprint_samples=None
        ),
        "audit (order, gap, fragments, size, overlap)": lambda w: audit_store(store, workers=w),
    }


def _measure(store: Path, repeats: int) -> dict[str, dict[int, float]]:
    """Median seconds of every contender on each worker count, calls alternating."""
    from ctspine_zarr.io.store import forget

    contenders = _contenders(store)
    times: dict[str, dict[int, list[float]]] = {
        name: {w: [] for w in WORKERS} for name in contenders
    }
    for _ in range(repeats):
        for workers in WORKERS:
            for name, run in contenders.items():
                forget(store)
                start = time.perf_counter()
                run(workers)
                times[name][workers].append(time.perf_counter() - start)
    return {name: {w: statistics.median(t) for w, t in by.items()} for name, by in times.items()}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.audit")
    parser.add_argument("--quick", action="store_true", help="2 small cases")
    parser.add_argument("--cases", type=int, help="cases (default 4; --quick 2)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", help="keep the raw tree and the store here")
    parser.add_argument("--json", help="write the numbers as JSON here")
    args = parser.parse_args(argv)
    shape, slices = ((256, 256), (40, 80)) if args.quick else ((512, 512), (100, 300))
    n_cases = args.cases or (2 if args.quick else 4)

    import ctspine_zarr
    from ctspine_zarr.audit import audit_store

    info = machine_info()
    with work_directory(args.workdir) as folder:
        store = _make(folder, n_cases, shape, slices)
        ds = ctspine_zarr.open(store)
        n_slices = int(ds["n_slices"].sum())
        findings = len(audit_store(store).findings)
        medians = _measure(store, args.repeats)

    names = list(medians)
    print(
        f"# Audit and statistics of one store: {n_cases} cases of {shape[0]}x{shape[1]}, "
        f"{n_slices} slices; median of {args.repeats}, threads"
    )
    print()
    rows = [
        (name, *(fmt_seconds(medians[name][w]) for w in WORKERS), f"{by[1] / by[2]:.2f}x")
        for name, by in medians.items()
    ]
    audit = medians[names[2]]
    for stats_name in names[:2]:
        stats = medians[stats_name]
        rows.append(
            (
                f"audit / {stats_name}",
                *(f"{audit[w] / stats[w]:.2f}" for w in WORKERS),
                "",
            )
        )
    print(markdown_table(["", "1 worker", "2 workers", "speed-up 1 -> 2"], rows))
    print()
    print(f"The audit found {findings} findings (a clean synthetic tree: none expected).")
    print()
    for line in machine_lines(info):
        print(line)
    print(NOISE_NOTE)
    if args.json:
        write_json(
            args.json,
            {
                "cases": n_cases,
                "shape": shape,
                "slices": n_slices,
                "repeats": args.repeats,
                "seconds": {
                    name: {str(w): s for w, s in by.items()} for name, by in medians.items()
                },
                "machine": info,
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
