"""Publish a local store read-only over HTTP with Range and CORS support.

``ctspine-zarr serve STORE`` runs :func:`serve_store`: what ``ctspine_zarr.open`` and
browser viewers (neuroglancer's ``zarr3://`` source, vizarr) need from a static server:
single-range ``Range`` requests answered 206 with ``Content-Range``, and CORS headers on
every answer, preflight (``OPTIONS``) included. Real deployments can put the store behind
any such server or object store; this one also lets a notebook or a test read a store
through ``http://`` URLs on 127.0.0.1 and count requests (:func:`serve_directory`).
:func:`serve_in_thread` runs any such server in a thread for the length of a block (the S3
server of :mod:`ctspine_zarr.testing.s3` too).
"""

from __future__ import annotations

import os
import re
import socketserver
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "CORS_HEADERS",
    "HTTPServer",
    "make_server",
    "serve_directory",
    "serve_in_thread",
    "serve_store",
]

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")

#: The CORS headers of every answer: any origin may read, and see the headers that range
#: reads and caches need (a browser hides the others from scripts). Neuroglancer's HTTP
#: store reads ``Content-Range``, ``Content-Length`` and ``Content-Encoding``.
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": (
        "Content-Range, Content-Length, Content-Encoding, Content-Type, Accept-Ranges, "
        "ETag, Last-Modified"
    ),
}
#: What a preflight allows: the methods of a read-only server, and the request headers
#: viewers send (``Range`` for shard reads; suffix ranges are not CORS-safelisted).
_PREFLIGHT = {
    "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
    "Access-Control-Allow-Headers": "Range, If-None-Match, If-Modified-Since, Cache-Control",
    "Access-Control-Max-Age": "86400",
}


@dataclass
class HTTPServer:
    """A running server: its base ``url`` and the ``requests`` it answered (method, path, range)."""

    url: str
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)


