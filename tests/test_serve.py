"""HTTP serving: servers that ignore Range requests get one clear error."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
from zarr.abc.store import RangeByteRequest, SuffixByteRequest
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

import ctspine_zarr
from ctspine_zarr.io.remote import RangeNotSupportedError, url_store
from ctspine_zarr.io.serve import serve_directory, serve_in_thread
from ctspine_zarr.sampling import SliceSequence


class _NoRangeHandler(SimpleHTTPRequestHandler):
    """``python -m http.server``'s handler: the Range header is ignored (200, whole file)."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        pass


class _WholeFile206Handler(_NoRangeHandler):
    """A broken server: 206 Partial Content, but the whole file as its body."""

    def send_response(self, code: int, message: str | None = None) -> None:
        partial_code = self.headers.get("Range") and code == HTTPStatus.OK
        super().send_response(HTTPStatus.PARTIAL_CONTENT if partial_code else code, message)


@contextmanager
def _serve(handler: type[SimpleHTTPRequestHandler], directory: Path) -> Iterator[str]:
    """Serve ``directory`` with ``handler`` on 127.0.0.1 for the block; yield the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(directory)))
    server.daemon_threads = True
    with serve_in_thread(server):
        yield f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture(params=[_NoRangeHandler, _WholeFile206Handler], ids=["200-whole", "206-whole"])
def no_range_url(request: pytest.FixtureRequest, store: Path) -> Iterator[str]:
    """The session store's URL on a stdlib server that ignores Range requests."""
    with _serve(request.param, store.parent) as base:
        url = f"{base}/{store.name}"
        yield url
        ctspine_zarr.io.store.forget(url)


def _check(err: pytest.ExceptionInfo[RangeNotSupportedError], url: str) -> None:
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{url}/cases/"), message
    assert "ignores Range requests" in message and "ctspine-zarr serve STORE" in message
    assert isinstance(err.value, ctspine_zarr.StoreError)


def test_a_server_ignoring_range_requests_gets_one_clear_error(
    no_range_url: str, store: Path
) -> None:
    url = no_range_url
    local = ctspine_zarr.open(store)
    case = local.ctspine.case_ids()[0]
    # the catalogue is read in whole objects: it opens, with the local values
    ds = ctspine_zarr.open(url)
    xr.testing.assert_identical(ds.load(), local.load())
    # so is a whole volume: the right values
    np.testing.assert_array_equal(
        ds.ctspine.volume(case).image.values, local.ctspine.volume(case).image.values
    )
    reads = {
        "slice": lambda: ds.ctspine.slice(case, 3),
        "lazy slice": lambda: ds.ctspine.slice(case, 3, lazy=True).compute(),
        "volume slice": lambda: ds.ctspine.volume(case).image.isel(z=4).values,
        "loader item": lambda: SliceSequence(url)[0],
        "xr.open_zarr + accessor": lambda: xr.open_zarr(url).ctspine.slice(case, 5),
    }
    for read in reads.values():
        with pytest.raises(RangeNotSupportedError) as err:
            read()
        _check(err, url)


def test_a_whole_file_is_accepted_only_where_it_is_the_range_asked(no_range_url: str) -> None:
    store = url_store(no_range_url)
    key = "zarr.json"
    data = sync(store.get(key, default_buffer_prototype())).to_bytes()
    size = len(data)

    def get(byte_range: Any) -> bytes:
        return sync(store.get(key, default_buffer_prototype(), byte_range)).to_bytes()

    assert get(RangeByteRequest(0, size)) == data
    assert get(RangeByteRequest(0, size + 100)) == data
    assert get(SuffixByteRequest(size)) == data
    assert get(SuffixByteRequest(size + 1)) == data
    for wrong in (RangeByteRequest(0, size - 1), RangeByteRequest(1, size), SuffixByteRequest(9)):
        with pytest.raises(RangeNotSupportedError, match=r"/zarr\.json: the HTTP server ignores"):
            get(wrong)


def test_the_range_check_costs_no_request(store: Path, counting_store: Any) -> None:
    case = ctspine_zarr.open(store).ctspine.case_ids()[1]
    with serve_directory(store.parent) as server:
        url = f"{server.url}/{store.name}"
        ds = ctspine_zarr.open(url)
        ds.ctspine.volume(case)
        server.requests.clear()
        over_http = ds.ctspine.slice(case, 6)
        requests = list(server.requests)
        ctspine_zarr.io.store.forget(url)
    counted = ctspine_zarr.open(counting_store)
    counted.ctspine.volume(case)
    counting_store.reads.clear()
    xr.testing.assert_equal(over_http, counted.ctspine.slice(case, 6))
    assert [m for m, _, _ in requests] == ["GET"] * len(counting_store.reads), requests
    assert sorted(r for *_, r in requests) == sorted(
        f"bytes={b.start}-{b.end - 1}" if isinstance(b, RangeByteRequest) else f"bytes=-{b.suffix}"
        for _, b, _ in counting_store.reads
    )
