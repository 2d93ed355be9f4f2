"""The benchmark's tables: candidates as rows, nnU-Net's reference, the goals of issue #18."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.common import NOISE_NOTE, fmt_seconds, machine_lines, markdown_table

from .data import Candidate, Config, Inputs
from .remote import MERGE_GAP, Requests

__all__ = ["Results", "print_report"]

#: The goals of issue #18's "Done means".
PATCH_GOAL, SLICE_GOAL, REQUEST_GOAL, BYTES_GOAL = 1.5, 1e-3, 2, 0.8


@dataclass
class Results:
    """Everything one run measured."""

    cfg: Config
    machine: dict[str, Any]
    inputs: Inputs | None = None
    candidates: list[Candidate] = field(default_factory=list)
    real: list[Candidate] = field(default_factory=list)
    times: dict[tuple[str, str, str], float] = field(default_factory=dict)
    writes: dict[tuple[str, str], float] = field(default_factory=dict)
    morton: dict[str, tuple[float, float]] = field(default_factory=dict)
    requests: Requests | None = None
    nnunet: dict[str, dict[str, Any]] = field(default_factory=dict)
    loaders: dict[str, float] = field(default_factory=dict)
    normalisers: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    load_end: list[float] | None = None

    def t(self, op: str, row: str, column: str) -> float | None:
        """A median time, None when not measured."""
        return self.times.get((op, row, column))

    def to_json(self) -> dict[str, Any]:
        """Every number, JSON-able."""
        inputs = self.inputs
        return {
            "config": self.cfg.__dict__,
            "machine": self.machine,
            "load_average_end": self.load_end,
            "cases": None
            if inputs is None
            else [
                {
                    "case": c.case_id,
                    "shape": c.image.shape,
                    "nii_gz_bytes": c.nii_bytes,
                    "codec": c.codec,
                }
                for c in inputs.cases + inputs.real
            ],
            "ingest_seconds": None if inputs is None else inputs.ingest_seconds,
            "bytes": {
                c.name: {"default": c.bytes(), "compact": c.bytes(compact=True)}
                for c in self.candidates
            },
            "real_bytes": {
                c.name: {"default": c.bytes(), "compact": c.bytes(compact=True)} for c in self.real
            },
            "times": [
                {"op": k[0], "row": k[1], "column": k[2], "seconds": v}
                for k, v in self.times.items()
            ],
            "writes": [{"row": k[0], "writer": k[1], "seconds": v} for k, v in self.writes.items()],
            "morton_ranges_per_slice": self.morton,
            "requests": None
            if self.requests is None
            else [
                {"row": k[0], "read": k[1], "requests_per_array": v[0], "bytes_per_array": v[1]}
                for k, v in self.requests.counts.items()
            ],
            "nnunet": self.nnunet,
            "loaders_patches_per_second": self.loaders,
            "notes": self.notes + ([] if self.requests is None else self.requests.notes),
        }


def ms(seconds: float | None) -> str:
    """Milliseconds with 3 significant digits, ``n/a`` for None."""
    if seconds is None:
        return "n/a"
    value = seconds * 1e3
    return f"{value:.3g}" if value < 1000 else f"{value:.0f}"


def _mb(n: float | None) -> str:
    return "n/a" if not n else f"{n / 1e6:.1f} MB"


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _reqs(results: Results, row: str, what: str) -> str:
    counts = None if results.requests is None else results.requests.counts.get((row, what))
    return "n/a" if counts is None else f"{counts[0]:g}"


def _readers(
    results: Results, op: str, row: str, columns: Sequence[str] = ("zarr", "zarrs", "lean")
) -> str:
    return " / ".join(ms(results.t(op, row, c)) for c in columns)


def main_table(results: Results) -> str:
    """Candidates as rows, every measure as a column, nnU-Net's rows below."""
    assert results.inputs is not None
    nii = sum(c.nii_bytes for c in results.inputs.cases)
    rows = []
    for c in results.candidates:
        default, compact = c.bytes(), c.bytes(compact=True)
        writes = " / ".join(
            fmt_seconds(results.writes.get((c.name, w))) for w in ("lean", "zarr", "zarrs")
        )
        rows.append(
            [
                c.name,
                f"{_mb(default)} ({_x(_ratio(default, nii))})",
                f"{_mb(compact)} ({_x(_ratio(compact, nii))})" if compact else "–",
                _readers(results, "slice", c.name),
                _readers(results, "patch_a", c.name),
                _readers(results, "patch_b", c.name),
                _readers(results, "volume", c.name),
                writes,
                " / ".join(
                    _reqs(results, c.name, w)
                    for w in ("slice lean cold", "slice lean warm", "slice zarr", "slice zarrs")
                ),
                " / ".join(
                    _reqs(results, c.name, w)
                    for w in ("patch lean cold", "patch lean warm", "patch zarr", "patch zarrs")
                ),
            ]
        )
    for row, info in results.nnunet.items():
        rows.append(
            [
                row,
                f"{_mb(info['bytes'])} ({_x(_ratio(info['bytes'], nii))})",
                "–",
                "–",
                ms(results.t("patch_a", row, "nnU-Net")),
                ms(results.t("patch_b", row, "nnU-Net")),
                ms(results.t("volume", row, "nnU-Net")),
                fmt_seconds(info["write"]),
                "–",
                "–",
            ]
        )
    rows.append(
        [".nii.gz (nibabel, as generated)", _mb(nii), "–", "–", "–", "–", "–", "–", "–", "–"]
    )
    a, b = ("x".join(map(str, p)) for p in results.cfg.patches)
    headers = [
        "inner chunk",
        "bytes, default codec (/ .nii.gz)",
        "bytes, --codec compact (/ .nii.gz)",
        "slice pair ms: zarr / zarrs / lean",
        f"patch {a} ms: zarr / zarrs / lean",
        f"patch {b} ms: zarr / zarrs / lean",
        "whole volume ms: zarr / zarrs / lean",
        f"write all cases: lean / zarr / zarrs (medians of {results.cfg.repeats} / "
        f"{min(2, results.cfg.repeats)})",
        "S3 requests per array, slice: lean cold / warm / zarr / zarrs",
        f"S3 requests per array, patch {a}: lean cold / warm / zarr / zarrs",
    ]
    return markdown_table(headers, rows)


