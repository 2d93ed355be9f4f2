"""Lossless image codecs on the suite's generated cases: bytes against decoding time.

Goal 3b asks for the store at 1/15 of the Arrow 2d table's bytes (0.533 bytes a voxel) and
goal 3c for a DataLoader at least as fast as Arrow's. This measures, on the same generated
cases the suite uses (6 cases, 512x512, 100-300 slices, seed 0; or ``--raw DIR``), every
``--step``-th axial slice in canonical order, each codec's bytes and its decoding time per
slice on one core, so that the trade-off between the two goals can be read in one table:

* Blosc zstd as the store's default chooses it per case (``schema.image_encoding``);
* JPEG-LS (CharLS) on HU + 32768 as uint16, what ``--codec compact`` stores;
* JPEG-LS on the slice minus its minimum (a 4-byte offset per slice), a tighter range;
* JPEG-XL lossless at effort 2 and 3 (libjxl, one thread);
* per case, the smaller of JPEG-LS and JPEG-XL effort 2 (by the sampled slices' bytes);
* HTJ2K lossless (OpenJPH).

Bytes per voxel exclude chunk checksums and shard indexes (20 bytes a slice). Run from the
repository root::

    python -m benchmarks.compact_frontier [--raw DIR] [--step 10]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

import numpy as np

from benchmarks.common import NOISE_NOTE, machine_info, machine_lines, markdown_table
from ctspine_zarr.io.nifti import read_volume
from ctspine_zarr.schema import image_encoding
from ctspine_zarr.testing.synthetic import make_raw_tree

ARROW_BYTES_PER_VOXEL = 8.0  # float32 image + int32 segmentation
GOAL_BYTES_PER_VOXEL = ARROW_BYTES_PER_VOXEL / 15

Codec = tuple[Callable[[np.ndarray], bytes], Callable[[bytes], object]]


def codecs() -> dict[str, Codec]:
    """Encoder and decoder of every measured codec (decoders on one thread)."""
    import imagecodecs as ic

    def flip(s: np.ndarray) -> np.ndarray:
        return s.view(np.uint16) ^ np.uint16(0x8000)

    def shifted(s: np.ndarray) -> bytes:
        low = int(s.min())
        values = (s.astype(np.int32) - low).astype(np.uint16)
        return np.int32(low).tobytes() + ic.jpegls_encode(values)

    return {
        "JPEG-LS, HU + 32768 (`--codec compact`)": (
            lambda s: ic.jpegls_encode(flip(s)),
            ic.jpegls_decode,
        ),
        "JPEG-LS, slice minus its minimum": (shifted, lambda b: ic.jpegls_decode(b[4:])),
        "JPEG-XL lossless, effort 2": (
            lambda s: ic.jpegxl_encode(flip(s), lossless=True, effort=2, numthreads=1),
            lambda b: ic.jpegxl_decode(b, numthreads=1),
        ),
        "JPEG-XL lossless, effort 3": (
            lambda s: ic.jpegxl_encode(flip(s), lossless=True, effort=3, numthreads=1),
            lambda b: ic.jpegxl_decode(b, numthreads=1),
        ),
        "HTJ2K lossless": (lambda s: ic.htj2k_encode(flip(s)), ic.htj2k_decode),
    }


BLOSC_ROW: Final = "Blosc zstd as the store chooses it per case"


def store_blosc(volume: np.ndarray) -> Codec:
    """Encoder and decoder of the Blosc configuration the store picks for ``volume``."""
    import numcodecs

    config = image_encoding("default", sample=volume)["compressors"][0].to_dict()
    c = config["configuration"]
    shuffle = {"shuffle": numcodecs.Blosc.SHUFFLE, "bitshuffle": numcodecs.Blosc.BITSHUFFLE}
    blosc = numcodecs.Blosc(c["cname"], c["clevel"], shuffle[c["shuffle"]])
    return blosc.encode, blosc.decode


def measure(volumes: dict[str, np.ndarray]) -> dict[str, dict[str, tuple[int, float, int]]]:
    """``{codec: {case: (bytes, decode seconds, slices)}}`` over the sampled slices."""
    import numcodecs

    numcodecs.blosc.use_threads = False
    fixed = codecs()
    out: dict[str, dict[str, tuple[int, float, int]]] = {name: {} for name in fixed}
    out[BLOSC_ROW] = {}
    for case, volume in volumes.items():
        for name, (encode, decode) in {**fixed, BLOSC_ROW: store_blosc(volume)}.items():
            nbytes, seconds = 0, 0.0
            for s in volume:
                s = np.ascontiguousarray(s)
                data = encode(s)
                nbytes += len(data)
                start = time.perf_counter()
                decode(data)
                seconds += time.perf_counter() - start
            out[name][case] = (nbytes, seconds, len(volume))
    return out


def report(results: dict[str, dict[str, tuple[int, float, int]]], voxels: int) -> str:
    """The markdown table: bytes a voxel, fraction of Arrow, decode ms a slice."""
    ls, xl = "JPEG-LS, HU + 32768 (`--codec compact`)", "JPEG-XL lossless, effort 2"
    cases = list(results[ls])
    best = {c: min((results[ls][c], results[xl][c]), key=lambda r: r[0]) for c in cases}
    results = {**results, "per case the smaller of JPEG-LS and JPEG-XL effort 2": best}
    base = sum(r[0] for r in results[ls].values())
    rows = []
    for name, per_case in results.items():
        nbytes = sum(r[0] for r in per_case.values())
        seconds = sum(r[1] for r in per_case.values())
        slices = sum(r[2] for r in per_case.values())
        per_voxel = nbytes / voxels
        rows.append(
            [
                name,
                f"{per_voxel:.4f}",
                f"1/{ARROW_BYTES_PER_VOXEL / per_voxel:.2f}",
                "yes" if per_voxel <= GOAL_BYTES_PER_VOXEL else "no",
                f"{nbytes / base:.3f}",
                f"{1e3 * seconds / slices:.2f}",
            ]
        )
    return markdown_table(
        [
            "image codec",
            "bytes / voxel",
            "of Arrow 2d's bytes",
            "<= 1/15",
            "bytes vs JPEG-LS",
            "decode ms / slice (1 core)",
        ],
        rows,
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--raw", type=Path, default=None, help="a raw tree (default: generate)")
    parser.add_argument("--step", type=int, default=10, help="every N-th slice (default 10)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Generate (or read) the tree, measure, print the table."""
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ctspine-frontier-") as tmp:
        raw = args.raw
        if raw is None:
            raw = Path(tmp) / "raw"
            make_raw_tree(raw, n_cases=6, shape=(512, 512), n_slices=(100, 300), seed=0)
        volumes = {}
        for path in sorted((raw / "rawdata" / "volumes").glob("*/*.nii.gz")):
            case = path.name.removesuffix(".nii.gz")
            data = read_volume(str(path), case_id=case).data
            volumes[case] = np.ascontiguousarray(data[:: args.step])
        voxels = sum(v.size for v in volumes.values())
        results = measure(volumes)
    lines = [
        *machine_lines(machine_info(("numpy", "imagecodecs", "numcodecs", "zarr"))),
        NOISE_NOTE,
        "",
        f"{len(volumes)} cases, every {args.step}th slice ({voxels:,} voxels); goal 3b: "
        f"<= {GOAL_BYTES_PER_VOXEL:.4f} bytes a voxel (1/15 of Arrow's 8).",
        "",
        report(results, voxels),
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
