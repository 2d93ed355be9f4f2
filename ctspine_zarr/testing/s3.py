"""An S3-compatible server on 127.0.0.1 for tests and benchmarks: moto in server mode.

:func:`serve_s3` runs moto's S3 backend behind werkzeug in a thread of this process on a
free loopback port, wrapped by a WSGI middleware (to log or delay requests), and stops it
when the block ends. moto is only in the ``test`` extra; it is imported when the
server starts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from ..io.serve import serve_in_thread

__all__ = ["serve_s3"]

_App = TypeVar("_App", bound=Callable[..., Any])  # a WSGI application


@contextmanager
def serve_s3(middleware: Callable[[Any], _App]) -> Iterator[tuple[str, _App]]:
    """Run moto's S3 server in a thread on 127.0.0.1 and a free port until the block ends.

    Parameters
    ----------
    middleware
        Called with moto's WSGI application; what it returns is served (pass
        ``lambda app: app`` to serve moto as it is).

    Yields
    ------
    tuple of (str, object)
        The endpoint URL (``http://127.0.0.1:PORT``) and the served application.
    """
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    app = middleware(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    with serve_in_thread(server):
        yield f"http://127.0.0.1:{server.server_port}", app
