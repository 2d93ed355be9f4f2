"""Benchmark the shard size (slices per shard) of a ctspine store on S3-compatible storage.

One run generates a synthetic CTSpine1K-like raw tree (512x512 in-plane; 3 cases of 100-160
slices, ``--quick`` 2 cases of 60-80), starts moto's S3 server in this process on 127.0.0.1
(a free port; loopback only), and ingests the same tree into one bucket prefix per layout:

* ``none``: truly unsharded arrays (one object per slice, no shard index). The package does
  not expose ``shards=None``; this benchmark gets it by patching ``zarr.Group.create_array``
  for that one ingest (threads scheduler, same process) to drop ``shards`` when it equals
  ``chunks``;
* ``1``, ``8``, ``32``, ``64``: ``slices_per_shard`` of :func:`ctspine_zarr.ingest`
  (``1`` is still a sharding codec, with a one-chunk shard and its index).

For each store it measures, with the requests counted by a WSGI middleware on the server:

1. objects per case and bytes (listing the bucket), ingest time and requests;
2. random slice-pair latency (image + label of a random ``(case, z)``), p50/p95, through
   ``ds.ctspine.slice(case, z).compute()`` and through the zarr arrays directly, case
   metadata warmed first (a reader opens a case once);
3. whole-volume read throughput (MB/s of decoded image + label voxels): slice by slice in a
   Python loop, ``array[:]`` (zarr issues the requests concurrently) and ``vol.image.values``
   (dask, one task per shard).

Loopback moto has no network latency and shares the process (and the GIL) with the reader;
real S3 adds ~10-50 ms per request. The "modelled" columns add 20 ms per serial round trip
(see ``docs/sharding.md``). Run from the repository root::

    python -m benchmarks.object_storage [--quick] [--json OUT] [--markdown OUT]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import zarr

import ctspine_zarr
from benchmarks.common import (
    NOISE_NOTE,
    fmt_bytes,
    fmt_ratio,
    fmt_seconds,
    git_state,
    machine_info,
    machine_lines,
    markdown_table,
    ratio,
    summarize,
    write_json,
)
from ctspine_zarr.io.store import forget, to_store
from ctspine_zarr.testing.s3 import serve_s3
from ctspine_zarr.testing.synthetic import make_raw_tree

#: Layouts measured: ``None`` is truly unsharded, an int is ``slices_per_shard``.
LAYOUTS: tuple[int | None, ...] = (None, 1, 8, 32, 64)
BASELINE: int | None = 1
RTT = 0.020  # modelled per-request round trip of real S3, seconds
CONCURRENCY = int(zarr.config.get("async.concurrency") or 10)
#: CTSpine1K for the object-count extrapolation.
CTSPINE_CASES = 1005
CTSPINE_SLICES = 500


def layout_name(layout: int | None) -> str:
    return "none" if layout is None else str(layout)


# --------------------------------------------------------------------------------------------
# The S3 server (moto, in-process, loopback) and its request log
# --------------------------------------------------------------------------------------------


class RequestLog:
    """WSGI middleware that records every request: (method, path, Range header)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.requests: list[tuple[str, str, str | None]] = []
        self._lock = threading.Lock()

    def __call__(self, environ: Any, start_response: Any) -> Any:
        with self._lock:
            self.requests.append(
                (
                    environ["REQUEST_METHOD"],
                    environ.get("PATH_INFO", ""),
                    environ.get("HTTP_RANGE"),
                )
            )
        return self.app(environ, start_response)

    def mark(self) -> int:
        with self._lock:
            return len(self.requests)

    def since(self, mark: int) -> list[tuple[str, str, str | None]]:
        with self._lock:
            return self.requests[mark:]


@contextlib.contextmanager
def unsharded_arrays() -> Iterator[None]:
    """Make ``Group.create_array(..., shards=S)`` write unsharded arrays when ``S == chunks``."""
    original = zarr.Group.create_array

    def create_array(self: zarr.Group, name: str, **kwargs: Any) -> Any:
        if kwargs.get("shards") is not None and kwargs.get("shards") == kwargs.get("chunks"):
            kwargs["shards"] = None
        return original(self, name, **kwargs)

    zarr.Group.create_array = create_array  # type: ignore[method-assign]
    try:
        yield
    finally:
        zarr.Group.create_array = original  # type: ignore[method-assign]


# --------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------


def counted(log: RequestLog, fn: Callable[[], Any]) -> tuple[float, int, Any]:
    """Return ``(seconds, requests, result)`` of one call."""
    mark = log.mark()
    start = time.perf_counter()
    result = fn()
    elapsed = time.perf_counter() - start
    return elapsed, len(log.since(mark)), result


