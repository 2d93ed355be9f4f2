"""Benchmark ``ctspine_zarr.stats`` against a serial nibabel loop over the ``.nii.gz`` files.

One run generates a synthetic CTSpine1K-like raw tree (512x512 in-plane; default 4 cases of
100-300 slices, ``--quick`` 2 cases of 256x256 and 40-80 slices), ingests it, and measures,
side by side, each in a fresh subprocess:

1. ``nibabel loop``: serial; per case, load image and label with nibabel, reorient to the
   closest canonical orientation, and compute the per-vertebra table (voxels, volume, HU
   mean/std/min/max/0.5/50/99.5 percentiles, z extent, world centroid) and the per-case HU
   statistics with numpy (foreground voxels extracted once, then per label);
2. ``stats, threads``: :func:`ctspine_zarr.stats.compute_stats` on the local threaded
   scheduler (2 threads), without the nnU-Net sampled fingerprint (the same work as 1.), and
   with it (the default);
3. ``stats, LocalCluster``: the same on a 2-worker ``distributed.LocalCluster`` (processes,
   one thread each, as ``scheduler="distributed", workers=2`` starts it), cluster start-up
   included and shown apart;
4. the same statistics on a dataset 4x larger (each case ingested 4 times under new ids), for
   the memory bound.

Each contender runs ``--repeat`` times (default 3), interleaved with the others, and the
median is reported. Wall time is measured inside the subprocess around the computation
(imports excluded). Peak
memory is the largest sum of the resident set sizes of the subprocess and all its descendants
(LocalCluster workers and nanny included), polled every 20 ms with psutil. The tables of 1.
and 2. are compared (they must agree).

Run from the repository root::

    python -m benchmarks.stats [--quick] [--cases N] [--workdir DIR] [--json OUT]

Timings on a shared machine are noisy; read the ratios.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    NOISE_NOTE,
    fmt_bytes,
    fmt_ratio,
    fresh_tree,
    machine_info,
    machine_lines,
    markdown_table,
    ratio,
    remove_store,
    write_json,
)

GOAL_SPEEDUP = 3.0
GOAL_PEAK_BYTES = 2 * 1024**3
BIG_FACTOR = 4
POLL_SECONDS = 0.02
PERCENTILES = (0.5, 50.0, 99.5)


# --------------------------------------------------------------------------------------------
# The nibabel loop (runs in a subprocess)
# --------------------------------------------------------------------------------------------


def nibabel_tables(raw: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Serially compute the per-vertebra and per-case tables from the ``.nii.gz`` files."""
    import nibabel as nib

    from ctspine_zarr.vertebrae import ANATOMICAL_ORDER

    rank = {v: i for i, v in enumerate(ANATOMICAL_ORDER)}
    vertebrae: list[dict[str, Any]] = []
    cases: list[dict[str, Any]] = []
    pairs = []
    for image_path in (raw / "rawdata" / "volumes").glob("*/*.nii.gz"):
        case_id = image_path.name.removesuffix(".nii.gz")
        label_path = raw / "rawdata" / "labels" / image_path.parent.name / f"{case_id}_seg.nii.gz"
        pairs.append((case_id, image_path, label_path))
    for case_id, image_path, label_path in sorted(pairs):
        img = nib.as_closest_canonical(nib.load(image_path))
        lab = nib.as_closest_canonical(nib.load(label_path))
        image = np.asanyarray(img.dataobj).transpose(2, 1, 0)  # canonical [z, y, x]
        label = np.asanyarray(lab.dataobj).transpose(2, 1, 0).astype(np.uint8)
        affine = img.affine
        sx, sy, sz = (float(z) for z in img.header.get_zooms()[:3])
        cases.append(
            {
                "case": case_id,
                "hu_min": float(image.min()),
                "hu_max": float(image.max()),
                "hu_mean": float(image.mean()),
                "hu_std": float(image.std()),
                "foreground_voxels": int(np.count_nonzero(label)),
            }
        )
        index = np.flatnonzero(label)
        fg_label = label.reshape(-1)[index]
        fg_value = image.reshape(-1)[index]
        z, y, x = np.unravel_index(index, label.shape)
        present = [int(v) for v in np.unique(fg_label)]
        for value in sorted(present, key=lambda v: (rank.get(v, 1000 + v), v)):
            sel = fg_label == value
            vals = fg_value[sel]
            zs = z[sel]
            mean_xyz = np.array([x[sel].mean(), y[sel].mean(), zs.mean()])
            world = affine[:3, :3] @ mean_xyz + affine[:3, 3]
            p005, p50, p995 = (float(np.percentile(vals, q)) for q in PERCENTILES)
            z0, z1 = int(zs.min()), int(zs.max()) + 1
            vertebrae.append(
                {
                    "case": case_id,
                    "label": value,
                    "voxels": int(sel.sum()),
                    "volume_ml": int(sel.sum()) * sz * sy * sx / 1000.0,
                    "hu_mean": float(vals.mean()),
                    "hu_std": float(vals.std()),
                    "hu_min": float(vals.min()),
                    "hu_max": float(vals.max()),
                    "hu_p005": p005,
                    "hu_p50": p50,
                    "hu_p995": p995,
                    "z_extent_slices": z1 - z0,
                    "z_extent_mm": (z1 - z0) * sz,
                    "centroid_x_mm": float(world[0]),
                    "centroid_y_mm": float(world[1]),
                    "centroid_z_mm": float(world[2]),
                }
            )
        del image, label, img, lab
    return vertebrae, cases


