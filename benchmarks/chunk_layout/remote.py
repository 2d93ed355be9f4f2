"""Requests over S3: a moto server on 127.0.0.1 that counts every request and its bytes.

Each candidate store (default codec) is uploaded; then, for one case, the requests of a
slice (image and label) and of a patch are counted for the lean prototype over the
package's fsspec store (``ctspine_zarr.io.remote.url_store``), cold (shard indexes not yet
fetched) and warm (indexes cached), for zarr-python's default pipeline and for the zarrs
pipeline over the same store. Counts are of HTTP requests the server received, per array.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zarr

from .data import Candidate, Case
from .lean import Box, LeanArray, read_many

__all__ = ["RequestLog", "Requests", "count_requests"]

#: Ranges of one shard this close are merged into one request in the "merged" lean variant.
MERGE_GAP = 1 << 20


class RequestLog:
    """WSGI middleware that records ``(method, path, Range, bytes sent)`` of every request."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.entries: list[tuple[str, str, str | None, int]] = []
        self._lock = threading.Lock()

    def __call__(self, environ: Any, start_response: Any) -> Any:
        body = list(self.app(environ, start_response))
        with self._lock:
            self.entries.append(
                (
                    environ["REQUEST_METHOD"],
                    environ.get("PATH_INFO", ""),
                    environ.get("HTTP_RANGE"),
                    sum(len(b) for b in body),
                )
            )
        return body

    def take(self) -> list[tuple[str, str, str | None, int]]:
        """The entries since the last call, and forget them."""
        with self._lock:
            out, self.entries = self.entries, []
        return out


@dataclass
class Requests:
    """Requests (and bytes) per array of one read, per reader."""

    counts: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _per_array(entries: Sequence[tuple[str, str, str | None, int]]) -> tuple[float, float]:
    """Mean requests and bytes per array (image, label) of the data read (metadata excluded)."""
    data = [e for e in entries if not e[1].endswith("zarr.json")]
    arrays = {("image" if "/image/" in e[1] else "label") for e in data} or {"image"}
    return len(data) / len(arrays), sum(e[3] for e in data) / len(arrays)


@contextmanager
def _server() -> Iterator[tuple[dict[str, Any], RequestLog]]:
    from ctspine_zarr.testing.s3 import serve_s3

    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with serve_s3(RequestLog) as (endpoint, log):
        yield {"endpoint_url": endpoint, "key": "bench", "secret": "bench"}, log


def count_requests(
    candidates: Sequence[Candidate],
    case: Case,
    slice_z: int,
    patch: Box,
) -> Requests:
    """Count the requests of a slice pair and a patch of ``case`` on each candidate over S3.

    ``slice_z`` and ``patch`` should lie in the same shard as each other's first slice, so
    that the warm reads find their indexes cached.
    """
    import s3fs

    out = Requests()
    nz, ny, nx = case.image.shape
    slice_box: Box = ((slice_z, slice_z + 1), (0, ny), (0, nx))
    with _server() as (options, log):
        fs = s3fs.S3FileSystem(**options)
        fs.mkdir("layouts")
        for candidate in candidates:  # the root document and the counted case only
            target = f"layouts/{candidate.root.name}"
            fs.put(str(candidate.root / "zarr.json"), f"{target}/zarr.json")
            fs.put(str(candidate.root / case.case_id), f"{target}/{case.case_id}", recursive=True)
        for candidate in candidates:
            _count_one(candidate, case, options, log, slice_box, patch, out)
    return out


def _count_one(
    candidate: Candidate,
    case: Case,
    options: dict[str, Any],
    log: RequestLog,
    slice_box: Box,
    patch: Box,
    out: Requests,
) -> None:
    """Count the requests of every reader of one candidate."""
    from ctspine_zarr.io.remote import url_store

    url = f"s3://layouts/{candidate.root.name}"

    def arrays(pipeline: str | None) -> tuple[Any, Any]:
        store = url_store(url, storage_options=options)
        with zarr.config.set({"codec_pipeline.path": pipeline} if pipeline else {}):
            group = zarr.open_group(store, path=case.case_id, mode="r")
            return group["image"], group["label"]

    def record(what: str, call: Callable[[], Any]) -> None:
        log.take()
        try:
            call()
        except Exception as error:  # noqa: BLE001 - a reader that cannot read S3
            out.notes.append(f"{candidate.name}, {what}: {type(error).__name__}: {error}")
            log.take()
            return
        out.counts[(candidate.name, what)] = _per_array(log.take())

    def lean_read(readers: tuple[LeanArray, LeanArray], box: Box) -> None:
        got = read_many([(readers[0], box, None), (readers[1], box, None)])
        _check(case, box, got)

    def zarr_read(pair: tuple[Any, Any], box: Box) -> None:
        sel = tuple(slice(lo, hi) for lo, hi in box)
        _check(case, box, (pair[0][sel], pair[1][sel]))

    image, label = arrays(None)
    lean = (LeanArray(image, threads=2), LeanArray(label, threads=2))
    merged = (
        LeanArray(image, threads=2, max_gap=MERGE_GAP),
        LeanArray(label, threads=2, max_gap=MERGE_GAP),
    )
    record("slice lean cold", lambda: lean_read(lean, slice_box))
    record("slice lean warm", lambda: lean_read(lean, slice_box))
    for reader in lean:
        reader.forget_indexes()
    record("patch lean cold", lambda: lean_read(lean, patch))
    record("patch lean warm", lambda: lean_read(lean, patch))
    lean_read(merged, patch)  # fetches the indexes
    record("patch lean merged warm", lambda: lean_read(merged, patch))
    record("slice zarr", lambda: zarr_read((image, label), slice_box))
    record("patch zarr", lambda: zarr_read((image, label), patch))
    try:
        zarrs_pair = arrays("zarrs.ZarrsCodecPipeline")
    except Exception as error:  # noqa: BLE001 - zarrs not installed
        out.notes.append(f"zarrs over S3: {type(error).__name__}: {error}")
        return
    used = type(zarrs_pair[0].async_array.codec_pipeline).__name__
    if used != "ZarrsCodecPipeline":
        note = (
            f"zarrs over S3: zarr-python opened the arrays of its fsspec store with {used}, "
            "not the zarrs pipeline (zarrs reads local stores), so zarrs' S3 requests are zarr's"
        )
        if note not in out.notes:
            out.notes.append(note)
        return
    log.take()
    record("slice zarrs", lambda: zarr_read(zarrs_pair, slice_box))
    record("patch zarrs", lambda: zarr_read(zarrs_pair, patch))


def _check(case: Case, box: Box, got: Sequence[Any]) -> None:
    s = tuple(slice(lo, hi) for lo, hi in box)
    if not (np.array_equal(got[0], case.image[s]) and np.array_equal(got[1], case.label[s])):
        raise AssertionError(f"wrong values read over S3 for {case.case_id} {box}")