def heads_since(log: RequestLog, mark: int) -> int:
    """Number of HEAD requests since ``mark`` (s3fs sends one before each whole-object GET)."""
    return sum(method == "HEAD" for method, _, _ in log.since(mark))


def list_objects(fs: Any, prefix: str) -> dict[str, int]:
    fs.invalidate_cache()
    return {path: int(info["size"]) for path, info in fs.find(prefix, detail=True).items()}


def measure_layout(
    layout: int | None,
    raw: Path,
    url: str,
    options: dict[str, Any],
    log: RequestLog,
    fs: Any,
    *,
    n_pairs: int,
    seed: int,
) -> dict[str, Any]:
    """Ingest ``raw`` into ``url`` with ``layout`` and measure it."""
    spp = 1 if layout is None else layout
    patch = unsharded_arrays() if layout is None else contextlib.nullcontext()
    with patch:
        ingest_s, ingest_req, report = counted(
            log,
            lambda: ctspine_zarr.ingest(
                raw,
                url,
                workers=2,
                scheduler="threads",
                storage_options=options,
                slices_per_shard=spp,
                progress=False,
            ),
        )
    assert report.ok, report.summary()
    forget(url)

    # objects and bytes
    prefix = url.removeprefix("s3://")
    objects = list_objects(fs, prefix)
    objects = {k: v for k, v in objects.items() if not k.endswith(".ingest-report.json")}
    ds = ctspine_zarr.open(url, storage_options=options)
    cases = [str(c) for c in ds.case.values]
    n_slices = {c: int(n) for c, n in zip(cases, ds.n_slices.values, strict=True)}
    data_objects = {k: v for k, v in objects.items() if "/image/c" in k or "/label/c" in k}
    meta_objects = len(objects) - len(data_objects)
    root_objects = sum(1 for k in objects if "/cases/" not in k)
    meta_per_case = (meta_objects - root_objects) / len(cases)

    # case metadata warmed: one accessor slice and one zarr open per case, not timed
    store = to_store(url, storage_options=options)
    groups = {c: zarr.open_group(store, path=f"cases/{c}", mode="r") for c in cases}
    arrays = {c: (groups[c]["image"], groups[c]["label"]) for c in cases}
    shards = arrays[cases[0]][0].shards
    for c in cases:
        ds.ctspine.slice(c, 0).compute()
        arrays[c][0][0]
        arrays[c][1][0]

    rng = random.Random(seed)
    pairs = [(c, rng.randrange(n_slices[c])) for c in (rng.choice(cases) for _ in range(n_pairs))]
    acc_t, acc_r, zarr_t, zarr_r = [], [], [], []
    pairs_mark = log.mark()
    for case, z in pairs:  # interleaved: the two readers see the same load
        t, r, _ = counted(log, lambda case=case, z=z: ds.ctspine.slice(case, z).compute())
        acc_t.append(t)
        acc_r.append(r)
        image, label = arrays[case]
        t, r, _ = counted(log, lambda image=image, label=label, z=z: (image[z], label[z]))
        zarr_t.append(t)
        zarr_r.append(r)
    pair_heads = heads_since(log, pairs_mark) / (2 * len(pairs))

    # whole volumes, image + label, every case
    volume: dict[str, dict[str, float]] = {}
    total_bytes = 0
    readers: dict[str, Callable[[str], Any]] = {
        "loop": lambda c: [(arrays[c][0][z], arrays[c][1][z]) for z in range(n_slices[c])],
        "zarr[:]": lambda c: (arrays[c][0][:], arrays[c][1][:]),
        "dask": lambda c: (
            ds.ctspine.volume(c).image.values,
            ds.ctspine.volume(c).label.values,
        ),
    }
    for c in cases:
        image, label = arrays[c]
        total_bytes += image.nbytes + label.nbytes
    for name, read in readers.items():
        seconds = requests = 0.0
        mark = log.mark()
        for c in cases:
            t, r, _ = counted(log, lambda c=c, read=read: read(c))
            seconds += t
            requests += r
        volume[name] = {"seconds": seconds, "requests": requests, "heads": heads_since(log, mark)}
    for c in cases:  # check once that the readers agree with the source
        full = arrays[c][0][:]
        assert np.array_equal(full, ds.ctspine.volume(c).image.values)

    return {
        "layout": layout_name(layout),
        "slices_per_shard": layout,
        "shards": list(shards) if shards is not None else None,
        "cases": len(cases),
        "slices": sum(n_slices.values()),
        "objects": len(objects),
        "data_objects": len(data_objects),
        "meta_objects_per_case": meta_per_case,
        "root_objects": root_objects,
        "bytes": sum(objects.values()),
        "data_bytes": sum(data_objects.values()),
        "ingest_seconds": ingest_s,
        "ingest_requests": ingest_req,
        "accessor": {**summarize(acc_t).to_json(), "requests": float(np.mean(acc_r))},
        "zarr": {**summarize(zarr_t).to_json(), "requests": float(np.mean(zarr_r))},
        "heads_per_pair": pair_heads,
        "volume_bytes": total_bytes,
        "volume": volume,
    }


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


