"""Command lines that run ``ctspine-zarr`` in a child Python, for the tests that need a process.

pytest puts this folder on ``sys.path`` (the tests are not a package), so tests import it as
``from clirun import ingest_command``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence

#: Every child gets at most this long: a command that hangs fails its test instead.
CHILD_TIMEOUT = 180.0


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


def cli(
    *args: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    timeout: float = CHILD_TIMEOUT,
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m ctspine_zarr.cli ARGS`` as a user would; capture stdout and stderr.

    Parameters
    ----------
    args
        The command line after ``ctspine-zarr``.
    env
        Variables to set (``""`` removes one) on top of this process's environment.
    timeout
        Seconds before the child counts as hung (``subprocess.TimeoutExpired``).
    cwd
        The child's working folder.
    """
    environment = dict(os.environ)
    for name, value in (env or {}).items():
        if value == "":
            environment.pop(name, None)
        else:
            environment[name] = value
    return subprocess.run(
        [sys.executable, "-m", "ctspine_zarr.cli", *map(os.fspath, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=environment,
        cwd=cwd,
    )


def error_lines(done: subprocess.CompletedProcess[str], command: str, code: int = 2) -> list[str]:
    """The stderr lines of a command that failed as the CLI promises, else AssertionError.

    Exit ``code``, no traceback, one line (two with a hint) starting ``ctspine-zarr COMMAND:``.
    """
    lines = done.stderr.strip().splitlines()
    assert done.returncode == code, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    assert 1 <= len(lines) <= 2, lines
    assert lines[0].startswith(f"ctspine-zarr {command}: "), lines
    return lines