#: The lean prototype's variants (columns of the timing tables).
LEAN_COLUMNS = ("lean 1 thread", "lean", "lean blosc2 1 thread", "lean blosc2")


def _best_lean(results: Results, op: str, row: str) -> tuple[float | None, str]:
    """The fastest variant of the lean prototype for ``op`` on ``row``, and its column."""
    found = [(t, c) for c in LEAN_COLUMNS if (t := results.t(op, row, c)) is not None]
    return min(found) if found else (None, "")


def _reference(results: Results, scheme: str) -> float | None:
    a = "x".join(map(str, results.cfg.patches[0]))
    for row in results.nnunet:
        if f"{scheme} norm., chunks for {a}" in row:
            return results.t("patch_a", row, "nnU-Net")
    return None


def goals_table(results: Results) -> str:
    """Which candidate meets which goal of issue #18 (with the best lean variant)."""
    assert results.inputs is not None
    nii = sum(c.nii_bytes for c in results.inputs.cases)
    ct, zscore = _reference(results, "CT"), _reference(results, "z-score")
    rows = []
    for c in results.candidates:
        lean = results.t("patch_a", c.name, "lean")
        best, variant = _best_lean(results, "patch_a", c.name)
        slice_pair, slice_variant = _best_lean(results, "slice", c.name)
        counts = (
            None
            if results.requests is None
            else results.requests.counts.get((c.name, "slice lean cold"))
        )
        size = _ratio(c.bytes(), nii)
        patch = _ratio(best, ct)
        met = [
            patch is not None and patch <= PATCH_GOAL,
            slice_pair is not None and slice_pair <= SLICE_GOAL,
            counts is not None and counts[0] <= REQUEST_GOAL,
            size is not None and size <= BYTES_GOAL,
        ]
        rows.append(
            [
                c.name,
                f"{_x(patch)} ({variant}); lean: {_x(_ratio(lean, ct))}",
                f"{_x(_ratio(best, zscore))}",
                f"{ms(slice_pair)} ({slice_variant})",
                "n/a" if counts is None else f"{counts[0]:g}",
                _x(size),
                f"{sum(met)} of 4",
            ]
        )
    a = "x".join(map(str, results.cfg.patches[0]))
    return markdown_table(
        [
            "inner chunk",
            f"patch {a}: best lean / nnU-Net CT norm. (goal <= {PATCH_GOAL}x)",
            "best lean / nnU-Net z-score norm.",
            "slice pair, best lean ms (goal <= 1)",
            "S3 requests per array per slice, cold (goal <= 2)",
            "bytes / .nii.gz (goal <= 0.8)",
            "goals met",
        ],
        rows,
    )


def lean_table(results: Results) -> str:
    """The lean prototype's variants (threads, decoder), and today's accessor."""
    columns = LEAN_COLUMNS
    rows = []
    for c in results.candidates:
        rows.append(
            [
                c.name,
                _readers(results, "slice", c.name, columns),
                _readers(results, "patch_a", c.name, columns),
                _readers(results, "patch_b", c.name, columns),
            ]
        )
    t = results.cfg.threads
    a, b = ("x".join(map(str, p)) for p in results.cfg.patches)
    variants = f"numcodecs 1 thread / numcodecs {t} threads / blosc2 1 thread / blosc2 {t} threads"
    return markdown_table(
        ["inner chunk", f"slice pair ms: {variants}", f"patch {a} ms", f"patch {b} ms"], rows
    )


