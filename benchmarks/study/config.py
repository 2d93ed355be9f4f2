"""The settings of one run of the study, its command line and its progress log."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import DEFAULT_PACKAGES
from benchmarks.study.tree import Settings as TreeSettings

#: Versions recorded with every run.
PACKAGES = (
    *DEFAULT_PACKAGES,
    "torch",
    "datasets",
    "pyarrow",
    "pydicom",
    "pydicom-data",
    "psutil",
)
#: Sections in the order they run (conversion first: it builds what the others read).
SECTIONS = (
    "conversion",
    "bytes",
    "slices",
    "loader",
    "volume",
    "patch",
    "stats",
    "realct",
    "scale",
)
#: Sections in the order the report shows them.
REPORT_ORDER = ("bytes", "conversion", *SECTIONS[2:])

_T0 = time.perf_counter()


def log(message: str) -> None:
    """Print a progress line on stderr (the report goes to stdout)."""
    print(f"[{time.perf_counter() - _T0:6.1f} s] {message}", file=sys.stderr, flush=True)


def load1() -> float | None:
    """Return the 1-minute load average (None where unavailable)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


@dataclass(frozen=True)
class Config(TreeSettings):
    """What one run measures (see ``--help``): the tree's settings and the study's own."""

    loader_slices: int
    loader_rounds: int
    patches: int
    patch_warmup: int
    patch_size: tuple[int, int, int]
    stats_repeats: int
    scale_shape: tuple[int, int, int]
    scale_cases: int | None
    open_repeats: int
    sections: tuple[str, ...]


def tree_parser(prog: str, description: str, json_help: str) -> argparse.ArgumentParser:
    """A parser with the options of every benchmark on a generated tree.

    ``--quick``, ``--cases``, ``--seed``, ``--json`` and ``--workdir``; the caller adds its own.
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument(
        "--quick", action="store_true", help="CI size: 3 cases of 60-100 slices, fewer reads"
    )
    parser.add_argument("--cases", type=int, help="synthetic cases (default 6, quick 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the tree and the draws")
    parser.add_argument("--json", type=Path, help=json_help)
    parser.add_argument(
        "--workdir",
        type=Path,
        help="keep the files here and reuse the raw tree when its settings match "
        "(default: a temporary directory, removed at the end)",
    )
    return parser


def parse_tree_args(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> tuple[argparse.Namespace, bool, int]:
    """Parse ``argv``; return the options, whether ``--quick``, and the number of cases."""
    args = parser.parse_args(argv)
    quick = bool(args.quick)
    n_cases = args.cases if args.cases is not None else (3 if quick else 6)
    if n_cases < 1:
        parser.error("--cases must be >= 1")
    return args, quick, n_cases


def parse_args(argv: Sequence[str] | None) -> tuple[Config, argparse.Namespace]:
    """Parse the command line into the run's settings."""
    parser = tree_parser(
        "python -m benchmarks",
        "The ctspine_zarr benchmark: store vs nibabel .nii.gz, HF Arrow and .npy.",
        "write the results here (default: a temporary file)",
    )
    parser.add_argument("--markdown", type=Path, help="also write the report here")
    parser.add_argument(
        "--only",
        help=f"comma-separated sections to run (default: all): {','.join(SECTIONS)}",
    )
    parser.add_argument(
        "--scale-cases",
        type=int,
        help="cases of the scale section (default: all 1,005 names of the split file)",
    )
    args, quick, n_cases = parse_tree_args(parser, argv)
    sections: tuple[str, ...] = SECTIONS
    if args.only:
        wanted = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = sorted(set(wanted) - set(SECTIONS))
        if unknown:
            parser.error(f"unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")
        sections = tuple(s for s in SECTIONS if s in wanted)
    cfg = Config(
        quick=quick,
        n_cases=n_cases,
        slices=(60, 100) if quick else (100, 300),
        shape=(512, 512),
        seed=args.seed,
        reads=60 if quick else 200,
        warmup=5 if quick else 10,
        first_touch_reads=0,
        loader_slices=192 if quick else 800,
        loader_rounds=3,  # the median of 3: one short round swung 0.8x-1.6x in CI
        volume_repeats=1 if quick else 3,
        patches=12 if quick else 24,
        patch_warmup=2,
        patch_size=(64, 128, 128),
        stats_repeats=1 if quick else 3,
        ingest_repeats=1 if quick else 3,  # interleaved; 2 vs 1 worker swung 1.17x-1.53x
        scale_shape=(8, 16, 16),
        scale_cases=args.scale_cases,
        open_repeats=3 if quick else 5,
        sections=sections,
    )
    return cfg, args