def ctspine_objects(r: dict[str, Any]) -> int:
    """Objects of the whole CTSpine1K (1,005 cases x ~500 slices) in this layout."""
    per_shard = r["slices_per_shard"] or 1
    data = 2 * math.ceil(CTSPINE_SLICES / per_shard)
    return round(CTSPINE_CASES * (data + r["meta_objects_per_case"]) + r["root_objects"])


def tables(results: list[dict[str, Any]]) -> str:
    base = next(r for r in results if r["slices_per_shard"] == BASELINE)
    out = []

    rows = []
    for r in results:
        rows.append(
            [
                r["layout"],
                f"{r['objects'] / r['cases']:.1f}",
                f"{r['data_objects'] / r['cases']:.1f}",
                fmt_bytes(r["bytes"]),
                f"{ctspine_objects(r):,}",
                fmt_seconds(r["ingest_seconds"]),
                str(r["ingest_requests"]),
                fmt_ratio(ratio(r["ingest_seconds"], base["ingest_seconds"])),
            ]
        )
    out.append("### Objects, bytes, ingest\n")
    out.append(
        markdown_table(
            [
                "slices/shard",
                "objects/case",
                "data objects/case",
                "bucket bytes",
                "CTSpine1K objects",
                "ingest",
                "ingest requests",
                "ingest vs 1",
            ],
            rows,
        )
    )

    rows = []
    for r in results:
        row = [r["layout"]]
        for reader in ("accessor", "zarr"):
            s, b = r[reader], base[reader]
            modelled = s["p50"] + s["requests"] * RTT
            base_modelled = b["p50"] + b["requests"] * RTT
            row += [
                fmt_seconds(s["p50"]),
                fmt_seconds(s["p95"]),
                fmt_ratio(ratio(s["p50"], b["p50"])),
                f"{s['requests']:.1f} ({r['heads_per_pair']:.1f} HEAD)",
                fmt_seconds(modelled),
                fmt_ratio(ratio(modelled, base_modelled)),
            ]
        rows.append(row)
    n = results[0]["accessor"]["n"]
    out.append(f"\n### Random slice pair (image + label), {n} pairs\n")
    out.append(
        markdown_table(
            [
                "slices/shard",
                "ctspine p50",
                "ctspine p95",
                "p50 vs 1",
                "req/pair",
                "modelled",
                "mod. vs 1",
                "zarr p50",
                "zarr p95",
                "p50 vs 1",
                "req/pair",
                "modelled",
                "mod. vs 1",
            ],
            rows,
        )
    )

    rows = []
    for r in results:
        row = [r["layout"]]
        mb = r["volume_bytes"] / 1e6
        for name in ("loop", "zarr[:]", "dask"):
            v, b = r["volume"][name], base["volume"][name]
            # serial loop: every request is a round trip; concurrent: CONCURRENCY at a time
            serial = name == "loop"
            trips = v["requests"] if serial else v["requests"] / CONCURRENCY
            base_trips = b["requests"] if serial else b["requests"] / CONCURRENCY
            mbps = mb / v["seconds"]
            modelled = mb / (v["seconds"] + trips * RTT)
            base_modelled = mb / (b["seconds"] + base_trips * RTT)
            row += [
                f"{mbps:.0f}",
                fmt_ratio(ratio(mbps, mb / b["seconds"])),
                f"{v['requests'] / r['cases']:.0f} ({v['heads'] / r['cases']:.0f} HEAD)",
                f"{modelled:.1f}",
                fmt_ratio(ratio(modelled, base_modelled)),
            ]
        rows.append(row)
    mb_case = results[0]["volume_bytes"] / 1e6 / results[0]["cases"]
    out.append(
        f"\n### Whole volume (image + label, {mb_case:.0f} MB decoded per case on average), MB/s\n"
    )
    out.append(
        markdown_table(
            [
                "slices/shard",
                "loop MB/s",
                "vs 1",
                "req/case",
                "modelled",
                "mod. vs 1",
                "zarr[:] MB/s",
                "vs 1",
                "req/case",
                "modelled",
                "mod. vs 1",
                "dask MB/s",
                "vs 1",
                "req/case",
                "modelled",
                "mod. vs 1",
            ],
            rows,
        )
    )
    return "\n".join(out)


