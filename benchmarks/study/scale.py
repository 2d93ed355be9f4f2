"""Section ``scale``: 1,005 tiny cases named as in the official split file.

Ingest, open time (in-process and in a fresh interpreter) and ``case_ids(split="train")``.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import ctspine_zarr
from benchmarks.common import fmt_seconds, markdown_table, time_call
from benchmarks.study.config import log
from benchmarks.study.results import Ratio, Section
from benchmarks.study.tree import load_nifti, read_through, run_ingest
from benchmarks.study.workspace import Workspace

REPO = Path(__file__).resolve().parents[2]
SCALE_SOURCES = (
    ("1.3.6.1.4.1.9328.50.4.", "COLONOG"),
    ("CTC-", "COLONOG"),
    ("HN_", "HNSCC-3DCT-RT"),
    ("liver_", "MSD-T10"),
    ("volume-covid19-", "COVID-19"),
)

COLD_OPEN = r"""
import json, sys, time
t0 = time.perf_counter()
kind, path = sys.argv[1], sys.argv[2]
if kind == "ours":
    import ctspine_zarr
    t1 = time.perf_counter()
    ds = ctspine_zarr.open(path)
else:
    import xarray as xr
    import ctspine_zarr  # registers ds.ctspine
    t1 = time.perf_counter()
    ds = xr.open_zarr(path)
t2 = time.perf_counter()
ids = ds.ctspine.case_ids(split="train")
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "open_s": t2 - t1, "case_ids_s": t3 - t2,
                  "n_train": len(ids)}))
"""


def scale_source(case_id: str) -> str:
    """The CTSpine1K source folder of a case id."""
    for prefix, source in SCALE_SOURCES:
        if case_id.startswith(prefix):
            return source
    return "COLONOG"


def write_scale_tree(
    raw: Path, split_text: str, ids: Sequence[str], shape: tuple[int, ...]
) -> None:
    """Write one tiny case per id (ras-int16 NIfTI pair) and the real split file."""
    from ctspine_zarr.testing.synthetic import write_case

    shutil.rmtree(raw, ignore_errors=True)
    rng = np.random.default_rng(0)
    nz, ny, nx = shape
    for n, case_id in enumerate(ids):
        image = rng.integers(-1024, 1500, size=(nz, ny, nx)).astype(np.int16)
        label = np.zeros((nz, ny, nx), dtype=np.uint8)
        label[1 : nz - 1, ny // 4 : 3 * ny // 4, nx // 4 : 3 * nx // 4] = 20 + n % 5
        write_case(
            raw,
            case_id,
            scale_source(case_id),
            image_zyx=image,
            label_zyx=label,
            spacing_zyx=(2.5, 0.8, 0.8),
        )
    target = raw / "metadata" / "data_split.txt"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(split_text.encode("utf-8"))


def cold_open(kind: str, store: Path) -> dict[str, float]:
    """Open the catalogue in a fresh interpreter; return its timings and the process wall."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", COLD_OPEN, kind, str(store)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        timeout=300,
    )
    wall = time.perf_counter() - start
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_s"] = wall
    return result