class _RangeHandler(SimpleHTTPRequestHandler):
    """SimpleHTTPRequestHandler plus single-range ``Range: bytes=a-b | a- | -n`` and CORS."""

    record: list[tuple[str, str, str | None]]
    verbose = False
    _file_headers: dict[str, str] = {}

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        """Stay quiet unless ``verbose`` (the requests are recorded anyway)."""
        if self.verbose:
            super().log_message(format, *args)

    def end_headers(self) -> None:
        """Add the CORS headers (and a file's ``ETag``, ``Accept-Ranges``) to every answer."""
        for name, value in {**CORS_HEADERS, **self._file_headers}.items():
            self.send_header(name, value)
        self._file_headers = {}
        super().end_headers()

    def do_OPTIONS(self) -> None:  # noqa: N802 - the stdlib's naming of handlers
        """Answer a CORS preflight: 204 with the methods and request headers allowed."""
        self.record.append((self.command, self.path, self.headers.get("Range")))
        self.send_response(HTTPStatus.NO_CONTENT)
        allowed = dict(_PREFLIGHT)
        asked = self.headers.get("Access-Control-Request-Headers")
        if asked:  # allow whatever else the viewer sends too: the server is read-only
            allowed["Access-Control-Allow-Headers"] += f", {asked}"
        if self.headers.get("Access-Control-Request-Private-Network") == "true":
            # a page of a public origin reading 127.0.0.1 (Chrome's Private Network Access)
            allowed["Access-Control-Allow-Private-Network"] = "true"
        for name, value in allowed.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def send_head(self) -> Any:
        """Answer GET/HEAD, with 206 Partial Content for a satisfiable Range."""
        self.record.append((self.command, self.path, self.headers.get("Range")))
        header = self.headers.get("Range")
        path = self.translate_path(self.path)
        if os.path.isfile(path):
            stat = os.stat(path)
            self._file_headers = {
                "Accept-Ranges": "bytes",
                "ETag": f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"',
            }
        if header is None or not os.path.isfile(path):
            return super().send_head()
        match = _RANGE.match(header.strip())
        size = os.path.getsize(path)
        if match is None or match.groups() == ("", ""):
            self.send_error(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
            return None
        first, last = match.groups()
        if first == "":
            start, stop = max(0, size - int(last)), size
        else:
            start = int(first)
            stop = min(size, int(last) + 1) if last else size
        if start >= size or start >= stop:
            self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
            self.send_header("Content-Range", f"bytes */{size}")
            self.end_headers()
            return None
        handle = open(path, "rb")  # noqa: SIM115 - closed by copyfile's caller
        handle.seek(start)
        self.send_response(HTTPStatus.PARTIAL_CONTENT)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{size}")
        self.send_header("Content-Length", str(stop - start))
        self.end_headers()
        self._remaining: int | None = stop - start
        return handle

    def copyfile(self, source: Any, outputfile: Any) -> None:
        """Copy only the requested range for a 206 answer."""
        remaining = getattr(self, "_remaining", None)
        if remaining is None:
            super().copyfile(source, outputfile)
            return
        while remaining > 0:
            block = source.read(min(1 << 20, remaining))
            if not block:
                break
            outputfile.write(block)
            remaining -= len(block)
        self._remaining = None


class _Server(ThreadingHTTPServer):
    # socketserver's default backlog of 5 stalls bursts of concurrent range requests
    request_queue_size = 128


def make_server(
    directory: str | os.PathLike,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    record: list[tuple[str, str, str | None]] | None = None,
    verbose: bool = False,
) -> ThreadingHTTPServer:
    """Bind a Range- and CORS-honouring HTTP server publishing ``directory`` (not started).

    Parameters
    ----------
    directory
        Folder to publish, read-only.
    host
        Address to bind; loopback by default.
    port
        TCP port; 0 picks a free one (``server.server_address[1]`` tells which).
    record
        A list to append every request to, as ``(method, path, Range header)``.
    verbose
        Log each request to stderr, as ``python -m http.server`` does.

    Returns
    -------
    http.server.ThreadingHTTPServer
        Run it with ``serve_forever()`` (or :func:`serve_in_thread`); close it with
        ``server_close()``.
    """
    attrs = {"record": [] if record is None else record, "verbose": verbose}
    handler = type("Handler", (_RangeHandler,), attrs)
    server = _Server((host, port), partial(handler, directory=os.fspath(directory)))
    server.daemon_threads = True
    return server


def serve_store(
    store: str | os.PathLike,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    verbose: bool = False,
    announce: Callable[[str], None] | None = None,
) -> None:
    """Serve a local store over HTTP (Range, CORS) until interrupted; ``ctspine-zarr serve``.

    The store's root is the server's root: ``ctspine_zarr.open("http://HOST:PORT/")``
    opens it, and ``zarr3://http://HOST:PORT/cases/<id>/image/`` is a case's image for
    neuroglancer.

    Parameters
    ----------
    store
        Local folder of the store.
    host
        Address to bind; loopback by default (``0.0.0.0`` publishes to the network).
    port
        TCP port; 0 picks a free one.
    verbose
        Log each request to stderr.
    announce
        Called once with the server's URL (``http://HOST:PORT/``) when it listens; by
        default that URL is printed.

    Raises
    ------
    KeyboardInterrupt
        On Ctrl-C, after the server is closed.
    OSError
        When the address cannot be bound (a port in use).
    """
    server = make_server(store, host=host, port=port, verbose=verbose)
    try:
        url = f"http://{host}:{server.server_address[1]}/"
        (announce or print)(url)
        server.serve_forever()
    finally:
        server.server_close()


@contextmanager
def serve_directory(
    directory: str | os.PathLike, *, host: str = "127.0.0.1", port: int = 0
) -> Iterator[HTTPServer]:
    """Serve ``directory`` over HTTP on ``host`` until the block ends.

    Parameters
    ----------
    directory
        Folder to publish (e.g. the parent of a ``.zarr`` store).
    host
        Address to bind; loopback by default.
    port
        TCP port; 0 picks a free one.

    Yields
    ------
    HTTPServer
        ``url`` (``http://127.0.0.1:PORT``) and the list of ``requests`` answered.
    """
    record: list[tuple[str, str, str | None]] = []
    server = make_server(directory, host=host, port=port, record=record)
    with serve_in_thread(server):
        yield HTTPServer(url=f"http://{host}:{server.server_address[1]}", requests=record)


@contextmanager
def serve_in_thread(server: socketserver.BaseServer) -> Iterator[None]:
    """Run ``server`` in a daemon thread until the block ends; then stop and close it.

    Parameters
    ----------
    server
        A bound server (``socketserver`` or a subclass, e.g. werkzeug's WSGI server).

    Yields
    ------
    None
        While the server answers requests.
    """
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