def recommendation(results: list[dict[str, Any]]) -> str:
    """A short, number-backed recommendation for the default shard size."""
    by = {r["slices_per_shard"]: r for r in results}
    lines = []
    if 32 in by and BASELINE in by:
        r32, r1 = by[32], by[BASELINE]
        lines.append(
            f"- 32 slices/shard stores {ctspine_objects(r32):,} objects for CTSpine1K against "
            f"{ctspine_objects(r1):,} at 1 slice/shard "
            f"({ctspine_objects(r1) / ctspine_objects(r32):.0f}x fewer)."
        )
        lines.append(
            f"- A random slice pair costs {r32['zarr']['requests']:.1f} requests at 32 "
            f"(shard index + chunk per array) against {r1['zarr']['requests']:.1f} at 1"
            + (f" and {by[None]['zarr']['requests']:.1f} unsharded" if None in by else "")
            + "."
        )
        seq32 = r32["volume"]["dask"]
        seq1 = r1["volume"]["dask"]
        lines.append(
            f"- Whole volume through dask: {seq32['requests'] / r32['cases']:.0f} requests/case "
            f"at 32 against {seq1['requests'] / r1['cases']:.0f} at 1."
        )
    if 64 in by and 32 in by:
        lines.append(
            f"- 64 halves the data objects again ({by[64]['data_objects'] / by[64]['cases']:.1f}"
            f" vs {by[32]['data_objects'] / by[32]['cases']:.1f} per case); slice reads cost "
            f"the same requests ({by[64]['zarr']['requests']:.1f} vs "
            f"{by[32]['zarr']['requests']:.1f})."
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 small cases, fewer reads")
    parser.add_argument("--json", type=Path, help="write the results as JSON")
    parser.add_argument("--markdown", type=Path, help="write the tables as markdown")
    parser.add_argument("--pairs", type=int, help="random slice pairs per layout")
    args = parser.parse_args(argv)

    os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    import logging

    import s3fs

    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    n_cases, n_slices = (2, (60, 80)) if args.quick else (3, (100, 160))
    n_pairs = args.pairs or (30 if args.quick else 100)
    info = machine_info((*tuple(machine_info()["versions"]), "s3fs", "moto"))
    started = time.perf_counter()
    results = []
    with (
        tempfile.TemporaryDirectory(prefix="ctspine-s3-bench-") as tmp,
        serve_s3(RequestLog) as (endpoint, log),
    ):
        raw = Path(tmp) / "raw"
        make_raw_tree(raw, n_cases=n_cases, shape=(512, 512), n_slices=n_slices, seed=0)
        options = {"endpoint_url": endpoint, "key": "testing", "secret": "testing"}
        fs = s3fs.S3FileSystem(**options)
        fs.mkdir("bench")
        for i, layout in enumerate(LAYOUTS):
            url = f"s3://bench/spp-{layout_name(layout)}/ctspine1k.zarr"
            print(f"layout {layout_name(layout)} ...", file=sys.stderr, flush=True)
            results.append(
                measure_layout(layout, raw, url, options, log, fs, n_pairs=n_pairs, seed=100 + i)
            )
            forget(url)
        fs.rm("bench", recursive=True)

    text = tables(results)
    rec = recommendation(results)
    header = [
        *machine_lines(info),
        f"S3: moto {info['versions'].get('moto')} in-process on 127.0.0.1 (loopback, threaded "
        "werkzeug; shares the GIL with the reader); "
        f"{n_cases} cases, 512x512, {n_slices[0]}-{n_slices[1]} slices; "
        f"modelled = measured + {RTT * 1e3:.0f} ms per serial round trip "
        f"(concurrent reads: requests / {CONCURRENCY}, zarr's async.concurrency)",
        NOISE_NOTE,
    ]
    print("\n".join(header))
    print()
    print(text)
    print("\n### Recommendation\n")
    print(rec)
    print(f"\n(total {time.perf_counter() - started:.0f} s)")
    if args.markdown:
        args.markdown.write_text("\n".join(header) + "\n\n" + text + "\n\n" + rec + "\n")
    if args.json:
        write_json(
            args.json,
            {"machine": info, "git": git_state(), "results": results, "quick": args.quick},
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
