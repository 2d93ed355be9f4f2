"""Command lines that run ``ctspine-zarr`` in a child Python, for the tests that need a process.

pytest puts this folder on ``sys.path`` (the tests are not a package), so tests import it as
``from clirun import ingest_command``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence


def ingest_command(
    raw: str | os.PathLike[str],
    store: str | os.PathLike[str],
    *extra: str,
    workers: int = 1,
    quiet: bool = True,
    python_flags: Sequence[str] = (),
) -> list[str]:
    """``python FLAGS -m ctspine_zarr.cli ingest RAW STORE --workers N [--quiet] EXTRA``."""
    return [
        sys.executable,
        *python_flags,
        "-m",
        "ctspine_zarr.cli",
        "ingest",
        os.fspath(raw),
        os.fspath(store),
        "--workers",
        str(workers),
        *(["--quiet"] if quiet else []),
        *extra,
    ]