def loaders_table(results: Results) -> str:
    """PatchSequence in-process, and patches/s through 2-worker DataLoaders."""
    rows = [
        [
            "PatchSequence (today's store), one item in-process",
            ms(results.t("sequence", "PatchSequence (today's store)", "ctspine_zarr")) + " ms",
            "–",
        ]
    ]
    for name, rate in results.loaders.items():
        rows.append([f"DataLoader, {name}", "–", f"{rate:.1f}"])
    return markdown_table(["loader", "time per patch", "patches/s (2 workers)"], rows)


def requests_table(results: Results) -> str:
    """Requests and bytes per array over S3, every reader."""
    if results.requests is None:
        return ""
    reads = (
        "slice lean cold",
        "slice lean warm",
        "slice zarr",
        "slice zarrs",
        "patch lean cold",
        "patch lean warm",
        "patch lean merged warm",
        "patch zarr",
        "patch zarrs",
    )
    rows = []
    for c in results.candidates:
        cells = [c.name]
        for what in reads:
            counts = results.requests.counts.get((c.name, what))
            cells.append("n/a" if counts is None else f"{counts[0]:g} ({counts[1] / 1e3:.0f} kB)")
        rows.append(cells)
    headers = ["inner chunk", *reads]
    headers[7] = f"patch lean, gaps <= {MERGE_GAP >> 20} MiB merged, warm"
    return markdown_table(headers, rows)


def real_table(results: Results) -> str:
    """The real CT slices: bytes and slice pair."""
    assert results.inputs is not None
    nii = sum(c.nii_bytes for c in results.inputs.real)
    rows = []
    for c in results.real:
        default, compact = c.bytes(), c.bytes(compact=True)
        rows.append(
            [
                c.name,
                f"{default / 1e3:.1f} kB ({_x(_ratio(default, nii))})",
                f"{compact / 1e3:.1f} kB ({_x(_ratio(compact, nii))})",
                _readers(results, "real_slice", c.name),
            ]
        )
    return markdown_table(
        [
            "inner chunk",
            "bytes, default (/ .nii.gz)",
            "bytes, compact (/ .nii.gz)",
            "one-slice volume (image + label) ms: zarr / zarrs / lean",
        ],
        rows,
    )


def print_report(results: Results) -> None:
    """Print the tables and the notes (markdown)."""
    inputs = results.inputs
    assert inputs is not None
    cfg = results.cfg
    shapes = ", ".join(f"{c.image.shape[0]}" for c in inputs.cases)
    print(
        f"# Chunk layouts: {len(inputs.cases)} cases of {cfg.shape[0]}x{cfg.shape[1]} "
        f"({shapes} slices), shards of 32 slices, medians of {cfg.repeats} rounds"
    )
    print()
    print(main_table(results))
    print()
    print("## Goals (issue #18)")
    print()
    print(goals_table(results))
    print()
    print("## The lean prototype's variants")
    print()
    print(lean_table(results))
    accessor = results.t("slice", results.candidates[0].name, "accessor")
    print(f"\naccessor today (`ds.ctspine.slice`, (1, Y, X)): {ms(accessor)} ms a slice pair")
    print()
    print("## Loaders")
    print()
    print(loaders_table(results))
    print()
    if results.requests is not None:
        print("## Requests and bytes per array over S3 (moto, 127.0.0.1)")
        print()
        print(requests_table(results))
        print()
    if results.real:
        print("## Real CT slices (pydicom-data 693_UNCR, 693_UNCI)")
        print()
        print(real_table(results))
        print()
    print("## Notes")
    print()
    for c in results.candidates:
        zarr_runs, lean_runs = results.morton.get(c.name, (float("nan"), float("nan")))
        print(
            f"- {c.name}: byte ranges per slice in a shard written by zarr-python (Morton "
            f"order) {zarr_runs:.1f}, by the lean writer (C order) {lean_runs:.1f}"
        )
    for row, info in results.nnunet.items():
        print(f"- {row}: {info['choice']}")
    print(
        f"- ingest of today's layout (package, 2 workers, NIfTI decode included): "
        f"{fmt_seconds(inputs.ingest_seconds)} default, "
        f"{fmt_seconds(inputs.compact_ingest_seconds)} compact; "
        f"the whole store {inputs.store_bytes / 1e6:.1f} MB"
    )
    codecs = ", ".join(sorted({c.codec for c in inputs.cases}))
    print(f"- image codecs the ingest chose: {codecs}")
    for note in results.notes + ([] if results.requests is None else results.requests.notes):
        print(f"- {note}")
    print()
    for line in machine_lines(results.machine):
        print(line)
    end = None if results.load_end is None else [round(x, 2) for x in results.load_end]
    print(f"load average at the end: {end}")
    print(NOISE_NOTE)
