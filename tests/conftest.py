"""Shared fixtures: a generated raw tree, its store, and the real split file."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import zarr.storage
from zarr.storage import WrapperStore

import ctspine_zarr
from ctspine_zarr.io.layout import official_split_file
from ctspine_zarr.testing.s3 import serve_s3
from ctspine_zarr.testing.synthetic import SyntheticCase, make_raw_tree


@pytest.fixture(scope="session")
def raw_tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[SyntheticCase]]:
    """Six small generated cases covering every header variant, with a split file."""
    root = tmp_path_factory.mktemp("raw")
    cases = make_raw_tree(root, n_cases=6, shape=(40, 48), n_slices=(20, 44), seed=7)
    return root, cases


@pytest.fixture(scope="session")
def store(raw_tree: tuple[Path, list[SyntheticCase]], tmp_path_factory: pytest.TempPathFactory):
    """The store ingested from ``raw_tree`` (threads, 2 workers)."""
    path = tmp_path_factory.mktemp("store") / "ctspine1k.zarr"
    report = ctspine_zarr.ingest(raw_tree[0], path, workers=2, scheduler="threads", progress=False)
    assert report.ok, report.summary()
    return path


#: The tile of :func:`tiled_store`.
STORE_TILE = 32


@pytest.fixture(scope="session")
def tiled_store(
    raw_tree: tuple[Path, list[SyntheticCase]], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """``raw_tree`` ingested in tiles of 32 x 32 (``--tile 32``).

    Its 40 x 48 planes hold 2 x 2 tiles, the last row and column partial, as ``--tile 128``
    lays out 512 x 512 slices.
    """
    path = tmp_path_factory.mktemp("tiled") / "ctspine1k.zarr"
    report = ctspine_zarr.ingest(
        raw_tree[0], path, workers=2, scheduler="threads", progress=False, tile=STORE_TILE
    )
    assert report.ok, report.summary()
    return path


#: The defects of :func:`defect_tree`: order defects in an LPS, a descending-z and two
#: sagittally stored cases, then one of each kind wherever the tree can take it.
DEFECTS = [("order", 1), ("order", 2), ("order", 5), ("order", 14), "all"]


@pytest.fixture(scope="session")
def defect_tree(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, Path, list[SyntheticCase]]:
    """30 cases (every header variant, enough whole vertebrae per level for the audit's
    ``size``), nine with an injected label defect: the raw tree, its store, the cases."""
    base = tmp_path_factory.mktemp("defects")
    cases = make_raw_tree(
        base / "raw", n_cases=30, shape=(64, 64), n_slices=(40, 80), seed=5, defects=DEFECTS
    )
    report = ctspine_zarr.ingest(base / "raw", base / "s.zarr", workers=2, progress=False)
    assert report.ok, report.summary()
    return base / "raw", base / "s.zarr", cases


@pytest.fixture(scope="session")
def shared_split_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real CTSpine1K ``data_split.txt``, as the package ships it, in a file."""
    path = tmp_path_factory.mktemp("split") / "data_split.txt"
    path.write_bytes(official_split_file())
    return path


class CountingStore(WrapperStore):
    """A store wrapper that records every read: ``(key, byte_range, bytes returned)``."""

    def __init__(self, store: zarr.storage.StoreLike) -> None:
        super().__init__(store)
        self.reads: list[tuple[str, object, int | None]] = []

    async def get(self, key, prototype, byte_range=None):  # type: ignore[no-untyped-def]
        result = await self._store.get(key, prototype, byte_range)
        self.reads.append((key, byte_range, None if result is None else len(result)))
        return result

    async def get_partial_values(self, prototype, key_ranges):  # type: ignore[no-untyped-def]
        key_ranges = list(key_ranges)
        results = await self._store.get_partial_values(prototype, key_ranges)
        for (key, byte_range), result in zip(key_ranges, results, strict=True):
            self.reads.append((key, byte_range, None if result is None else len(result)))
        return results


@pytest.fixture
def counting_store(store: Path) -> Iterator[CountingStore]:
    """The session store, read-only, wrapped to count reads."""
    wrapped = CountingStore(zarr.storage.LocalStore(store, read_only=True))
    yield wrapped
    ctspine_zarr.io.store.forget(wrapped)


@pytest.fixture
def counting_tiled_store(tiled_store: Path) -> Iterator[CountingStore]:
    """:func:`tiled_store`, read-only, wrapped to count reads."""
    wrapped = CountingStore(zarr.storage.LocalStore(tiled_store, read_only=True))
    yield wrapped
    ctspine_zarr.io.store.forget(wrapped)


class _RequestLog:
    """WSGI middleware that records every request: (method, path, Range header)."""

    def __init__(self, app) -> None:  # type: ignore[no-untyped-def]
        import threading

        self.app = app
        self.requests: list[tuple[str, str, str | None]] = []
        self.delay = 0.0  # seconds added to each GET, to make overlapping requests visible
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):  # type: ignore[no-untyped-def]
        import time

        method = environ["REQUEST_METHOD"]
        self.requests.append((method, environ.get("PATH_INFO", ""), environ.get("HTTP_RANGE")))
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay and method == "GET":
                time.sleep(self.delay)
            return self.app(environ, start_response)
        finally:
            with self._lock:
                self.in_flight -= 1


@pytest.fixture(scope="session")
def s3_server() -> Iterator[tuple[str, _RequestLog]]:
    """A real S3-compatible server (moto in server mode) on 127.0.0.1 and a free port."""
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with serve_s3(_RequestLog) as (endpoint, log):
        yield endpoint, log


@pytest.fixture
def s3(s3_server: tuple[str, _RequestLog], request: pytest.FixtureRequest):
    """A fresh bucket on the S3 server: ``(bucket url, storage options, request log)``."""
    import s3fs

    endpoint, log = s3_server
    options = {
        "endpoint_url": endpoint,
        "key": "testing",
        "secret": "testing",
    }
    bucket = "b" + str(abs(hash(request.node.nodeid)) % 10**10)
    fs = s3fs.S3FileSystem(**options)
    fs.mkdir(bucket)
    yield f"s3://{bucket}", options, log
    fs.rm(bucket, recursive=True)
