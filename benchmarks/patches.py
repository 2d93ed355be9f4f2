"""3D patches through the package against nnU-Net's own blosc2 files (issue #18, phase 2).

``python -m benchmarks.patches [--cases 4] [--repeats 5] [--quick]``: the same synthetic
512 x 512 cases ingested twice by the package, with one whole slice per inner chunk (the
default) and with ``(1, 128, 128)`` tiles (``--tile 128``, format 4), and saved by
nnU-Net v2's ``nnUNetDatasetBlosc2.save_case`` with its ``comp_blosc2_params`` for the patch
(benchmarks/chunk_layout/reference.py). In one run, rounds interleaved, medians:

* a random 64 x 128 x 128 patch (image and label) on the same boxes: the package's reader
  (``read_blocks``, what the loaders call), a ``PatchSequence`` item (33 % foreground,
  float32 / int64), and nnU-Net's ``load_case`` + ``crop_and_pad_nd``;
* patches per second through a 2-worker ``DataLoader``: ``PatchDataset`` on each store and
  nnU-Net's reads of the same boxes;
* a slice pair through the accessor (``ds.ctspine.slice``), a whole volume through the
  accessor and through plain ``xr.open_zarr``;
* requests per array over S3 (moto on 127.0.0.1) of a slice pair and a ``PatchSequence``
  item, through the package's fsspec store; bytes on disk against the ``.nii.gz``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

import ctspine_zarr
from benchmarks.chunk_layout import reference
from benchmarks.chunk_layout.data import _load, array_bytes
from benchmarks.chunk_layout.remote import _per_array, _server
from benchmarks.common import machine_info, machine_lines, markdown_table
from ctspine_zarr.io.slicereader import case_readers, read_blocks
from ctspine_zarr.sampling import PatchSequence
from ctspine_zarr.testing.synthetic import make_raw_tree

PATCH = (64, 128, 128)
LAYOUTS = {"--tile 128: (1, 128, 128) tiles": 128, "default: whole slices": 0}


def _ingest(raw: Path, store: Path, tile: int, codec: str = "default") -> float:
    start = time.perf_counter()
    report = ctspine_zarr.ingest(raw, store, workers=2, progress=False, tile=tile, codec=codec)
    if not report.ok:
        raise RuntimeError(report.summary())
    return time.perf_counter() - start


def _boxes(shapes: dict[str, tuple[int, ...]], n: int, seed: int) -> list[tuple[str, Any]]:
    rng = np.random.default_rng(seed)
    ids = sorted(shapes)
    out = []
    for _ in range(n):
        case = ids[int(rng.integers(len(ids)))]
        lo = [int(rng.integers(0, s - p + 1)) for s, p in zip(shapes[case], PATCH, strict=True)]
        out.append((case, tuple((a, a + p) for a, p in zip(lo, PATCH, strict=True))))
    return out


def _timed(call: Callable[[], Any]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def run(args: argparse.Namespace, work: Path) -> str:
    """Run every measurement; return the report (markdown)."""
    raw = work / "raw"
    cases = make_raw_tree(raw, n_cases=args.cases, shape=args.shape, n_slices=args.slices, seed=18)
    nii = {c.case_id: os.path.getsize(c.image_path) + os.path.getsize(c.label_path) for c in cases}
    stores = {name: work / f"tile{tile}.zarr" for name, tile in LAYOUTS.items()}
    ingest_s = {name: _ingest(raw, stores[name], tile) for name, tile in LAYOUTS.items()}
    compact_s = _ingest(raw, work / "compact.zarr", 128, "compact")
    loaded = _load(stores[next(iter(LAYOUTS))], None, nii)
    shapes = {c.case_id: c.image.shape for c in loaded}
    norms = {s: reference.normaliser(loaded, s) for s in ("CT", "z-score")}
    nn_dirs = {s: work / f"nnunet-{s}" for s in norms}
    nn_bytes = {s: reference.save_nnunet(nn_dirs[s], loaded, PATCH, norms[s])[1] for s in norms}
    nn = {s: reference.NnunetCases(nn_dirs[s], list(shapes)) for s in norms}
    ids = sorted(shapes)
    opened = {name: ctspine_zarr.open(path) for name, path in stores.items()}
    seqs = {
        name: PatchSequence(path, patch_size=PATCH, samples_per_epoch=10_000, seed=1)
        for name, path in stores.items()
    }

    def ours(name: str, case: str, box: Any) -> None:
        r = case_readers(stores[name], case)
        (z0, z1), (y0, y1), (x0, x1) = box
        image, label = read_blocks(
            [(r.image, z0, z1, None, (y0, y1, x0, x1)), (r.label, z0, z1, None, (y0, y1, x0, x1))]
        )
        if args.check:
            np.testing.assert_array_equal(image, loaded[ids.index(case)].image[z0:z1, y0:y1, x0:x1])

    times: dict[str, list[float]] = {}
    for round_ in range(-1, args.repeats):  # round -1 warms up, untimed
        boxes = _boxes(shapes, args.patches, seed=round_ + 1)
        slices = [
            (ids[i % len(ids)], (7 * i + round_) % min(s[0] for s in shapes.values()))
            for i in range(args.slices_per_round)
        ]
        ops: list[tuple[str, Callable[[], Any]]] = []
        for i, (case, box) in enumerate(boxes):
            for s in norms:
                ops.append(
                    (
                        f"patch read: nnU-Net blosc2, {s} norm.",
                        lambda c=case, b=box, s=s: nn[s].patch(c, b),
                    )
                )
            for name in LAYOUTS:
                ops.append(
                    (
                        f"patch read: package reader, {name}",
                        lambda c=case, b=box, n=name: ours(n, c, b),
                    )
                )
                k = round_ * args.patches + i
                ops.append((f"PatchSequence item, {name}", lambda n=name, k=k: seqs[n][k]))
        for case, z in slices:
            for name in LAYOUTS:
                ops.append(
                    (
                        f"slice pair, accessor, {name}",
                        lambda n=name, c=case, z=z: opened[n].ctspine.slice(c, z),
                    )
                )
        for name in LAYOUTS:
            case = ids[round_ % len(ids)]
            ops.append(
                (
                    f"whole volume, accessor, {name}",
                    lambda n=name, c=case: (
                        opened[n].ctspine.volume(c).image.values,
                        opened[n].ctspine.volume(c).label.values,
                    ),
                )
            )
            ops.append(
                (
                    f"whole volume, xr.open_zarr, {name}",
                    lambda n=name, c=case: xr.open_zarr(
                        stores[n], group=f"cases/{c}", consolidated=False
                    )[["image", "label"]].load(),
                )
            )
        order = np.random.default_rng(100 + round_).permutation(len(ops))
        for j in order:
            what, call = ops[j]
            seconds = _timed(call)
            if round_ >= 0:
                times.setdefault(what, []).append(seconds)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}

    rows = []
    ref = med["patch read: nnU-Net blosc2, CT norm."]
    for what in sorted(k for k in med if k.startswith(("patch read", "PatchSequence"))):
        rows.append([what, f"{med[what]:.2f} ms", f"{med[what] / ref:.2f}x"])
    table = markdown_table(
        ["random 64x128x128 patch, image + label", "median", "/ nnU-Net CT norm."], rows
    )

    other = [[k, f"{med[k]:.2f} ms"] for k in sorted(med) if k.startswith(("slice", "whole"))]
    table2 = markdown_table(["read", "median"], other)

    nii_total = sum(nii.values())
    sizes = []
    for name, path in stores.items():
        b = sum(array_bytes(a) for a in _arrays(path))
        sizes.append(
            [
                f"store, {name}, default codec",
                f"{b / 1e6:.1f} MB",
                f"{b / nii_total:.3f}x",
                f"{ingest_s[name]:.1f} s",
            ]
        )
    b = sum(array_bytes(a) for a in _arrays(work / "compact.zarr"))
    sizes.append(
        [
            "store, --tile 128, --codec compact",
            f"{b / 1e6:.1f} MB",
            f"{b / nii_total:.3f}x",
            f"{compact_s:.1f} s",
        ]
    )
    for s, nb in nn_bytes.items():
        sizes.append(
            [
                f"nnU-Net blosc2, {s} norm. (float32 image)",
                f"{nb / 1e6:.1f} MB",
                f"{nb / nii_total:.3f}x",
                "–",
            ]
        )
    sizes.append([".nii.gz", f"{nii_total / 1e6:.1f} MB", "1.000x", "–"])
    table3 = markdown_table(
        ["image + label arrays", "bytes", "/ .nii.gz", "ingest (2 workers)"], sizes
    )

    parts = [table, table2, table3]
    if reference.have_torch() and not args.no_loaders:
        parts.append(_loaders(args, stores, nn_dirs, shapes))
    if not args.no_s3:
        parts.append(_s3(stores, ids[0]))
    return "\n\n".join(parts)


def _arrays(store: Path) -> list[Any]:
    import zarr

    out = []
    for case in ctspine_zarr.open(store).ctspine.case_ids():
        group = zarr.open_group(store, path=f"cases/{case}", mode="r")
        out += [group["image"], group["label"]]
    return out


def _loaders(
    args: argparse.Namespace,
    stores: dict[str, Path],
    nn_dirs: dict[str, Path],
    shapes: dict[str, Any],
) -> str:
    from ctspine_zarr.torch import PatchDataset

    n = args.loader_patches
    boxes = _boxes(shapes, n + 8, seed=99)
    rates: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for name, path in stores.items():
            ds = PatchDataset(path, patch_size=PATCH, samples_per_epoch=n + 8, seed=7)
            rates.setdefault(f"PatchDataset, {name}", []).append(reference.loader_rate(ds, n, 2))
        for s, folder in nn_dirs.items():
            ds2 = reference.NnunetPatches(folder, list(shapes), boxes)
            rates.setdefault(f"nnU-Net load_case + crop_and_pad_nd, {s} norm.", []).append(
                reference.loader_rate(ds2, n, 2)
            )
    rows = [[k, f"{statistics.median(v):.1f}"] for k, v in rates.items()]
    return markdown_table(
        ["DataLoader(batch_size=2, num_workers=2), 64x128x128", "patches/s (median)"], rows
    )


def _s3(stores: dict[str, Path], case: str) -> str:
    import s3fs

    rows = []
    with _server() as (options, log):
        fs = s3fs.S3FileSystem(**options)
        fs.mkdir("bench")
        for path in stores.values():
            fs.put(str(path), f"bench/{path.name}", recursive=True)
        for name, path in stores.items():
            url = f"s3://bench/{path.name}"
            ds = ctspine_zarr.open(url, storage_options=options)
            seq = PatchSequence(
                url, patch_size=PATCH, samples_per_epoch=20, seed=2, storage_options=options
            )
            seq._arrays(0)
            counts = []
            for z in (40, 41):  # cold (the shard index first), then warm
                log.take()
                ds.ctspine.slice(case, z)
                counts.append(_per_array(log.take()))
            for i in range(2):
                log.take()
                seq[i]
                counts.append(_per_array(log.take()))
            rows.append([name, *(f"{c:.0f} ({b / 1e3:.0f} kB)" for c, b in counts)])
    head = [
        "requests per array (bytes)",
        "slice pair, cold",
        "slice pair, warm",
        "PatchSequence item 1",
        "item 2",
    ]
    return markdown_table(head, rows)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="tiny inputs, one round (a smoke test)")
    p.add_argument("--no-loaders", action="store_true")
    p.add_argument("--no-s3", action="store_true")
    p.add_argument("--check", action="store_true", help="check every patch read against the truth")
    p.add_argument("--workdir", type=Path)
    args = p.parse_args(argv)
    args.shape, args.slices = (512, 512), (135, 190)
    args.patches, args.slices_per_round, args.loader_patches = 6, 12, 48
    if args.quick:
        args.shape, args.slices, args.repeats, args.cases = (160, 160), (70, 80), 1, 2
        args.patches, args.slices_per_round, args.loader_patches = 2, 2, 8
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run and print the tables."""
    args = parse_args(argv)
    print("\n".join(machine_lines(machine_info())))
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        print(run(args, Path(tmp)))
    print(f"load average at the end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
