"""The Range-honouring HTTP server, where the tests and notebooks import it from.

It lives in :mod:`ctspine_zarr.io.serve` (``ctspine-zarr serve`` uses it too).
"""

from __future__ import annotations

from ..io.serve import HTTPServer, serve_directory, serve_in_thread

__all__ = ["HTTPServer", "serve_directory", "serve_in_thread"]
