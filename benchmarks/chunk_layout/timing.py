"""The readers and writers compared, and the interleaved timing loop.

Every contender reads a box (image and label) of a case: zarr-python's default pipeline,
the zarrs pipeline, the lean prototype (:mod:`.lean`) with its variants, nnU-Net's blosc2
loader, the package's own accessor. Within a round the contenders take turns call by call,
in an order rotated from call to call, so that a change of the machine's load falls on all
of them; medians over the rounds are reported. In the first round every result is checked
against the voxels written.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from .data import Candidate, Case, resolve
from .lean import Box, LeanArray, create_like, read_many, shard_runs, write_tiled

__all__ = [
    "Contender",
    "Op",
    "lean_contender",
    "measure",
    "morton_runs",
    "time_writes",
    "zarr_contender",
]

#: Reads image and label of ``box`` of a case.
Reader = Callable[[str, Box], tuple[Any, Any]]
#: The expected image and label of ``box`` of a case, for the check.
Truth = Callable[[str, Box], tuple[np.ndarray, np.ndarray]]


@dataclass
class Contender:
    """One reader of one layout: a row and a column of the tables."""

    row: str
    column: str
    read: Reader
    truth: Truth | None = None  # None: the read is checked by its own means


@dataclass
class Op:
    """One kind of read: its name, its picks per round, and who takes part."""

    name: str
    picks: list[list[tuple[str, Box]]]  # per round
    contenders: list[Contender]


def plain_truth(cases: Sequence[Case]) -> Truth:
    """The stored voxels of a box."""
    by_id = {c.case_id: c for c in cases}

    def truth(case_id: str, box: Box) -> tuple[np.ndarray, np.ndarray]:
        s = tuple(slice(lo, hi) for lo, hi in box)
        case = by_id[case_id]
        return case.image[s], case.label[s]

    return truth


def zarr_contender(
    row: str, column: str, arrays: dict[str, tuple[Any, Any]], truth: Truth
) -> Contender:
    """``image[box], label[box]`` through zarr's API (whatever pipeline the arrays have)."""

    def read(case_id: str, box: Box) -> tuple[Any, Any]:
        image, label = arrays[case_id]
        s = tuple(slice(lo, hi) for lo, hi in box)
        return image[s], label[s]

    return Contender(row, column, read, truth)


def lean_contender(
    row: str,
    column: str,
    candidate: Candidate,
    truth: Truth,
    *,
    threads: int,
    decoder: str = "numcodecs",
) -> Contender:
    """The lean prototype, reading into output arrays allocated once per box shape."""
    readers = {
        case_id: (
            LeanArray(image, threads=threads, decoder=decoder),
            LeanArray(label, threads=threads, decoder=decoder),
        )
        for case_id, (image, label) in candidate.arrays.items()
    }
    outputs: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]] = {}

    def read(case_id: str, box: Box) -> tuple[Any, Any]:
        image, label = readers[case_id]
        shape = tuple(hi - lo for lo, hi in box)
        out = outputs.get(shape)
        if out is None:
            out = outputs[shape] = (np.empty(shape, image.dtype), np.empty(shape, label.dtype))
        read_many([(image, box, out[0]), (label, box, out[1])])
        return out

    return Contender(row, column, read, truth)


def _check(contender: Contender, case_id: str, box: Box, got: tuple[Any, Any]) -> None:
    if contender.truth is None:
        return
    expected = contender.truth(case_id, box)
    for what, a, b in zip(("image", "label"), got, expected, strict=True):
        a = np.asarray(a)
        if a.shape != b.shape or not np.array_equal(a, b):
            raise AssertionError(
                f"{contender.row} / {contender.column}: wrong {what} values for {case_id} {box}"
            )


def measure(ops: Sequence[Op], repeats: int) -> dict[tuple[str, str, str], list[float]]:
    """Seconds of every call, keyed ``(op, row, column)``; contenders interleaved call by call."""
    times: dict[tuple[str, str, str], list[float]] = {}
    turn = 0
    for r in range(repeats):
        for op in ops:
            for case_id, box in op.picks[r]:
                turn += 1
                k = turn % max(1, len(op.contenders))
                for contender in op.contenders[k:] + op.contenders[:k]:
                    start = time.perf_counter()
                    got = contender.read(case_id, box)
                    elapsed = time.perf_counter() - start
                    if r == 0:
                        _check(contender, case_id, box, got)
                    times.setdefault((op.name, contender.row, contender.column), []).append(elapsed)
    return times


