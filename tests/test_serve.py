"""HTTP serving: servers that ignore Range requests get one clear error; ``ctspine-zarr serve``
answers ranges and the CORS headers browser viewers need."""

from __future__ import annotations

import queue
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
from zarr.abc.store import RangeByteRequest, SuffixByteRequest
from zarr.buffer import default_buffer_prototype

import ctspine_zarr
from ctspine_zarr.cli import main
from ctspine_zarr.compat import sync
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


def test_without_fsspec_s_http_internals_the_length_check_refuses_the_whole_file(
    no_range_url: str, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ctspine_zarr.io import remote

    checked: list[bool] = []
    monkeypatch.setattr(remote, "http_internals", lambda fs: checked.append(True) and False)
    local = ctspine_zarr.open(store)
    case = local.ctspine.case_ids()[0]
    ds = ctspine_zarr.open(no_range_url)
    with pytest.raises(RangeNotSupportedError) as err:
        ds.ctspine.slice(case, 3)
    _check(err, no_range_url)
    assert checked  # the fallback ran
    # and what a range-honouring answer gives still passes it: the whole catalogue
    np.testing.assert_array_equal(ds.case.values, local.case.values)


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


# ctspine-zarr serve


@dataclass
class _Served:
    """A ``ctspine-zarr serve`` child: its URL, its first lines; after the block, its end."""

    url: str
    lines: list[str]
    returncode: int | None = None
    stderr: str = ""


#: ``ctspine-zarr ARGS`` with Ctrl-C raising KeyboardInterrupt, as in a terminal: a shell
#: without job control (a CI script) starts background commands with SIGINT ignored, and a
#: child inherits that.
_AS_IN_A_TERMINAL = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from ctspine_zarr.cli import main; sys.exit(main(sys.argv[1:]))"
)


@contextmanager
def _serving(store: Path, stderr: Path) -> Iterator[_Served]:
    """Run ``ctspine-zarr serve STORE --port 0`` for the block, then stop it with Ctrl-C."""
    command = [sys.executable, "-c", _AS_IN_A_TERMINAL, "serve", str(store), "--port", "0"]
    with open(stderr, "w+") as err:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, text=True)
        assert child.stdout is not None
        out = child.stdout
        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(target=lambda: [lines.put(x) for x in out], daemon=True)
        reader.start()
        first: list[str] = []
        try:
            while len(first) < 3:
                first.append(lines.get(timeout=60).rstrip("\n"))
        except queue.Empty:
            pass
        served = _Served(url="", lines=first)
        try:
            assert first and " at http://" in first[0], (command, first)
            served.url = first[0].split(" at ", 1)[1].split(" ", 1)[0]
            yield served
        finally:
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
            try:
                served.returncode = child.wait(timeout=60)
            finally:
                if child.poll() is None:
                    child.kill()
                    child.wait()
                reader.join()
                out.close()
            err.seek(0)
            served.stderr = err.read()


def _get(url: str, method: str = "GET", **headers: str) -> tuple[int, Any, bytes]:
    request = urllib.request.Request(url, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.status, answer.headers, answer.read()


def test_serve_answers_ranges_and_cors_and_stops_on_ctrl_c(store: Path, tmp_path: Path) -> None:
    local = ctspine_zarr.open(store)
    case = local.ctspine.case_ids()[0]
    with _serving(store, tmp_path / "stderr.txt") as served:
        url = served.url
        assert url.startswith("http://127.0.0.1:") and url.endswith("/")
        assert served.lines[2].endswith(f"zarr3://{url}cases/{case}/image/"), served.lines
        status, headers, body = _get(url + "zarr.json")
        assert status == 200 and body == (store / "zarr.json").read_bytes()
        assert headers["Access-Control-Allow-Origin"] == "*"
        exposed = {h.strip().lower() for h in headers["Access-Control-Expose-Headers"].split(",")}
        assert {"content-range", "content-length", "content-encoding", "etag"} <= exposed
        assert headers["ETag"] and headers["Accept-Ranges"] == "bytes"

        shard = store / "cases" / case / "image" / "c" / "0" / "0" / "0"
        whole = shard.read_bytes()
        status, headers, body = _get(f"{url}cases/{case}/image/c/0/0/0", Range="bytes=-40")
        assert status == 206 and body == whole[-40:]
        assert headers["Content-Range"] == f"bytes {len(whole) - 40}-{len(whole) - 1}/{len(whole)}"
        assert headers["Access-Control-Allow-Origin"] == "*"
        status, _, body = _get(f"{url}cases/{case}/image/c/0/0/0", Range="bytes=10-19")
        assert status == 206 and body == whole[10:20]
        # neuroglancer learns a shard's size with HEAD before reading its index
        status, headers, body = _get(f"{url}cases/{case}/image/c/0/0/0", method="HEAD")
        assert status == 200 and body == b"" and int(headers["Content-Length"]) == len(whole)
        assert headers["Access-Control-Allow-Origin"] == "*"

        status, headers, body = _get(
            url + "zarr.json",
            method="OPTIONS",
            Origin="http://localhost:8080",
            **{
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "range,x-viewer",
                "Access-Control-Request-Private-Network": "true",
            },
        )
        assert status == 204 and body == b""
        assert headers["Access-Control-Allow-Origin"] == "*"
        allowed = {h.strip().lower() for h in headers["Access-Control-Allow-Headers"].split(",")}
        assert {"range", "x-viewer"} <= allowed
        assert "GET" in headers["Access-Control-Allow-Methods"]
        assert headers["Access-Control-Allow-Private-Network"] == "true"

        ds = ctspine_zarr.open(url)
        xr.testing.assert_equal(ds.ctspine.slice(case, 7), local.ctspine.slice(case, 7))
        ctspine_zarr.io.store.forget(url)
    assert served.returncode == 0, served.stderr
    assert "Traceback" not in served.stderr, served.stderr
    assert served.stderr.strip().endswith("stopped"), served.stderr


def test_serve_refuses_what_it_cannot_serve(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", str(tmp_path / "missing.zarr")]) == 2
    assert main(["serve", "s3://bucket/ctspine1k.zarr"]) == 2
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert main(["serve", str(store), "--port", str(taken.getsockname()[1])]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 3, errors
    assert errors[0].startswith(f"ctspine-zarr serve: error: {tmp_path / 'missing.zarr'}")
    assert "serve publishes a local store" in errors[1]
    assert "cannot listen on 127.0.0.1:" in errors[2] and "--port" in errors[2]
