"""zarr's codec pipelines against the lean paths, slice pairs, whole volumes and writes.

Issue #14, item 4: on 512x512 cases, for each contender: a random slice pair (image +
label), a whole volume (image + label), and the write of a case (image + label into fresh
arrays of the store's layout). Contenders: zarr's default pipeline
(``BatchedCodecPipeline``), its newer ``FusedCodecPipeline`` (zarr >= 3.3, opt-in),
the ``zarrs`` Rust pipeline (in the ``bench`` extra), the package's lean reader
(``read_blocks``) and writer (``write_array``), ``ds.ctspine.slice``, the generic
dask-backed volume (``vol.image.isel(z=k).values``, and ``.compute()`` through the
scheduler), and nibabel: the file kept open with indexed_gzip's seek index built by one
earlier pass (its best), a fresh open per read, and a whole load. Rounds interleave the
contenders so that load from other jobs hits them alike; medians are reported.

Run: ``python -m benchmarks.pipelines [--cases 2] [--slices 150 170] [--pairs 40]``.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import zarr

import ctspine_zarr
from ctspine_zarr.io.shardwriter import write_array
from ctspine_zarr.io.slicereader import ZReader, read_blocks
from ctspine_zarr.testing.synthetic import make_raw_tree

from .common import fmt_ratio, machine_info, machine_lines, markdown_table
from .study.contenders import have_indexed_gzip
from .study.tree import BenchCase, describe_case, load_nifti

PIPELINES = {
    "zarr default": "zarr.core.codec_pipeline.BatchedCodecPipeline",
    "zarr fused": "zarr.core.codec_pipeline.FusedCodecPipeline",
    "zarrs": "zarrs.ZarrsCodecPipeline",
}


def open_arrays(store: Path, case: str, pipeline: str) -> tuple[Any, Any] | None:
    """``image`` and ``label`` of a case opened with ``pipeline``; None if it is not here."""
    try:
        with zarr.config.set({"codec_pipeline.path": pipeline}):
            group = zarr.open_group(store, path=f"cases/{case}", mode="r")
            return group["image"], group["label"]
    except Exception:  # noqa: BLE001 - pipeline not installed or not registered here
        return None


def median_ms(samples: list[float]) -> float:
    return float(np.median(samples)) * 1e3


def measure(
    contenders: dict[str, Callable[[int], object]], keys: list[int], rounds: int
) -> dict[str, float]:
    """Median ms per call of each contender, the contenders interleaved call by call."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for key in keys:
            for name, fn in contenders.items():
                start = time.perf_counter()
                fn(key)
                times[name].append(time.perf_counter() - start)
    return {name: median_ms(t) for name, t in times.items()}


