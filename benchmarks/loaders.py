"""Benchmark training loaders: our SliceDataset against Hugging Face Arrow and nibabel.

One run generates 512x512 synthetic CTSpine1K-like cases (default 5 cases of 100-300 slices;
``--quick`` 2 cases of 60-100), ingests them into a ctspine store, and builds two baselines
from the same ``.nii.gz`` files:

* **HF Arrow**: a Hugging Face ``datasets`` table built as the CTSpine1K loading script builds
  its ``2d`` configuration (``image`` ``Array2D((512, 512), "float32")``, ``segmentation``
  ``Array2D((512, 512), "int32")``, ``patient_id``, ``index``, ``slice_index``; rows generated
  per slice from nibabel ``get_fdata()`` transposed to ``(z, x, y)``), written with
  ``Dataset.from_generator``, saved with ``save_to_disk`` and reloaded with ``load_from_disk``
  (memory-mapped Arrow, as a user has it), then ``with_format("torch")``;
* **nibabel**: a torch Dataset whose item loads one slice of the image and the label with
  ``nib.load(path).dataobj[..., k]`` from the ``.nii.gz`` files.

For each loader: slices per second through ``DataLoader(ds, batch_size=16, num_workers=2,
shuffle=True)`` (start method: ``ctspine_zarr.torch.default_context()``) over about 1000
slices after a warm-up of two batches (worker start-up excluded), in rounds that interleave
the loaders (median reported), and the bytes on disk (the store directory; the saved Arrow
directory; the ``.nii.gz`` files). Also the time to build each (ingest; Arrow conversion).

"Item path alone" times what a DataLoader worker calls per batch (``__getitems__`` of 16
random indices, or 16 ``ds[i]``) in-process. The DataLoader rate adds, for every loader
alike, the worker's collation of each batch into shared memory: 3 MB a slice (float32 image,
int64 labels, as the HF torch format returns them), which on a small VM costs about as much
as our whole item path, so it caps the DataLoader ratio below the item-path ratio.

Run from the repository root::

    python -m benchmarks.loaders [--quick] [--cases N] [--slices N] [--rounds N]

The files are in the page cache (warm reads). The machine is shared: timings are noisy.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

import ctspine_zarr
from benchmarks.common import (
    NOISE_NOTE,
    dir_bytes,
    fmt_bytes,
    fmt_ratio,
    fmt_seconds,
    machine_info,
    machine_lines,
    markdown_table,
    ratio,
)
from benchmarks.study.anchors import save_arrow
from ctspine_zarr.testing.synthetic import make_raw_tree
from ctspine_zarr.torch import SliceDataset, default_context

BATCH = 16
WORKERS = 2
WARMUP_BATCHES = 2
SHAPE = (512, 512)
PACKAGES = ("ctspine_zarr", "numpy", "zarr", "numcodecs", "torch", "datasets", "pyarrow", "nibabel")


# --------------------------------------------------------------------------------------------
# The two baselines
# --------------------------------------------------------------------------------------------


def build_arrow(pairs: Sequence[tuple[Path, Path]], workdir: Path) -> tuple[Any, Path, float]:
    """Build, save and reload the HF Arrow table; return (dataset, its directory, seconds).

    Built as the CTSpine1K script's ``2d`` configuration (``benchmarks.study.anchors``).
    """
    import datasets

    out = workdir / "arrow"
    specs = [(str(a), str(b), Path(Path(a).stem).stem, False) for a, b in pairs]
    seconds = save_arrow(specs, out, "2d", SHAPE)
    return datasets.load_from_disk(str(out)).with_format("torch"), out, seconds


class CeilingDataset(Dataset):
    """Items that cost nothing: the same tensors every time, in the fields of our slices.

    Its DataLoader rate is what the DataLoader alone allows on this machine (workers,
    pickling, collation of 3 MB a slice into shared memory): no dataset of these item
    shapes and dtypes goes faster through the same DataLoader.
    """

    def __init__(self, n: int, shape: tuple[int, int] = SHAPE) -> None:
        self.n = n
        self.image = torch.zeros(shape, dtype=torch.float32)
        self.segmentation = torch.zeros(shape, dtype=torch.int64)
        self.spacing = torch.ones(3, dtype=torch.float64)
        self.affine = torch.eye(4, dtype=torch.float64)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {
            "image": self.image,
            "segmentation": self.segmentation,
            "patient_id": "ceiling",
            "index": 0,
            "spacing": self.spacing,
            "affine": self.affine,
            "slice_index": i,
        }


class NiftiSliceDataset(Dataset):
    """One item per axial slice, read from the ``.nii.gz`` files with nibabel per item."""

    def __init__(self, pairs: Sequence[tuple[Path, Path]]) -> None:
        self.items: list[tuple[str, str, int, int]] = []
        for index, (image, label) in enumerate(pairs):
            n = nib.load(image).shape[2]
            self.items += [(str(image), str(label), index, k) for k in range(n)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        image_path, label_path, index, k = self.items[i]
        image = np.asarray(nib.load(image_path).dataobj[..., k], dtype=np.float32)
        label = np.asarray(nib.load(label_path).dataobj[..., k]).astype(np.int64)
        return {
            "image": torch.from_numpy(image),
            "segmentation": torch.from_numpy(label),
            "patient_id": Path(Path(image_path).stem).stem,
            "index": index,
            "slice_index": k,
        }


# --------------------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------------------


def slices_per_second(dataset: Any, n_slices: int, context: str, seed: int) -> float:
    """Slices per second through a 2-worker DataLoader, after ``WARMUP_BATCHES`` batches."""
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(
        dataset,
        batch_size=BATCH,
        num_workers=WORKERS,
        shuffle=True,
        multiprocessing_context=context,
        generator=generator,
        persistent_workers=True,
    )
    seen = 0
    started = 0.0
    target = n_slices + WARMUP_BATCHES * BATCH
    batches = 0
    while seen < target:
        for batch in loader:
            batches += 1
            if batches == WARMUP_BATCHES:
                started = time.perf_counter()
                seen = WARMUP_BATCHES * BATCH
                continue
            seen += len(batch["image"])
            if seen >= target:
                break
    return (seen - WARMUP_BATCHES * BATCH) / (time.perf_counter() - started)


def fetch_rate(dataset: Any, n_slices: int, seed: int) -> float:
    """Slices per second of the item path alone: batches of 16 random indices, in-process.

    ``dataset.__getitems__`` (what a DataLoader worker calls) when defined, else one
    ``dataset[i]`` per index; no DataLoader, no collation, no worker.
    """
    order = np.random.default_rng(seed).permutation(len(dataset))
    order = np.resize(order, n_slices + BATCH).tolist()
    getitems = getattr(dataset, "__getitems__", None)
    if getitems is None:

        def getitems(indices: list[int]) -> list[Any]:
            return [dataset[i] for i in indices]

    getitems(order[-BATCH:])  # warm-up
    start = time.perf_counter()
    for k in range(0, n_slices, BATCH):
        getitems(order[k : k + BATCH])
    return n_slices / (time.perf_counter() - start)


def run(args: argparse.Namespace, workdir: Path) -> str:
    """Generate, ingest, convert, measure; return the report text."""
    lines = [*machine_lines(machine_info(PACKAGES)), NOISE_NOTE, ""]
    raw, store = workdir / "raw", workdir / "ctspine1k.zarr"
    t0 = time.perf_counter()
    cases = make_raw_tree(
        raw, n_cases=args.cases, shape=SHAPE, n_slices=tuple(args.n_slices), seed=args.seed
    )
    generate_s = time.perf_counter() - t0
    pairs = [(c.image_path, c.label_path) for c in cases]
    nifti_bytes = sum(os.path.getsize(p) for pair in pairs for p in pair)

    t0 = time.perf_counter()
    report = ctspine_zarr.ingest(raw, store, workers=2, progress=False)
    ingest_s = time.perf_counter() - t0
    if not report.ok:
        raise RuntimeError(report.summary())
    arrow, arrow_dir, arrow_s = build_arrow(pairs, workdir)

    ours = SliceDataset(store, split=None)
    nifti = NiftiSliceDataset(pairs)
    total = len(ours)
    if not len(arrow) == len(nifti) == total:
        raise RuntimeError(f"slice counts differ: {len(arrow)}, {len(nifti)}, {total}")
    n = min(args.slices, total)
    context = default_context()
    contenders: dict[str, Any] = {
        "ctspine_zarr SliceDataset": ours,
        "HF datasets Arrow (with_format torch)": arrow,
        "nibabel on .nii.gz": nifti,
        "DataLoader alone (zero items: the ceiling)": CeilingDataset(total),
    }
    timed = {name: n for name in contenders}
    timed["nibabel on .nii.gz"] = min(n, args.nifti_slices)  # slow: fewer slices
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    fetches: dict[str, list[float]] = {name: [] for name in contenders}
    for r in range(args.rounds):
        for name, dataset in contenders.items():
            rate = slices_per_second(dataset, timed[name], context, seed=args.seed + r)
            rates[name].append(rate)
            fetches[name].append(fetch_rate(dataset, timed[name], seed=args.seed + r))
    sizes = {
        "ctspine_zarr SliceDataset": dir_bytes(store),
        "HF datasets Arrow (with_format torch)": dir_bytes(arrow_dir),
        "nibabel on .nii.gz": nifti_bytes,
    }
    base_name = "HF datasets Arrow (with_format torch)"
    base_rate = statistics.median(rates[base_name])
    base_fetch = statistics.median(fetches[base_name])
    rows = []
    for name in contenders:
        rate = statistics.median(rates[name])
        fetch = statistics.median(fetches[name])
        rows.append(
            [
                name,
                str(timed[name]),
                f"{rate:.0f}",
                " / ".join(f"{v:.0f}" for v in rates[name]),
                fmt_ratio(ratio(rate, base_rate)),
                "-"
                if name not in sizes
                else f"{fetch:.0f} ({fmt_ratio(ratio(fetch, base_fetch))})",
                fmt_bytes(sizes[name]) if name in sizes else "-",
                (
                    "-"
                    if name not in sizes
                    else f"1/{sizes[base_name] / sizes[name]:.1f}"
                    if name != base_name
                    else "1"
                ),
            ]
        )
    lines += [
        f"{len(cases)} cases, {total} slices of {SHAPE[0]}x{SHAPE[1]}; "
        f"slices timed per round after {WARMUP_BATCHES} warm-up batches (worker start-up "
        "excluded); "
        f"{args.rounds} rounds; DataLoader(batch_size={BATCH}, num_workers={WORKERS}, "
        f"shuffle=True, multiprocessing_context={context!r})",
        "",
        markdown_table(
            [
                "loader",
                "slices timed",
                "slices/s (median)",
                "per round",
                "vs Arrow",
                "item path alone, slices/s (vs Arrow)",
                "bytes on disk",
                "bytes vs Arrow",
            ],
            rows,
        ),
        "",
        "item path alone: `__getitems__` of 16 random indices in-process (no DataLoader, no "
        "collation into shared memory, which the DataLoader rate includes for every loader)",
        f"generate raw tree: {fmt_seconds(generate_s)}; ingest (2 workers): "
        f"{fmt_seconds(ingest_s)}; Arrow conversion (from_generator + save_to_disk): "
        f"{fmt_seconds(arrow_s)}",
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 small cases, 200 slices")
    parser.add_argument("--cases", type=int, default=None, help="cases to generate")
    parser.add_argument("--slices", type=int, default=None, help="slices timed per round")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds")
    parser.add_argument(
        "--nifti-slices", type=int, default=None, help="slices timed for nibabel (slow)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="keep the files here")
    args = parser.parse_args(argv)
    quick = args.quick
    args.cases = args.cases or (2 if quick else 5)
    args.slices = args.slices or (200 if quick else 1000)
    args.rounds = args.rounds or (1 if quick else 5)
    args.nifti_slices = args.nifti_slices or (32 if quick else 64)
    args.n_slices = (60, 100) if quick else (100, 300)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the report."""
    args = parse_args(argv)
    if args.workdir is not None:
        workdir, cleanup = args.workdir.resolve(), False
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        workdir, cleanup = Path(tempfile.mkdtemp(prefix="ctspine-loaders-")), True
    try:
        print(run(args, workdir))
    finally:
        if cleanup:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
