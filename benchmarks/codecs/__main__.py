"""Benchmark Zarr v3 codecs for ctspine_zarr CT images (int16 HU) and vertebra labels (uint8).

``python -m benchmarks.codecs [--quick | --all] [--only NAME,...]``: measure and print the
tables (what is measured and how: the package docstring, ``benchmarks/codecs/__init__.py``).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
import warnings
from collections.abc import Sequence

import numpy as np
import zarr

from benchmarks.codecs.configs import (
    ALL,
    CONTEXT_CONFIGS,
    FULL,
    QUICK,
    SHARD_SLICES,
    image_configs,
    label_configs,
)
from benchmarks.codecs.data import (
    load_real_slices,
    synthetic_volume,
)
from benchmarks.codecs.measure import (
    Row,
    gzip6,
    run_context,
    run_image,
    run_labels,
)

# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def _f(x: float, fmt: str = ".3f") -> str:
    return "-" if x != x else format(x, fmt)


def _ratios(values: dict[str, float]) -> str:
    return " / ".join(_f(v) for v in values.values())


def image_table(rows: Sequence[Row], real_names: Sequence[str], synth_names: Sequence[str]) -> str:
    """Return the markdown table of the image rows."""
    head = (
        f"| codec | real CT ratio vs gzip-6 ({' / '.join(real_names)}) "
        f"| synthetic ratio vs gzip-6 ({' / '.join(synth_names)}) "
        "| encode MB/s (wall; CPU) | decode ms/slice (real / synth) "
        "| decode CPU ms/slice (real / synth) | portable |\n"
        "|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        if r.error:
            lines.append(f"| {r.cfg.name} | error: {r.error} | | | | | |")
            continue
        lines.append(
            f"| {r.cfg.name} | {_ratios(r.real)} | {_ratios(r.synth)} "
            f"| {_f(r.encode_mbs, '.0f')}; {_f(r.encode_cpu_mbs, '.0f')} "
            f"| {_f(r.real_decode_ms, '.2f')} / {_f(r.synth_decode_ms, '.2f')} "
            f"| {_f(r.real_decode_cpu_ms, '.2f')} / {_f(r.synth_decode_cpu_ms, '.2f')} "
            f"| {'yes' if r.cfg.portable else 'no'} |"
        )
    return head + "\n".join(lines)


def label_table(rows: Sequence[Row], synth_names: Sequence[str]) -> str:
    """Return the markdown table of the label rows."""
    head = (
        f"| label codec | ratio vs gzip-6 of the uint8 labels ({' / '.join(synth_names)}) "
        "| stored bytes | encode MB/s | decode ms/slice | portable |\n|---|---|---|---|---|---|\n"
    )
    return head + "\n".join(
        f"| {r.cfg.name} | {_ratios(r.synth)} | {sum(r.synth_bytes.values())} "
        f"| {_f(r.encode_mbs, '.0f')} | {_f(r.synth_decode_ms, '.2f')} "
        f"| {'yes' if r.cfg.portable else 'no'} |"
        for r in rows
    )


def nibabel_nii_gz_bytes(hu: np.ndarray) -> int:
    """Return the size of ``hu`` saved by nibabel as .nii.gz with its default settings."""
    import nibabel as nib

    img = nib.Nifti1Image(np.ascontiguousarray(hu.transpose(2, 1, 0)), np.eye(4))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "v.nii.gz")
        nib.save(img, path)
        return os.path.getsize(path)


def versions() -> str:
    """Return the machine and library versions line."""
    import imagecodecs
    import nibabel
    import numcodecs
    import pydicom

    return (
        f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs; "
        f"zarr {zarr.__version__}, numcodecs {numcodecs.__version__}, "
        f"imagecodecs {imagecodecs.__version__}, numpy {np.__version__}, "
        f"pydicom {pydicom.__version__}, nibabel {nibabel.__version__}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print markdown tables."""
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.codecs", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--quick", action="store_true", help="fewer configs/slices/repeats (<60 s)")
    ap.add_argument("--all", action="store_true", help="also the extra configs (~2x longer)")
    ap.add_argument("--only", help="comma-separated substrings: run matching image codecs only")
    ap.add_argument("--slices", type=int, help="slices per synthetic volume (48; 16 quick)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="synthetic seeds")
    ap.add_argument("--repeats", type=int, help="decode repeats (15; 5 quick)")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", message="Numcodecs codecs are not in the Zarr version 3")
    zarr.config.set({"threading.max_workers": 1})  # before zarr creates its thread pool
    n_slices = args.slices or (16 if args.quick else 48)
    level = QUICK if args.quick else ALL if args.all else FULL
    repeats = args.repeats or (5 if args.quick else 15)
    t_all = time.perf_counter()

    real = load_real_slices()
    synth = [synthetic_volume(n_slices, seed) for seed in args.seeds]
    real_names, synth_names = [s.name for s in real], [v.name for v in synth]

    def say(text: str = "") -> None:
        print(text, flush=True)

    say(f"## Codec benchmark ({['--quick', 'full', '--all'][level]})\n")
    say(f"- {versions()}")
    say(f"- shards of {SHARD_SLICES} slices, inner chunk (1, 512, 512), crc32c after compressor")
    for s in real:
        say(f"- real `{s.name}` ({gzip6(s.hu)} B gzip-6): " + "; ".join(s.notes))
    for v in synth:
        labels = np.unique(v.label).tolist()
        say(
            f"- synthetic {v.name}: {v.hu.shape} from {v.source}; image gzip-6 {gzip6(v.hu)} B, "
            f"HU {v.hu.min()}..{v.hu.max()}, {np.mean(v.hu == -1024):.1%} at -1024; "
            f"labels {labels}, {np.mean(v.label > 0):.2%} nonzero, gzip-6 {gzip6(v.label)} B"
        )
        if not args.quick:
            say(f"  - nibabel default `.nii.gz` of this image: {nibabel_nii_gz_bytes(v.hu)} B")
    say()

    cfgs = image_configs(level)
    if args.only:
        keys = [k.strip() for k in args.only.split(",") if k.strip()]
        cfgs = [c for c in image_configs(ALL) if any(k in c.name for k in keys)]
    rows = run_image(cfgs, real, synth, repeats)
    say("### Image (int16 HU)\n")
    say(image_table(rows, real_names, synth_names))
    say()

    if args.only:  # a re-run of selected image codecs: skip labels and context
        say(f"_total benchmark time {time.perf_counter() - t_all:.0f} s_")
        return 0

    lrows = run_labels(label_configs(level), synth, repeats)
    say("### Labels (uint8, synthetic)\n")
    say(label_table(lrows, synth_names))
    say()

    best = min(lrows, key=lambda r: sum(r.synth_bytes.values()))
    gz_both = {v.name: gzip6(v.hu) + gzip6(v.label) for v in synth}
    say(f"### Image + label vs gzip-6 of both (synthetic; labels with `{best.cfg.name}`)\n")
    say(f"| image codec | (image + label) / gzip-6 (image + label) ({' / '.join(synth_names)}) |")
    say("|---|---|")
    for r in rows:
        if not r.error:
            both = {n: (r.synth_bytes[n] + best.synth_bytes[n]) / gz_both[n] for n in synth_names}
            say(f"| {r.cfg.name} | {_ratios(both)} |")
    say()

    sizes = (1, 8) if args.quick else (1, 4, 16)
    by_name = {c.name: c for c in image_configs(ALL)}
    ctx_cfgs = [by_name[n] for n in CONTEXT_CONFIGS[: 2 if args.quick else None]]
    say(f"### Compression context: slices per chunk (synthetic {synth[0].name}; the store keeps 1)")
    say(
        "\n| codec | slices/chunk | ratio vs gzip-6 | decode ms per slice read |\n|---|---|---|---|"
    )
    for name, n, ratio, ms in run_context(ctx_cfgs, synth[0], sizes, repeats):
        say(f"| {name} | {n} | {ratio:.3f} | {ms:.2f} |")
    say()
    say(f"_total benchmark time {time.perf_counter() - t_all:.0f} s_")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