def run(n_cases: int, slices: tuple[int, int], pairs: int, rounds: int, work: Path) -> str:
    raw, store = work / "raw", work / "store.zarr"
    written = make_raw_tree(raw, n_cases=n_cases, shape=(512, 512), n_slices=slices, seed=0)
    ctspine_zarr.ingest(raw, store, workers=2, progress=False)
    ds = ctspine_zarr.open(store)
    cases: dict[str, BenchCase] = {
        c.case_id: describe_case(
            c.case_id, c.source, c.variant, str(c.image_path), str(c.label_path)
        )
        for c in written
    }
    case_ids = ds.ctspine.case_ids()
    rng = random.Random(0)
    sizes = {c: int(ds.ctspine.volume(c).sizes["z"]) for c in case_ids}
    picks = [(rng.choice(case_ids), 0) for _ in range(pairs)]
    picks = [(c, rng.randrange(sizes[c])) for c, _ in picks]

    arrays = {
        name: {c: open_arrays(store, c, path) for c in case_ids} for name, path in PIPELINES.items()
    }
    arrays = {name: found for name, found in arrays.items() if None not in found.values()}
    readers = {c: (ZReader(a), ZReader(b)) for c, (a, b) in arrays["zarr default"].items()}  # type: ignore[misc]
    volumes = {c: ds.ctspine.volume(c) for c in case_ids}
    nifti = {
        c: (
            load_nifti(b.image_path, keep_file_open=True),
            load_nifti(b.label_path, keep_file_open=True),
        )
        for c, b in cases.items()
    }
    for image, label in nifti.values():  # one earlier pass builds indexed_gzip's seek index
        np.asanyarray(image.dataobj), np.asanyarray(label.dataobj)

    def pair_of(name: str) -> Callable[[int], object]:
        def read(i: int) -> object:
            case, z = picks[i]
            image, label = arrays[name][case]  # type: ignore[misc]
            return image[z], label[z]

        return read

    def nib_best(i: int) -> object:
        case, z = picks[i]
        image, label = nifti[case]
        index = cases[case].axial_index(z)
        return image.dataobj[index], label.dataobj[index]

    def nib_fresh(i: int) -> object:
        case, z = picks[i]
        index = cases[case].axial_index(z)
        b = cases[case]
        return load_nifti(b.image_path).dataobj[index], load_nifti(b.label_path).dataobj[index]

    pair_contenders: dict[str, Callable[[int], object]] = {name: pair_of(name) for name in arrays}
    pair_contenders |= {
        "lean read_blocks": lambda i: read_blocks(
            [
                (readers[picks[i][0]][0], picks[i][1], picks[i][1] + 1, None),
                (readers[picks[i][0]][1], picks[i][1], picks[i][1] + 1, None),
            ]
        ),
        "ds.ctspine.slice": lambda i: ds.ctspine.slice(*picks[i]),
        "dask volume .isel().values": lambda i: (
            volumes[picks[i][0]].image.isel(z=picks[i][1]).values,
            volumes[picks[i][0]].label.isel(z=picks[i][1]).values,
        ),
        "dask volume .isel().compute()": lambda i: (
            volumes[picks[i][0]][["image", "label"]].isel(z=picks[i][1]).compute()
        ),
        "nibabel best (kept open, seek index)": nib_best,
        "nibabel fresh open per read": nib_fresh,
    }
    pair_ms = measure(pair_contenders, list(range(pairs)), rounds)

    def volume_of(name: str) -> Callable[[int], object]:
        return lambda i: tuple(a[...] for a in arrays[name][case_ids[i]])  # type: ignore[union-attr]

    volume_contenders: dict[str, Callable[[int], object]] = {
        name: volume_of(name) for name in arrays
    }
    volume_contenders |= {
        "lean read_blocks": lambda i: read_blocks(
            [(r, 0, sizes[case_ids[i]], None) for r in readers[case_ids[i]]]
        ),
        "dask volume .values": lambda i: (
            volumes[case_ids[i]].image.values,
            volumes[case_ids[i]].label.values,
        ),
        "dask volume .compute() (lean tasks)": lambda i: volumes[case_ids[i]][
            ["image", "label"]
        ].compute(),
        "nibabel load": lambda i: tuple(
            np.asanyarray(load_nifti(p).dataobj)
            for p in (cases[case_ids[i]].image_path, cases[case_ids[i]].label_path)
        ),
    }
    volume_ms = measure(volume_contenders, list(range(len(case_ids))), max(2, rounds))

    source = {c: tuple(a[...] for a in arrays["zarr default"][c]) for c in case_ids}  # type: ignore[union-attr]
    n_written = [0]

    def write_with(name: str) -> Callable[[int], object]:
        def write(i: int) -> object:
            n_written[0] += 1
            target = work / f"w{n_written[0]}.zarr"
            with zarr.config.set(
                {"codec_pipeline.path": PIPELINES.get(name, PIPELINES["zarr default"])}
            ):
                for src, data in zip(
                    arrays["zarr default"][case_ids[i]], source[case_ids[i]], strict=True
                ):  # type: ignore[arg-type]
                    out = zarr.create_array(
                        target,
                        name=src.basename,
                        shape=src.shape,
                        dtype=src.dtype,
                        chunks=src.chunks,
                        shards=src.shards,
                        serializer=src.serializer,
                        compressors=src.compressors,
                        fill_value=src.fill_value,
                        config={"write_empty_chunks": True},
                    )
                    if name.startswith("lean write_array"):
                        write_array(out, data, threads=2 if "2 threads" in name else 1)
                    else:
                        out[...] = data
            return target

        return write

    lean_writers = ["lean write_array", "lean write_array, 2 threads"]
    write_contenders = {name: write_with(name) for name in [*arrays, *lean_writers]}
    write_ms = measure(write_contenders, list(range(len(case_ids))), max(2, rounds))

    best, fresh, load = (
        pair_ms["nibabel best (kept open, seek index)"],
        pair_ms["nibabel fresh open per read"],
        volume_ms["nibabel load"],
    )
    mb = np.mean([sum(a.nbytes for a in source[c]) for c in case_ids]) / 1e6
    lines = [
        "```",
        *machine_lines(machine_info([*DEFAULT_PACKAGES])),
        f"{len(case_ids)} cases of 512x512, {min(sizes.values())}-{max(sizes.values())} slices, "
        f"{mb:.0f} MB decoded per case; {pairs} random pairs x {rounds} rounds; "
        f"indexed_gzip: {have_indexed_gzip()}",
        "```",
        "",
        markdown_table(
            ["slice pair (image + label)", "median", "x nibabel best", "x nibabel fresh open"],
            [
                [n, f"{ms:.2f} ms", fmt_ratio(best / ms), fmt_ratio(fresh / ms, 0)]
                for n, ms in pair_ms.items()
            ],
        ),
        "",
        markdown_table(
            ["whole volume (image + label)", "median", "x nibabel load"],
            [[n, f"{ms:.0f} ms", fmt_ratio(load / ms)] for n, ms in volume_ms.items()],
        ),
        "",
        markdown_table(
            ["write a case (image + label)", "median", "MB/s"],
            [[n, f"{ms:.0f} ms", f"{mb / ms * 1e3:.0f}"] for n, ms in write_ms.items()],
        ),
    ]
    return "\n".join(lines)


DEFAULT_PACKAGES = (
    "ctspine_zarr",
    "numpy",
    "zarr",
    "zarrs",
    "numcodecs",
    "dask",
    "xarray",
    "nibabel",
    "indexed_gzip",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2)
    parser.add_argument("--slices", type=int, nargs=2, default=(150, 170))
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ctspine-pipelines-") as work:
        print(run(args.cases, tuple(args.slices), args.pairs, args.rounds, Path(work)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