def section_scale(ws: Workspace, sec: Section) -> None:
    """1,005 tiny cases named as in the real split file: ingest, open, case_ids."""
    import xarray as xr

    from ctspine_zarr.io.layout import official_split_file, parse_split_file
    from ctspine_zarr.io.store import forget

    cfg = ws.cfg
    text = official_split_file().decode("utf-8-sig")
    splits = parse_split_file(text)
    ids = list(splits)
    if cfg.scale_cases is not None and cfg.scale_cases < len(ids):
        ids = ids[: cfg.scale_cases]
    raw = ws.root / "raw-scale"
    store = ws.stores / "scale.zarr"
    log(f"scale: writing {len(ids)} tiny cases ...")
    write_s, _ = time_call(lambda: write_scale_tree(raw, text, ids, cfg.scale_shape))
    files = sorted(str(p) for p in raw.glob("rawdata/*/*/*.nii.gz"))
    read_through(files)
    nib_s, _ = time_call(lambda: [np.asanyarray(load_nifti(p).dataobj) for p in files])
    log(f"scale: ingesting {len(ids)} cases with 2 workers ...")
    run = run_ingest(raw, store, workers=2, scheduler="processes")
    per_case = run["wall_s"] / len(ids)
    in_task = statistics.median(run["case_s"].values())

    log(f"scale: open timings ({cfg.open_repeats} each, interleaved) ...")
    ours_s: list[float] = []
    xr_s: list[float] = []
    for _ in range(cfg.open_repeats):
        forget(store)
        ours_s.append(time_call(lambda: ctspine_zarr.open(store))[0])
        xr_s.append(time_call(lambda: xr.open_zarr(store))[0])
    cold: dict[str, list[dict[str, float]]] = {"ours": [], "xr": []}
    for _ in range(cfg.open_repeats):
        for kind in cold:
            cold[kind].append(cold_open(kind, store))

    ds = ctspine_zarr.open(store)
    ids_s, train = time_call(lambda: ds.ctspine.case_ids(split="train"))
    train_xr = xr.open_zarr(store).ctspine.case_ids(split="train")
    expected = [c for c in ids if splits[c] == "train"]
    same_set = set(train) == set(expected) and len(train) == len(expected)
    same_order = train == expected
    n_cases = int(ds.sizes["case"])

    def med(values: Sequence[float]) -> float:
        return statistics.median(values)

    cold_med = {
        kind: {key: med([r[key] for r in runs]) for key in ("import_s", "open_s", "process_s")}
        for kind, runs in cold.items()
    }
    nz, ny, nx = cfg.scale_shape
    rows = [
        ["write the tiny NIfTI pairs (nibabel)", fmt_seconds(write_s), ""],
        [
            "nibabel plain load of every image + label, serial",
            fmt_seconds(nib_s),
            fmt_seconds(nib_s / len(ids)),
        ],
        [
            f'ingest(workers=2, scheduler="processes") [{run["workers_used"]} workers ran '
            f"cases; load {run['load_1min_at_start']:.1f}]",
            fmt_seconds(run["wall_s"]),
            fmt_seconds(per_case),
        ],
        ["  of it, one case's task (median, in the worker)", "", fmt_seconds(in_task)],
        [
            f"`ctspine_zarr.open(store)`, in-process (median of {len(ours_s)}, caches dropped)",
            fmt_seconds(med(ours_s)),
            "",
        ],
        [f"`xr.open_zarr(store)`, in-process (median of {len(xr_s)})", fmt_seconds(med(xr_s)), ""],
        [
            "`ctspine_zarr.open(store)`, fresh interpreter: first open (import excluded)",
            fmt_seconds(cold_med["ours"]["open_s"]),
            "",
        ],
        [
            "  import ctspine_zarr there / whole process (python start to case ids)",
            f"{fmt_seconds(cold_med['ours']['import_s'])} / "
            f"{fmt_seconds(cold_med['ours']['process_s'])}",
            "",
        ],
        [
            "`xr.open_zarr(store)`, fresh interpreter: first open (imports excluded)",
            fmt_seconds(cold_med["xr"]["open_s"]),
            "",
        ],
        ['`ds.ctspine.case_ids(split="train")`', fmt_seconds(ids_s), ""],
    ]
    sec.lines += [
        f"{len(ids)} tiny cases ({nz}x{ny}x{nx}, int16 noise, one labelled box) named and "
        "split as in the official `data_split.txt` shipped with the package (it is the tree's "
        f"split file); {n_cases} cases in the catalogue. Fresh-interpreter rows: median of "
        f"{cfg.open_repeats} subprocesses.",
        "",
        markdown_table(["scale (1,005-case catalogue)", "wall", "per case"], rows),
        "",
        f'`case_ids(split="train")`: {len(train)} names, the file\'s trainset has '
        f"{len(expected)}: {'same names' if same_set else 'DIFFERENT names'}, "
        f"{'same order' if same_order else 'not in file order (catalogue order)'}; through "
        f"`xr.open_zarr`: {'same' if train_xr == train else 'DIFFERENT'}.",
    ]
    sec.data = {
        "cases": len(ids),
        "catalogue_cases": n_cases,
        "write_s": write_s,
        "nibabel_load_s": nib_s,
        "ingest": {k: v for k, v in run.items() if k != "case_s"},
        "ingest_per_case_s": per_case,
        "case_task_median_s": in_task,
        "open_in_process_s": {"ours": ours_s, "xr": xr_s},
        "open_fresh_interpreter": cold,
        "case_ids_s": ids_s,
        "train_same_names": same_set,
        "train_same_order": same_order,
        "train_count": len(train),
        "train_expected": len(expected),
    }
    first_open = cold_med["ours"]["open_s"]
    sec.ratios += [
        Ratio(
            "8a",
            f"{fmt_seconds(first_open)} ({len(ids)} cases; in-process "
            f"{fmt_seconds(med(ours_s))}; xr.open_zarr "
            f"{fmt_seconds(cold_med['xr']['open_s'])} fresh, {fmt_seconds(med(xr_s))} "
            f"in-process; import ctspine_zarr {fmt_seconds(cold_med['ours']['import_s'])})",
            first_open,
        ),
        Ratio(
            "8b",
            f"{len(train)} of {len(expected)}, {'same' if same_set else 'different'} names",
        ),
    ]