def _child(kind: str, path: str, out: str) -> int:
    """Subprocess entry: run one contender, write its timing (and table) as JSON."""
    import pandas as pd

    from ctspine_zarr.stats import compute_stats

    result: dict[str, Any] = {"kind": kind}
    start = time.perf_counter()
    if kind == "nibabel":
        vertebrae, cases = nibabel_tables(Path(path))
        result["seconds"] = time.perf_counter() - start
        pd.DataFrame(vertebrae).to_parquet(out + ".vertebrae.parquet", index=False)
    else:
        scheduler, samples = kind.split(":")
        fingerprint_samples = None if samples == "none" else "nnunet"
        if scheduler == "threads":
            stats = compute_stats(
                path,
                scheduler="threads",
                workers=2,
                progress=False,
                fingerprint_samples=fingerprint_samples,
            )
        else:  # what scheduler="distributed", workers=2 does, with its start-up timed apart
            from distributed import Client, LocalCluster

            with (
                LocalCluster(
                    n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
                ) as cluster,
                Client(cluster) as client,
            ):
                client.run(importlib.import_module, "ctspine_zarr.stats")  # warm the workers
                result["startup_seconds"] = time.perf_counter() - start
                stats = compute_stats(
                    path,
                    scheduler=client,
                    progress=False,
                    fingerprint_samples=fingerprint_samples,
                )
        result["seconds"] = time.perf_counter() - start
        result["block_tasks"] = stats.info["block_tasks"]
        stats.vertebrae.to_parquet(out + ".vertebrae.parquet", index=False)
    Path(out).write_text(json.dumps(result), encoding="utf-8")
    return 0


# --------------------------------------------------------------------------------------------
# Measuring a contender
# --------------------------------------------------------------------------------------------


def _tree_rss(proc: Any) -> int:
    import psutil

    total = 0
    try:
        members = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for p in members:
        try:
            total += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def measure(kind: str, path: Path, workdir: Path) -> dict[str, Any]:
    """Run one contender in a subprocess; return its seconds and peak RSS of the tree."""
    import psutil

    out = workdir / f"result-{kind.replace(':', '-')}-{path.name}.json"
    cmd = [sys.executable, "-m", "benchmarks.stats", "--child", kind, str(path), str(out)]
    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(cmd, cwd=repo, env=env)
    ps = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_rss(ps))
        time.sleep(POLL_SECONDS)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} on {path} failed with exit code {proc.returncode}")
    result = json.loads(out.read_text(encoding="utf-8"))
    result["peak_rss"] = peak
    result["table"] = str(out) + ".vertebrae.parquet"
    return result