def medians(times: dict[tuple[str, str, str], list[float]]) -> dict[tuple[str, str, str], float]:
    """The median of each contender's calls."""
    return {key: statistics.median(values) for key, values in times.items()}


def random_picks(
    cases: Sequence[Case], size: tuple[int, int, int] | None, n: int, rng: np.random.Generator
) -> list[tuple[str, Box]]:
    """``n`` random boxes of ``size`` (None: one whole slice) inside random cases."""
    out = []
    for _ in range(n):
        case = cases[int(rng.integers(len(cases)))]
        shape = case.image.shape
        if size is None:
            z = int(rng.integers(shape[0]))
            out.append((case.case_id, ((z, z + 1), (0, shape[1]), (0, shape[2]))))
            continue
        box = []
        for s, dim in zip(size, shape, strict=True):
            s = min(s, dim)
            start = int(rng.integers(0, dim - s + 1))
            box.append((start, start + s))
        out.append((case.case_id, (box[0], box[1], box[2])))
    return out


def whole(case: Case) -> tuple[str, Box]:
    """The whole volume of a case as a box."""
    nz, ny, nx = case.image.shape
    return case.case_id, ((0, nz), (0, ny), (0, nx))


# --------------------------------------------------------------------------------------------
# Writes
# --------------------------------------------------------------------------------------------


def time_writes(
    candidates: Sequence[Candidate],
    cases: Sequence[Case],
    scratch: Path,
    repeats: int,
    threads: int,
    zarrs: bool,
    other_repeats: int = 2,
) -> dict[tuple[str, str], list[float]]:
    """Seconds to write every case's image and label into each layout, keyed (row, writer).

    Writers: the lean tile writer (``threads`` encoding threads; ``repeats`` rounds), zarr's
    default pipeline (``array[...] = data``) and the zarrs pipeline (the first
    ``other_repeats`` rounds only: they are context, and zarr's takes tens of seconds on
    small tiles); the candidates rotate from round to round, the arrays are created (untimed)
    afresh in ``scratch`` before every write.
    """
    out: dict[tuple[str, str], list[float]] = {}
    for r in range(repeats):
        writers = ["lean"]
        if r < other_repeats:
            writers += ["zarr"] + (["zarrs"] if zarrs else [])
        k = r % len(candidates)
        for candidate in list(candidates[k:]) + list(candidates[:k]):
            for writer in writers[r % len(writers) :] + writers[: r % len(writers)]:
                pipeline = (
                    {"codec_pipeline.path": "zarrs.ZarrsCodecPipeline"} if writer == "zarrs" else {}
                )
                with zarr.config.set(pipeline):
                    group = zarr.open_group(scratch, mode="w")
                    arrays = []
                    for case in cases:
                        for name, source, data, codecs in (
                            ("image", case.image_array, case.image, candidate.image_codecs),
                            ("label", case.label_array, case.label, None),
                        ):
                            chunk = resolve(candidate.chunk, data.shape)
                            array = create_like(
                                group, f"{case.case_id}/{name}", source, chunk, codecs=codecs
                            )
                            arrays.append((array, data))
                start = time.perf_counter()
                for array, data in arrays:
                    if writer == "lean":
                        write_tiled(array, data, threads=threads)
                    else:
                        array[...] = data
                out.setdefault((candidate.name, writer), []).append(time.perf_counter() - start)
    return out


def morton_runs(candidate: Candidate, case: Case, scratch: Path) -> tuple[float, float]:
    """Byte ranges per slice when zarr-python writes the shards, and when the lean writer does.

    The mean over the slices of the first shard of the case's image, ranges coalesced when
    adjacent.
    """
    group = zarr.open_group(scratch, mode="w")
    chunk = resolve(candidate.chunk, case.image.shape)
    by_zarr = create_like(group, "zarr", case.image_array, chunk)
    by_zarr[...] = case.image
    counts = []
    for array in (by_zarr, candidate.arrays[case.case_id][0]):
        reader = LeanArray(array, threads=1)
        nz, ny, nx = case.image.shape
        reader.read(((0, 1), (0, ny), (0, nx)))  # caches the first shard's index
        table = reader._index[0]
        runs = []
        for z in range(min(nz, reader.layout.shard[0])):
            (entries,) = reader.chunks_of(((z, z + 1), (0, ny), (0, nx))).values()
            runs.append(len(shard_runs(table, [e[0] for e in entries])))
        counts.append(float(np.mean(runs)))
    return counts[0], counts[1]
