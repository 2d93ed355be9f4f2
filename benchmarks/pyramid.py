"""A sagittal quick look of a 512 x 512 x 400 case, with and without the 2x level.

``python -m benchmarks.pyramid [--workdir DIR] [--repeats N] [--latency S]`` synthesises one
CTSpine1K-like case of 400 slices of 512 x 512, ingests it, copies the store and writes the
levels of the copy with ``ctspine-zarr pyramid`` (timed, median of ``--repeats`` runs on
fresh copies), then times a sagittal quick look of both stores: the cuts alone
(``read_views``) and the whole PNG (``save_case_png``), from the local folder, through the
Range-honouring HTTP server of ``ctspine_zarr.io.serve`` on 127.0.0.1, and from a moto
S3 server on 127.0.0.1 that waits ``--latency`` seconds (default 0.02) before answering each
GET, as a remote object store would. Each is the median of ``--repeats``, the two stores
alternating, the process's store caches dropped before every call (each reopens the case as
a new reader would; the operating system's page cache stays warm). It prints a markdown
table, the two side by side with their ratio, and the bytes the levels add to the case.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.common import (
    NOISE_NOTE,
    fmt_bytes,
    fmt_seconds,
    fresh_tree,
    machine_info,
    machine_lines,
    markdown_table,
    remove_store,
    work_directory,
)

SHAPE = (512, 512)
SLICES = 400


def _medians(
    calls: Sequence[Callable[[], Any]], repeats: int, before: Callable[[], Any]
) -> list[float]:
    """Median seconds of each of ``calls`` over ``repeats`` rounds, ``before()`` untimed first.

    The calls alternate within a round, so a change of the machine's load falls on all.
    """
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(repeats):
        for fn, out in zip(calls, times, strict=True):
            before()
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def _make(folder: Path) -> tuple[Path, str]:
    """Write the raw case and ingest it; the store without levels and the case id."""
    import ctspine_zarr
    from ctspine_zarr.testing.synthetic import make_raw_tree

    raw, store = folder / "raw", folder / "full.zarr"
    if not store.exists():
        make_raw_tree(fresh_tree(raw), n_cases=1, shape=SHAPE, n_slices=(SLICES, SLICES), seed=16)
        report = ctspine_zarr.ingest(raw, store, workers=2)
        assert report.ok, report.summary()
    case = str(ctspine_zarr.open(store)["case"].values[0])
    return store, case


def _pyramid(store: Path, folder: Path, repeats: int) -> tuple[Path, float, Any]:
    """Time ``add_levels`` on fresh copies of ``store``; the last copy, the median, a report."""
    from ctspine_zarr.write.pyramid import add_levels

    times, report, copy = [], None, folder / "levels.zarr"
    for _ in range(repeats):
        remove_store(copy)
        shutil.copytree(store, copy)
        start = time.perf_counter()
        report = add_levels(copy, workers=1)
        times.append(time.perf_counter() - start)
        assert report.ok, report.summary()
    return copy, statistics.median(times), report


def _quick_looks(
    full: str,
    leveled: str,
    case: str,
    png: Path,
    repeats: int,
    storage_options: dict[str, Any] | None = None,
) -> list[tuple[str, float, float]]:
    """``(what, seconds without levels, seconds with)`` of the cuts and of the PNG."""
    from ctspine_zarr.io.store import forget
    from ctspine_zarr.viz.show import read_views, save_case_png

    def drop() -> None:
        forget(full)
        forget(leveled)

    rows = []
    for what, call in (
        ("sagittal cuts, `read_views(plane='sagittal')`", read_views),
        ("sagittal PNG, `save_case_png(plane='sagittal')`", save_case_png),
    ):

        def run(store: str, call: Callable[..., Any] = call) -> Any:
            if call is save_case_png:
                return save_case_png(
                    store, case, png, plane="sagittal", storage_options=storage_options
                )
            return read_views(store, case, plane="sagittal", storage_options=storage_options)

        (view,) = read_views(leveled, case, plane="sagittal", storage_options=storage_options)
        assert view.downsample == 2, "the copy has no level"
        without, with_levels = _medians([lambda: run(full), lambda: run(leveled)], repeats, drop)
        rows.append((what, without, with_levels))
    return rows


@contextmanager
def _s3(
    folder: Path, stores: Sequence[Path], latency: float
) -> Iterator[tuple[tuple[str, str], dict[str, Any]]]:
    """The stores copied to a moto S3 server on 127.0.0.1 that waits ``latency`` s per GET."""
    import logging
    import os

    import s3fs

    from ctspine_zarr.testing.s3 import serve_s3

    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request

    def slow(app: Any) -> Any:
        def serve(environ: Any, start_response: Any) -> Any:
            if environ["REQUEST_METHOD"] == "GET" and slow.on:  # type: ignore[attr-defined]
                time.sleep(latency)
            return app(environ, start_response)

        return serve

    slow.on = False  # type: ignore[attr-defined]
    with serve_s3(slow) as (endpoint, _):
        options = {"endpoint_url": endpoint, "key": "bench", "secret": "bench"}
        fs = s3fs.S3FileSystem(**options)
        fs.mkdir("pyramid")
        for store in stores:
            fs.put(str(store), f"pyramid/{store.name}", recursive=True)
        slow.on = True  # type: ignore[attr-defined]
        yield (f"s3://pyramid/{stores[0].name}", f"s3://pyramid/{stores[1].name}"), options


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pyramid")
    parser.add_argument("--workdir", help="keep the raw case and the stores here")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--latency", type=float, default=0.02, help="seconds the S3 server waits per GET"
    )
    args = parser.parse_args(argv)

    from ctspine_zarr.io.serve import serve_directory

    with work_directory(args.workdir) as folder:
        full, case = _make(folder)
        leveled, seconds, report = _pyramid(full, folder, args.repeats)
        (outcome,) = report.outcomes
        rows = []
        local = _quick_looks(str(full), str(leveled), case, folder / "q.png", args.repeats)
        rows += [(f"{what}, local folder", a, b) for what, a, b in local]
        with serve_directory(folder) as server:
            urls = (f"{server.url}/{full.name}", f"{server.url}/{leveled.name}")
            remote = _quick_looks(*urls, case, folder / "q.png", args.repeats)
        rows += [(f"{what}, HTTP 127.0.0.1", a, b) for what, a, b in remote]
        with _s3(folder, (full, leveled), args.latency) as (urls, options):
            s3 = _quick_looks(*urls, case, folder / "q.png", args.repeats, options)
        where = f"S3 (moto, {1000 * args.latency:g} ms a request)"
        rows += [(f"{what}, {where}", a, b) for what, a, b in s3]

    print(
        f"# Sagittal quick look of a {SLICES}x{SHAPE[0]}x{SHAPE[1]} case, median of {args.repeats}"
    )
    print()
    table = [(what, fmt_seconds(a), fmt_seconds(b), f"{a / b:.1f}x") for what, a, b in rows]
    print(
        markdown_table(["quick look", "full resolution (no levels)", "2x level", "speed-up"], table)
    )
    print()
    share = 100 * outcome.level_bytes / outcome.case_bytes
    print(
        f"`ctspine-zarr pyramid` on this case: {fmt_seconds(seconds)} (median of "
        f"{args.repeats}, one worker); the levels add {fmt_bytes(outcome.level_bytes)} to "
        f"the case's {fmt_bytes(outcome.case_bytes)} of image and label ({share:.1f}%)."
    )
    print()
    for line in machine_lines(machine_info()):
        print(line)
    print(NOISE_NOTE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
