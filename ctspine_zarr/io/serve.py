"""Publish a local store read-only over HTTP, honouring Range requests.

Real deployments put the store behind any static server or object store; this one lets a
notebook or a test read a store through ``http://`` URLs on 127.0.0.1 and count requests.
:func:`serve_in_thread` runs any such server in a thread for the length of a block (the S3
server of :mod:`ctspine_zarr.testing.s3` too). :mod:`ctspine_zarr.testing.serve` re-exports it
for the tests.
"""

from __future__ import annotations

import os
import re
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["HTTPServer", "serve_directory", "serve_in_thread"]

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass
class HTTPServer:
    """A running server: its base ``url`` and the ``requests`` it answered (method, path, range)."""

    url: str
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)


class _RangeHandler(SimpleHTTPRequestHandler):
    """SimpleHTTPRequestHandler plus single-range ``Range: bytes=a-b | a- | -n`` support."""

    record: list[tuple[str, str, str | None]]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        """Stay quiet (the requests are recorded instead)."""

    def send_head(self) -> Any:
        """Answer GET/HEAD, with 206 Partial Content for a satisfiable Range."""
        self.record.append((self.command, self.path, self.headers.get("Range")))
        header = self.headers.get("Range")
        path = self.translate_path(self.path)
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
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{size}")
        self.send_header("Content-Length", str(stop - start))
        self.send_header("Accept-Ranges", "bytes")
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
    handler = type("Handler", (_RangeHandler,), {"record": record})
    server = _Server((host, port), partial(handler, directory=os.fspath(directory)))
    server.daemon_threads = True
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