def _median_trial(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """The trial of median wall time, with every wall time and the largest peak RSS."""
    ordered = sorted(trials, key=lambda t: t["seconds"])
    out = dict(ordered[(len(ordered) - 1) // 2])
    out["all_seconds"] = [t["seconds"] for t in trials]
    out["peak_rss"] = max(t["peak_rss"] for t in trials)
    return out


def compare_tables(nibabel_table: str, stats_table: str) -> str:
    """Compare the two per-vertebra tables; return a one-line verdict."""
    import pandas as pd

    a = pd.read_parquet(nibabel_table).sort_values(["case", "label"]).reset_index(drop=True)
    b = pd.read_parquet(stats_table).sort_values(["case", "label"]).reset_index(drop=True)
    b = b[a.columns]
    if len(a) != len(b) or list(a["case"]) != list(b["case"]):
        return f"tables differ in rows ({len(a)} vs {len(b)})"
    worst = 0.0
    exact = ("label", "voxels", "hu_min", "hu_max", "hu_p005", "hu_p50", "hu_p995")
    for col in a.columns:
        if col == "case":
            continue
        x, y = a[col].to_numpy(dtype=float), b[col].to_numpy(dtype=float)
        if col in exact and not np.array_equal(x, y):
            return f"tables differ in {col}"
        rel = np.abs(x - y) / np.maximum(np.abs(x), 1e-300)
        worst = max(worst, float(np.max(rel, initial=0.0)))
    return f"tables agree ({len(a)} rows; exact columns equal, others within {worst:.1e} rel)"


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def make_data(workdir: Path, n_cases: int, size: int, slices: tuple[int, int]) -> dict[str, Any]:
    """Generate the raw tree, its 4x copy, and ingest both (reused when already there)."""
    import ctspine_zarr
    from ctspine_zarr.testing.synthetic import make_raw_tree, write_split_file

    marker = workdir / "benchmark-stats-tree.json"
    spec = {"cases": n_cases, "size": size, "slices": list(slices)}
    if marker.is_file() and json.loads(marker.read_text())["spec"] == spec:
        return json.loads(marker.read_text())
    fresh_tree(workdir / "raw4")
    started = time.perf_counter()
    cases = make_raw_tree(
        fresh_tree(workdir / "raw"), n_cases=n_cases, shape=(size, size), n_slices=slices
    )
    generated = time.perf_counter() - started
    sections: dict[str, list[str]] = {"trainset": [], "test_public": [], "test_private": []}
    for case in cases:
        for k in range(BIG_FACTOR):
            suffix = "" if k == 0 else f"-copy{k}"
            image = workdir / "raw4" / case.image_path.relative_to(workdir / "raw")
            label = workdir / "raw4" / case.label_path.relative_to(workdir / "raw")
            image = image.with_name(f"{case.case_id}{suffix}.nii.gz")
            label = label.with_name(f"{case.case_id}{suffix}_seg.nii.gz")
            image.parent.mkdir(parents=True, exist_ok=True)
            label.parent.mkdir(parents=True, exist_ok=True)
            os.link(case.image_path, image)
            os.link(case.label_path, label)
            if case.split:
                sections[case.split].append(image.name)
    write_split_file(workdir / "raw4" / "metadata" / "data_split.txt", sections)
    info: dict[str, Any] = {"spec": spec, "generate_seconds": generated}
    for raw, store in (("raw", "store.zarr"), ("raw4", "store4.zarr")):
        remove_store(workdir / store)
        report = ctspine_zarr.ingest(workdir / raw, workdir / store, workers=2, progress=False)
        if not report.ok:
            raise RuntimeError(report.summary())
        ds = ctspine_zarr.open(workdir / store)
        info[store] = {
            "cases": int(ds.sizes["case"]),
            "slices": int(ds["n_slices"].sum()),
            "voxels": int((ds["n_slices"] * ds["n_y"] * ds["n_x"]).sum()),
        }
    marker.write_text(json.dumps(info, indent=2), encoding="utf-8")
    return info


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 small cases (256x256, 40-80 slices)")
    ap.add_argument("--cases", type=int, default=None, help="cases of the base dataset")
    ap.add_argument("--workdir", help="keep data here (reused when the spec matches)")
    ap.add_argument("--json", help="write the results as JSON")
    ap.add_argument("--skip-big", action="store_true", help="no run on the 4x dataset")
    ap.add_argument(
        "--repeat", type=int, default=None, help="runs per contender (median; default 3, quick 1)"
    )
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return _child(*args.child)

    n_cases = args.cases or (2 if args.quick else 4)
    args.repeat = args.repeat or (1 if args.quick else 3)
    size = 256 if args.quick else 512
    slices = (40, 80) if args.quick else (100, 300)
    info = machine_info()
    for line in machine_lines(info):
        print(line)
    print(NOISE_NOTE)
    tmp = None
    if args.workdir:
        workdir = Path(args.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="ctspine-bench-stats-")
        workdir = Path(tmp.name)
    try:
        data = make_data(workdir, n_cases, size, slices)
        base, big = data["store.zarr"], data["store4.zarr"]
        print(
            f"data: {base['cases']} cases, {base['slices']} slices of {size}x{size} "
            f"({base['voxels'] / 1e6:.0f} Mvoxels); 4x: {big['cases']} cases, "
            f"{big['slices']} slices"
        )
        runs: list[tuple[str, str, dict[str, Any]]] = []
        plan = [
            ("nibabel loop (serial)", "base", "nibabel", workdir / "raw"),
            ("stats, threads (2), no sampling", "base", "threads:none", workdir / "store.zarr"),
            ("stats, threads (2), + nnU-Net sampling", "base", "threads:nnunet",
             workdir / "store.zarr"),
            ("stats, LocalCluster (2 procs), no sampling", "base", "cluster:none",
             workdir / "store.zarr"),
            ("stats, LocalCluster (2 procs), + nnU-Net sampling", "base", "cluster:nnunet",
             workdir / "store.zarr"),
        ]  # fmt: skip
        if not args.skip_big:
            plan += [
                ("stats, threads (2), + nnU-Net sampling", "4x", "threads:nnunet",
                 workdir / "store4.zarr"),
                ("stats, LocalCluster (2 procs), + nnU-Net sampling", "4x", "cluster:nnunet",
                 workdir / "store4.zarr"),
            ]  # fmt: skip
        trials: dict[int, list[dict[str, Any]]] = {i: [] for i in range(len(plan))}
        for round_ in range(args.repeat):  # interleaved, so load changes hit every contender
            for i, (name, dataset, kind, path) in enumerate(plan):
                print(f"round {round_ + 1}/{args.repeat}: {name}, {dataset} ...", flush=True)
                trials[i].append(measure(kind, path, workdir))
        for i, (name, dataset, _, _) in enumerate(plan):
            runs.append((name, dataset, _median_trial(trials[i])))
        reference = runs[0][2]["seconds"]
        rows = []
        for name, dataset, r in runs:
            d = base if dataset == "base" else big
            speedup = ratio(reference * (d["voxels"] / base["voxels"]), r["seconds"])
            startup = r.get("startup_seconds")
            rows.append(
                [
                    name,
                    f"{dataset} ({d['cases']} cases, {d['slices']} slices)",
                    f"{r['seconds']:.2f}",
                    "" if startup is None else f"{startup:.2f}",
                    f"{d['voxels'] / r['seconds'] / 1e6:.0f}",
                    fmt_ratio(speedup),
                    fmt_bytes(r["peak_rss"]),
                ]
            )
        print()
        print(
            markdown_table(
                [
                    "run",
                    "dataset",
                    "wall s (median)",
                    "of it cluster start s",
                    "Mvoxel/s",
                    "speed-up vs nibabel",
                    "peak RSS",
                ],
                rows,
                align="llrrrrr",
            )
        )
        print()
        print(
            f"median of {args.repeat} interleaved runs each; speed-up on the 4x dataset is "
            "against the nibabel loop's time scaled by 4 (it is linear in the cases); peak "
            "RSS is the largest over the runs of the summed RSS of the process tree "
            "(LocalCluster scheduler, nannies and workers included); cluster start includes "
            "importing ctspine_zarr in the workers."
        )
        print(f"load average at the end: {[round(x, 2) for x in os.getloadavg()]}")
        print(
            "wall times per run: "
            + "; ".join(
                f"{n} ({d}): " + ", ".join(f"{t:.1f}" for t in r["all_seconds"]) for n, d, r in runs
            )
        )
        verdict = compare_tables(runs[0][2]["table"], runs[1][2]["table"])
        print(f"check: nibabel loop vs stats: {verdict}")
        best = max(reference / r["seconds"] for name, ds, r in runs[1:] if ds == "base")
        peak_big = max((r["peak_rss"] for _, ds, r in runs if ds == "4x"), default=0)
        print(
            f"nibabel loop / best stats run: {best:.2f}x (target >= {GOAL_SPEEDUP:.0f}x); "
            f"peak RSS on the 4x dataset: {fmt_bytes(peak_big)} (target < "
            f"{fmt_bytes(GOAL_PEAK_BYTES)})"
        )
        if args.json:
            write_json(
                args.json,
                {
                    "machine": info,
                    "data": data,
                    "runs": [{"name": n, "dataset": d, **r} for n, d, r in runs],
                },
            )
    finally:
        if tmp is not None:
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
