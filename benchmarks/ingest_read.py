"""Benchmark ctspine_zarr ingest and reads against nibabel on the same ``.nii.gz`` files.

One run generates a synthetic CTSpine1K-like raw tree (512x512 in-plane; default 6 cases of
100-300 slices, ``--quick`` 3 cases of 60-100 slices) and measures, on those files:

1. bytes: the store on disk (every file) against the ``.nii.gz`` images + labels, per array;
2. random axial slice latency (image + label), p50 / p95 over the same random
   ``(case, z)`` pairs for every contender, warm-up excluded, contenders interleaved:
   ``ds.ctspine.slice`` (catalogue opened once), zarr arrays directly (the floor the accessor
   pays on top of), nibabel + indexed_gzip with the files kept open and the seek index built
   (the anchor), and nibabel opening the files afresh per read ("first touch");
3. ingest time with 1 and 2 workers for the "processes" and "threads" schedulers (a fresh
   store each), each against nibabel's serial full load of the same files (the gzip floor)
   timed right before it, with the number of dask workers that actually ran a case;
4. whole-volume read (image + label) per case, ours against nibabel's full load.

nibabel reads the *same anatomical slice* as the store: the canonical ``z`` of the store is
mapped to the file's voxel axis and index through ``io_orientation(affine)`` (for the
sagittally stored variant that is an axial plane across the file's second axis), and the
mapping is checked once per case against the store's slice. A second nibabel row reads the
file's third axis at a random index from the same distribution (the layout nibabel favours).

Run from the repository root::

    python -m benchmarks.ingest_read [--quick] [--cases N] [--json OUT] [--workdir DIR]

Timings on a shared machine are noisy; read the medians and the ratios.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

import ctspine_zarr
from benchmarks.common import (
    NOISE_NOTE,
    Summary,
    dir_bytes,
    fmt_bytes,
    fmt_ratio,
    fmt_seconds,
    git_state,
    machine_info,
    machine_lines,
    markdown_table,
    ratio,
    summarize,
    work_directory,
    write_json,
)
from benchmarks.study.config import parse_tree_args, tree_parser
from benchmarks.study.contenders import (
    Contenders,
    check_mapping,
    have_indexed_gzip,
    per_case_medians,
    profile_accessor,
    random_pairs,
    time_interleaved,
)
from benchmarks.study.results import targets
from benchmarks.study.tree import (
    SCHEDULERS,
    BenchCase,
    Settings,
    measure_ingest,
    prepare_tree,
    read_through,
    store_breakdown,
)

SLICE_LABELS = {
    "nibabel_warm": "nibabel + indexed_gzip, files kept open, index built (anchor)",
    "nibabel_third_axis": "nibabel, same but `dataobj[..., k]` (file's 3rd axis)",
    "nibabel_first_touch": "nibabel, fresh `nib.load` per read (first touch)",
    "accessor_values": "ours: `ds.ctspine.slice` + `.image.values` + `.label.values`",
    "accessor_compute": "ours: `ds.ctspine.slice(...).compute()`",
    "zarr_direct": "ours: zarr `image[z]`, `label[z]` (arrays opened once)",
}

VARIANT_COLUMNS = ("accessor_values", "zarr_direct", "nibabel_warm", "nibabel_third_axis")

VOLUME_LABELS = {
    "volume_nibabel": "nibabel `np.asanyarray(nib.load(p).dataobj)` x2 (anchor)",
    "volume_accessor": "ours: `ds.ctspine.volume` + `.image.values` + `.label.values`",
    "volume_zarr": "ours: zarr `image[:]`, `label[:]`",
}


def bytes_table(cases: Sequence[BenchCase], parts: dict[str, int], total: int) -> tuple[str, dict]:
    """Return the bytes table and its numbers."""
    nii_image = sum(c.nii_bytes[0] for c in cases)
    nii_label = sum(c.nii_bytes[1] for c in cases)
    nii_total = nii_image + nii_label
    rows: list[tuple[str, str, str, float | None]] = [
        (
            "image",
            fmt_bytes(nii_image),
            fmt_bytes(parts["image"]),
            ratio(parts["image"], nii_image),
        ),
        (
            "label",
            fmt_bytes(nii_label),
            fmt_bytes(parts["label"]),
            ratio(parts["label"], nii_label),
        ),
        (
            "case metadata (zarr.json, slice index, NIfTI headers)",
            "-",
            fmt_bytes(parts["case_other"]),
            None,
        ),
        ("root (catalogue, consolidated metadata)", "-", fmt_bytes(parts["root"]), None),
        ("**total**", fmt_bytes(nii_total), fmt_bytes(total), ratio(total, nii_total)),
    ]
    table = markdown_table(
        ["part", ".nii.gz", "store", "store / .nii.gz"],
        [[*r[:3], fmt_ratio(r[3], 3)] for r in rows],
    )
    numbers = {
        "nii_gz": {"image": nii_image, "label": nii_label, "total": nii_total},
        "store": {**parts, "total": total},
        "ratio": {
            "image": ratio(parts["image"], nii_image),
            "label": ratio(parts["label"], nii_label),
            "total": ratio(total, nii_total),
        },
    }
    return table, numbers


def slice_table(summaries: dict[str, Summary]) -> str:
    """Return the slice latency table, ratios against the warm nibabel anchor."""
    anchor = summaries["nibabel_warm"]
    rows = []
    for key, label in SLICE_LABELS.items():
        if key not in summaries:
            continue
        s = summaries[key]
        rows.append(
            [
                label,
                str(s.n),
                fmt_seconds(s.p50),
                fmt_seconds(s.p95),
                fmt_ratio(ratio(anchor.p50, s.p50)),
                fmt_ratio(ratio(anchor.p95, s.p95)),
            ]
        )
    return markdown_table(
        [
            "slice read (image + label)",
            "n",
            "p50",
            "p95",
            "nibabel / this p50",
            "nibabel / this p95",
        ],
        rows,
    )


def ingest_table(runs: list[dict[str, Any]], bytes_in: int) -> str:
    """Return the ingest table; each run against the nibabel load measured right before it."""
    one = {r["scheduler"]: r["wall_s"] for r in runs if r["workers"] == 1}
    anchor = statistics.median(r["nibabel_s"] for r in runs)
    rows = [
        [
            "nibabel serial full load of every image + label (anchor, median)",
            fmt_seconds(anchor),
            f"{bytes_in / anchor / 2**20:.1f}",
            "",
            "1.00x",
            "",
            "",
        ]
    ]
    for r in runs:
        path = "sync" if r["workers"] == 1 else r["scheduler"]
        speedup = ratio(one.get(r["scheduler"]), r["wall_s"]) if r["workers"] > 1 else None
        rows.append(
            [
                f'ours: ingest(workers={r["workers"]}, scheduler="{r["scheduler"]}") '
                f"[{path} scheduler ran it]",
                fmt_seconds(r["wall_s"]),
                f"{bytes_in / r['wall_s'] / 2**20:.1f}",
                fmt_seconds(r["nibabel_s"]),
                fmt_ratio(ratio(r["wall_s"], r["nibabel_s"])),
                fmt_ratio(speedup) if speedup is not None else "",
                f"{r['workers_used']} / {r['load_1min_at_start']:.1f}",
            ]
        )
    return markdown_table(
        [
            "ingest (all cases)",
            "wall",
            ".nii.gz MiB/s",
            "nibabel load just before",
            "this / nibabel",
            "speedup vs 1 worker",
            "workers used / load",
        ],
        rows,
    )


def volume_table(per_case: dict[str, dict[str, float]]) -> tuple[str, dict[str, Any]]:
    """Return the whole-volume table (median over cases of per-case medians) and numbers."""
    medians = {k: statistics.median(v.values()) for k, v in per_case.items()}
    totals = {k: sum(v.values()) for k, v in per_case.items()}
    anchor = medians["volume_nibabel"]
    rows = [
        [
            label,
            fmt_seconds(medians[key]),
            fmt_seconds(totals[key]),
            fmt_ratio(ratio(anchor, medians[key])),
        ]
        for key, label in VOLUME_LABELS.items()
    ]
    table = markdown_table(
        ["whole volume (image + label)", "median per case", "sum over cases", "nibabel / this"],
        rows,
    )
    return table, {"median_per_case_s": medians, "sum_s": totals, "per_case_s": per_case}


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> tuple[Settings, argparse.Namespace]:
    """Parse the command line into settings and the remaining options."""
    parser = tree_parser(
        "python -m benchmarks.ingest_read",
        "Benchmark ctspine_zarr ingest and reads against nibabel on .nii.gz files.",
        "write the results as JSON here",
    )
    parser.add_argument(
        "--slices",
        type=int,
        nargs=2,
        metavar=("MIN", "MAX"),
        help="slices per case (default 100 300, quick 60 100)",
    )
    parser.add_argument("--reads", type=int, help="random slice reads (default 200, quick 60)")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="OUT.txt",
        help="also profile the accessor slice reads with pyinstrument, text report here",
    )
    args, quick, n_cases = parse_tree_args(parser, argv)
    slices = tuple(args.slices) if args.slices else ((60, 100) if quick else (100, 300))
    reads = args.reads if args.reads is not None else (60 if quick else 200)
    settings = Settings(
        n_cases=n_cases,
        slices=(int(slices[0]), int(slices[1])),
        shape=(512, 512),
        seed=args.seed,
        reads=reads,
        warmup=5 if quick else 10,
        first_touch_reads=min(reads, 10 if quick else 30),
        volume_repeats=1 if quick else 3,
        ingest_repeats=1,
        quick=quick,
    )
    return settings, args


def measure_slices(
    contenders: Contenders, cases: Sequence[BenchCase], settings: Settings
) -> dict[str, Any]:
    """Time random image + label slice reads of every contender (see the module docstring)."""
    rng = np.random.default_rng(settings.seed + 1)
    warm_pairs = random_pairs(cases, settings.warmup, rng)
    pairs = random_pairs(cases, settings.reads, rng)
    # the file's-3rd-axis reader draws its own pairs: reading the very slice the anatomical
    # reader just read would hit indexed_gzip's buffer and time a cache hit
    third_pairs = random_pairs(cases, settings.reads, np.random.default_rng(settings.seed + 2))
    index_s = contenders.build_gzip_indexes()
    mapping_ok = check_mapping(contenders, cases)
    print(f"slice reads: {len(pairs)} pairs x 5 contenders", file=sys.stderr)
    samples = time_interleaved(
        {
            "accessor_values": contenders.accessor_values,
            "accessor_compute": contenders.accessor_compute,
            "zarr_direct": contenders.zarr_direct,
            "nibabel_warm": contenders.nibabel_warm,
            "nibabel_third_axis": contenders.nibabel_third_axis,
        },
        pairs,
        warm_pairs,
        own_pairs={"nibabel_third_axis": third_pairs},
    )
    touch_pairs = pairs[: settings.first_touch_reads]
    samples.update(
        time_interleaved({"nibabel_first_touch": contenders.nibabel_first_touch}, touch_pairs)
    )
    by_variant: dict[str, dict[str, float]] = {}
    for key in ("accessor_values", "zarr_direct", "nibabel_warm", "nibabel_third_axis"):
        grouped: dict[str, list[float]] = {}
        read = third_pairs if key == "nibabel_third_axis" else pairs
        for (case, _), t in zip(read, samples[key], strict=True):
            grouped.setdefault(case.variant, []).append(t)
        for variant, ts in grouped.items():
            by_variant.setdefault(variant, {})[key] = statistics.median(ts)
    return {
        "summaries": {k: summarize(v) for k, v in samples.items()},
        "samples": samples,
        "pairs": pairs,
        "first_touch_reads": len(touch_pairs),
        "p50_by_variant": by_variant,
        "mapping_ok": mapping_ok,
        "gzip_index_build_s": index_s,
        "gzip_file_type": contenders.gzip_file_type(),
    }


def measure_volumes(
    contenders: Contenders, cases: Sequence[BenchCase], settings: Settings
) -> dict[str, dict[str, float]]:
    """Time whole-volume reads; return ``{reader: {case_id: median seconds}}``."""
    print(f"whole volumes: {len(cases)} cases x {settings.volume_repeats}", file=sys.stderr)
    order = [c for _ in range(settings.volume_repeats) for c in cases]
    samples = time_interleaved(
        {
            "volume_nibabel": contenders.volume_nibabel,
            "volume_accessor": contenders.volume_accessor,
            "volume_zarr": contenders.volume_zarr,
        },
        [(c, 0) for c in order],
    )
    per_case = per_case_medians(order, samples)
    return per_case


def goals_lines(
    runs: list[dict[str, Any]], bytes_ratio: float | None, slices: dict[str, Any], cpus: int
) -> tuple[list[str], dict[str, Any]]:
    """Return the headline ratios, each with its target (``benchmarks/targets.toml``)."""
    goal = {k: t.text() for k, t in targets().items()}
    one = {r["scheduler"]: r for r in runs if r["workers"] == 1}
    two = {r["scheduler"]: r for r in runs if r["workers"] == 2}
    winner = min(two, key=lambda s: two[s]["wall_s"])
    speedups = {s: ratio(one[s]["wall_s"], two[s]["wall_s"]) for s in SCHEDULERS}
    ingest_ratios = {s: ratio(one[s]["wall_s"], one[s]["nibabel_s"]) for s in SCHEDULERS}
    summaries = slices["summaries"]
    slice_ratio = ratio(summaries["nibabel_warm"].p50, summaries["accessor_values"].p50)
    floor_ratio = ratio(summaries["accessor_values"].p50, summaries["zarr_direct"].p50)
    lines = [
        f"- bytes: store / .nii.gz = {fmt_ratio(bytes_ratio, 3)} (target {goal['1']})",
    ]
    for s in SCHEDULERS:
        r, sp = ingest_ratios[s], speedups[s]
        lines.append(
            f"- ingest {s}: 1 worker / nibabel load = {fmt_ratio(r)} (target {goal['5a']}); "
            f"2 vs 1 worker = {fmt_ratio(sp)} (target {goal['6']}); 2-worker run used "
            f"{two[s]['workers_used']} worker(s)"
        )
    lines += [
        f"- faster scheduler with 2 workers: {winner} ({two[winner]['wall_s']:.1f} s vs "
        f"{max(r['wall_s'] for r in two.values()):.1f} s)",
        f"- slice read p50: nibabel warm / ours accessor = {fmt_ratio(slice_ratio)}; "
        f"ours accessor / zarr floor = {fmt_ratio(floor_ratio)}",
    ]
    busy = [r for r in two.values() if r["load_1min_at_start"] >= cpus]
    if busy:
        lines.append(
            f"- caution: the 1-min load average was >= {cpus} (the CPU count) when "
            f"{len(busy)} of the 2-worker ingests started: other jobs held the cores, so "
            "the 2-worker speedups say little about what 2 free cores give"
        )
    numbers = {
        "bytes_ratio": {"value": bytes_ratio, "target": goal["1"]},
        "ingest_1_worker_over_nibabel": {"value": ingest_ratios, "target": goal["5a"]},
        "speedup_2_over_1_worker": {"value": speedups, "target": goal["6"]},
        "faster_scheduler_2_workers": winner,
        "slice_p50_nibabel_over_accessor": slice_ratio,
        "slice_p50_accessor_over_zarr": floor_ratio,
    }
    return lines, numbers


def run(settings: Settings, workdir: Path, profile: Path | None) -> tuple[dict[str, Any], str]:
    """Run every measurement in ``workdir``; return the JSON payload and the printed text."""
    machine = machine_info()
    code = git_state(Path(ctspine_zarr.__file__).resolve().parent)
    raw = workdir / "raw"
    stores = workdir / "stores"
    stores.mkdir(parents=True, exist_ok=True)

    cases, gen_s = prepare_tree(raw, settings)
    read_through([p for c in cases for p in (c.image_path, c.label_path)])
    n_slices = sum(c.n_z for c in cases)
    print(
        f"tree: {len(cases)} cases, {n_slices} slices "
        + (f"generated in {gen_s:.1f} s" if gen_s is not None else "reused"),
        file=sys.stderr,
    )

    runs, store = measure_ingest(raw, stores, cases, settings)
    parts = store_breakdown(store)
    bytes_md, bytes_numbers = bytes_table(cases, parts, dir_bytes(store))
    store_sizes = {f"{r['scheduler']}/{r['workers']}": r["store_bytes"] for r in runs}

    contenders = Contenders(store, cases)
    try:
        slices = measure_slices(contenders, cases, settings)
        per_case = measure_volumes(contenders, cases, settings)
        profile_path = None
        if profile is not None:
            profile_path = profile_accessor(contenders, slices["pairs"][:100], profile)
    finally:
        contenders.close()
    volume_md, volume_numbers = volume_table(per_case)
    goals, goal_numbers = goals_lines(
        runs, bytes_numbers["ratio"]["total"], slices, int(machine["cpu_count"] or 1)
    )
    load_end = machine_info()["load_average"]

    mapping_ok = slices["mapping_ok"]
    out = [
        "# ctspine_zarr ingest + read benchmark",
        "",
        *machine_lines(machine),
        f"code: commit {str(code['commit'])[:10]}, {len(code['changed'] or [])} changed or "
        "new files in the package directory (it is being edited; see JSON 'code')",
        f"nibabel HAVE_INDEXED_GZIP: {have_indexed_gzip()} (kept-open files read through "
        f"{slices['gzip_file_type']}; building the seek indexes of all files took "
        f"{slices['gzip_index_build_s']:.2f} s)",
        NOISE_NOTE,
        "",
        f"data: {len(cases)} synthetic cases, {settings.shape[0]}x{settings.shape[1]} in-plane, "
        f"{settings.slices[0]}-{settings.slices[1]} slices per case ({n_slices} in all), "
        f"seed {settings.seed}; variants: {', '.join(c.variant for c in cases)}",
        "",
        "## 1. Bytes on disk",
        "",
        bytes_md,
        "",
    ]
    if len(set(store_sizes.values())) != 1:
        out += [f"note: the ingests wrote stores of different sizes (bytes): {store_sizes}", ""]
    out += [
        "## 2. Random axial slice read (image + label)",
        "",
        f"{settings.reads} random (case, z) pairs (case uniform, then z uniform in the case), "
        f"the same pairs for every contender, {settings.warmup} warm-up pairs excluded, "
        "contenders interleaved. nibabel reads the same anatomical slice as the store "
        "(store z mapped to the file axis and index by io_orientation; checked per case: "
        f"{'all match' if all(mapping_ok.values()) else f'MISMATCH {mapping_ok}'}). The "
        "'3rd axis' row reads `dataobj[..., k]` of its own random pairs from the same "
        "distribution (k spread over the file's third axis like z; the same pairs would "
        "time indexed_gzip buffer hits right after the anatomical read). First touch: the "
        f"first {slices['first_touch_reads']} pairs only.",
        "",
        slice_table(slices["summaries"]),
        "",
        "p50 by header variant (the sagittal file stores axial planes across its 2nd axis):",
        "",
        markdown_table(
            ["variant", "ours accessor", "ours zarr", "nibabel warm", "nibabel 3rd axis"],
            [
                [v, *(fmt_seconds(d.get(k)) for k in VARIANT_COLUMNS)]
                for v, d in sorted(slices["p50_by_variant"].items())
            ],
        ),
        "",
        "## 3. Ingest",
        "",
        "One fresh store per run, each right after a nibabel serial full load of all files "
        "(its own anchor, so both see the same machine load). workers=1 runs the sync "
        "scheduler whatever the scheduler argument: the two workers=1 rows run the same code "
        "and their gap is noise. 'workers used' counts the dask workers that ran a case; "
        "'load' is the 1-min load average when the ingest started.",
        "",
        ingest_table(runs, runs[0]["bytes_in"]),
        "",
        "## 4. Whole-volume read (image + label), per case",
        "",
        volume_md,
        "",
        "## Headline ratios",
        "",
        *goals,
    ]
    if profile_path is not None:
        out.append(f"- pyinstrument profile of the accessor slice reads: {profile_path}")
    out += ["", f"load average (1/5/15 min) at the end: {load_end}"]
    text = "\n".join(out)

    payload = {
        "benchmark": "ingest_read",
        "settings": asdict(settings),
        "machine": machine,
        "code": code,
        "load_average_end": load_end,
        "have_indexed_gzip": have_indexed_gzip(),
        "nibabel_file_type": slices["gzip_file_type"],
        "gzip_index_build_s": slices["gzip_index_build_s"],
        "tree_generation_s": gen_s,
        "cases": [{**asdict(c), "n_z": c.n_z, "nii_bytes": list(c.nii_bytes)} for c in cases],
        "bytes": bytes_numbers,
        "store_bytes_per_ingest": store_sizes,
        "slice_read": {
            "pairing": "same anatomical slice (store z mapped through io_orientation); "
            "nibabel_third_axis reads its own random pairs",
            "mapping_check": mapping_ok,
            "summary_s": {k: s.to_json() for k, s in slices["summaries"].items()},
            "p50_by_variant_s": slices["p50_by_variant"],
            "samples_s": slices["samples"],
            "pairs": [[c.case_id, z] for c, z in slices["pairs"]],
        },
        "ingest": {"runs": runs},
        "volume_read": volume_numbers,
        "goals": goal_numbers,
        "notes": NOISE_NOTE,
        "report_markdown": text,
    }
    return payload, text


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the tables; write JSON when asked."""
    settings, args = parse_args(argv)
    with work_directory(args.workdir) as workdir:
        payload, text = run(settings, workdir, args.profile)
    print(text)
    if args.json is not None:
        path = write_json(args.json, payload)
        print(f"\nJSON: {path.resolve()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
