"""MONAI (and TorchIO) reading the store against their own readers of the ``.nii.gz`` files.

Issue #20: on 512x512 synthetic cases, in one process (``num_workers=0``: the rate of one
loader worker), the contenders interleaved case by case, round after round, medians kept:

- **volumes**: ``LoadImaged(keys=["image", "label"])`` of a whole case with
  ``CTSpineReader`` from the store against MONAI's ``NibabelReader`` on the source files,
  alone and followed by ``Orientationd("RAS")`` (the store's arrays are RAS already, the
  files' are not: with it both pipelines give the same tensors); TorchIO's
  ``subject(store, case)`` against ``tio.Subject`` of the files, both loaded and made
  canonical. Goal: >= 3x the NibabelReader volume rate.
- **patches**: ``RandCropByPosNegLabeld`` (``--patch`` voxels, 4 samples, pos 1 neg 1) after
  loading the whole case from the files, from the store, and from the store through
  ``RandZWindowd`` (only the window of ``--patch``'s z slices is read).

Run: ``python -m benchmarks.frameworks [--cases 4] [--slices 150 200] [--rounds 3]``
(``pip install -e ".[bench,monai,torchio]" torch==2.13.0``). It prints a markdown table of
rates and ratios against the NibabelReader anchor; the numbers go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ctspine_zarr
from ctspine_zarr.testing.synthetic import make_raw_tree

from .common import (
    DEFAULT_PACKAGES,
    NOISE_NOTE,
    fmt_ratio,
    machine_info,
    machine_lines,
    markdown_table,
    work_directory,
)

PACKAGES = (*DEFAULT_PACKAGES, "monai", "torchio", "torch")


def measure(
    contenders: dict[str, Callable[[int], Any]], n_items: int, rounds: int, warmup: int = 1
) -> dict[str, float]:
    """Median seconds per call of each contender.

    The contenders are interleaved item by item, their order rotated at each item so that
    none always runs first (after another one's memory churn); ``warmup`` first rounds
    (imports, caches, first-touch of memory) are not kept.
    """
    names = list(contenders)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(warmup + rounds):
        for i in range(n_items):
            shift = (round_ * n_items + i) % len(names)
            for name in names[shift:] + names[:shift]:
                start = time.perf_counter()
                contenders[name](i)
                if round_ >= warmup:
                    times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def _volume_contenders(store: Path, cases: list[Any]) -> dict[str, Callable[[int], Any]]:
    import torchio as tio
    from monai.transforms import Compose, LoadImaged, Orientationd

    from ctspine_zarr.monai import CTSpineReader, reference
    from ctspine_zarr.torchio import subject

    keys = ["image", "label"]
    files = [{"image": str(c.image_path), "label": str(c.label_path)} for c in cases]
    refs = [
        {"image": reference(store, c.case_id), "label": reference(store, c.case_id, "label")}
        for c in cases
    ]
    nib_load = LoadImaged(keys, reader="NibabelReader", ensure_channel_first=True)
    our_load = LoadImaged(keys, reader=CTSpineReader(), ensure_channel_first=True)
    ras = Orientationd(keys, axcodes="RAS", labels=None)
    canonical = tio.ToCanonical()

    def tio_files(i: int) -> Any:
        one = tio.Subject(
            image=tio.ScalarImage(cases[i].image_path), label=tio.LabelMap(cases[i].label_path)
        )
        one.load()
        return canonical(one)

    def tio_store(i: int) -> Any:
        one = subject(store, cases[i].case_id)
        one.load()
        return canonical(one)

    return {
        "MONAI LoadImaged, NibabelReader on .nii.gz": lambda i: nib_load(files[i]),
        "MONAI LoadImaged, CTSpineReader on the store": lambda i: our_load(refs[i]),
        "+ Orientationd(RAS), NibabelReader": lambda i: Compose([nib_load, ras])(files[i]),
        "+ Orientationd(RAS), CTSpineReader": lambda i: Compose([our_load, ras])(refs[i]),
        "TorchIO Subject of the .nii.gz + ToCanonical": tio_files,
        "TorchIO subject(store, case) + ToCanonical": tio_store,
    }


def _patch_contenders(
    store: Path, cases: list[Any], patch: tuple[int, int, int]
) -> dict[str, Callable[[int], Any]]:
    from monai.transforms import Compose, LoadImaged, RandCropByPosNegLabeld

    from ctspine_zarr.monai import CTSpineReader, RandZWindowd, reference

    keys = ["image", "label"]
    files = [{"image": str(c.image_path), "label": str(c.label_path)} for c in cases]
    refs = [
        {"image": reference(store, c.case_id), "label": reference(store, c.case_id, "label")}
        for c in cases
    ]

    def crop() -> RandCropByPosNegLabeld:
        t = RandCropByPosNegLabeld(
            keys, label_key="label", spatial_size=patch, pos=1, neg=1, num_samples=4
        )
        t.set_random_state(0)
        return t

    nib = Compose([LoadImaged(keys, reader="NibabelReader", ensure_channel_first=True), crop()])
    whole = Compose([LoadImaged(keys, reader=CTSpineReader(), ensure_channel_first=True), crop()])
    window = RandZWindowd(keys, size=patch[2])
    window.set_random_state(0)
    slab = Compose(
        [window, LoadImaged(keys, reader=CTSpineReader(), ensure_channel_first=True), crop()]
    )
    return {
        "RandCropByPosNegLabeld after NibabelReader (whole .nii.gz)": lambda i: nib(files[i]),
        "RandCropByPosNegLabeld after CTSpineReader (whole case)": lambda i: whole(refs[i]),
        f"RandZWindowd({patch[2]}) + CTSpineReader (z-range read)": lambda i: slab(refs[i]),
    }


def run(
    work: Path, n_cases: int, slices: tuple[int, int], rounds: int, patch: tuple[int, int, int]
) -> str:
    """Generate and ingest the cases, measure, return the report (markdown)."""
    raw, store = work / "raw", work / "store.zarr"
    cases = make_raw_tree(raw, n_cases=n_cases, shape=(512, 512), n_slices=slices, seed=0)
    ctspine_zarr.ingest(raw, store, workers=2, progress=False)
    warnings.filterwarnings("ignore", "NvImgCodecPydicomReader")  # MONAI's, without a GPU codec
    volumes = measure(_volume_contenders(store, cases), len(cases), rounds)
    patches = measure(_patch_contenders(store, cases, patch), len(cases), rounds)
    anchor = volumes["MONAI LoadImaged, NibabelReader on .nii.gz"]
    anchor_ras = volumes["+ Orientationd(RAS), NibabelReader"]
    anchor_tio = volumes["TorchIO Subject of the .nii.gz + ToCanonical"]
    volume_rows = []
    for name, seconds in volumes.items():
        base = anchor_ras if name.startswith("+") else anchor_tio if "TorchIO" in name else anchor
        volume_rows.append(
            [name, f"{1 / seconds:.2f}", f"{seconds * 1e3:.0f} ms", fmt_ratio(base / seconds)]
        )
    patch_anchor = next(iter(patches.values()))
    patch_rows = [
        [name, f"{4 / seconds:.1f}", f"{seconds * 1e3:.0f} ms", fmt_ratio(patch_anchor / seconds)]
        for name, seconds in patches.items()
    ]
    n_slices = [int(ctspine_zarr.open(store).ctspine.volume(c.case_id).sizes["z"]) for c in cases]
    lines = [
        "```",
        *machine_lines(machine_info(list(PACKAGES))),
        f"{len(cases)} cases of 512x512, {min(n_slices)}-{max(n_slices)} slices "
        f"(variants: {', '.join(c.variant for c in cases)}); {rounds} rounds, medians; "
        "one process, no DataLoader workers",
        NOISE_NOTE,
        "```",
        "",
        markdown_table(
            ["volume (image + label)", "volumes/s", "median", "x its file reader"], volume_rows
        ),
        "",
        markdown_table(
            [
                f"patch pipeline ({'x'.join(map(str, patch))}, 4 per case)",
                "patches/s",
                "median per case",
                "x NibabelReader",
            ],
            patch_rows,
        ),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run, print the report."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.frameworks", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--cases", type=int, default=4)
    parser.add_argument("--slices", type=int, nargs=2, default=(150, 200))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--patch", type=int, nargs=3, default=(96, 96, 32))
    parser.add_argument("--workdir", type=Path, help="keep the tree and store here")
    args = parser.parse_args(argv)
    with work_directory(args.workdir, prefix="ctspine-frameworks-") as work:
        print(run(work, args.cases, tuple(args.slices), args.rounds, tuple(args.patch)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
