"""Command lines that run ``ctspine-zarr`` in a child Python, for the tests that need a process.

pytest puts this folder on ``sys.path`` (the tests are not a package), so tests import it as
``from clirun import ingest_command``.
"""

from __future__ import annotations

import json
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


def _environment(env: Mapping[str, str] | None) -> dict[str, str]:
    """This process's environment with ``env`` on top (``""`` removes a variable)."""
    environment = dict(os.environ)
    for name, value in (env or {}).items():
        if value == "":
            environment.pop(name, None)
        else:
            environment[name] = value
    return environment


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
    return subprocess.run(
        [sys.executable, "-m", "ctspine_zarr.cli", *map(os.fspath, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=_environment(env),
        cwd=cwd,
    )


#: Runs several ``ctspine-zarr`` command lines in one child Python, one after another:
#: argv lists as JSON in, ``[exit code, stdout, stderr]`` per command as JSON out.
_EACH = """
import contextlib, io, json, sys
from ctspine_zarr.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as stopped:  # argparse's usage errors
            code = stopped.code if isinstance(stopped.code, int) else int(stopped.code is not None)
    results.append([code, out.getvalue(), err.getvalue()])
sys.stdout.write(json.dumps(results))
"""


def cli_each(
    *commands: Sequence[str | os.PathLike[str]],
    env: Mapping[str, str] | None = None,
    timeout: float = CHILD_TIMEOUT,
) -> list[subprocess.CompletedProcess[str]]:
    """Run several ``ctspine-zarr`` command lines in one child Python (``main(argv)`` each).

    For commands that are refused before they do anything (bad values, wrong paths) or only
    read: one interpreter start (~1.8 s) instead of one per command, each still the real
    ``main`` in a child process, in the order given; ``env`` as for :func:`cli`. Returns
    what :func:`cli` would, per command.
    """
    argvs = [[os.fspath(a) for a in command] for command in commands]
    done = subprocess.run(
        [sys.executable, "-c", _EACH, json.dumps(argvs)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=_environment(env),
    )
    assert done.returncode == 0 and not done.stderr, (done.returncode, done.stderr)
    return [
        subprocess.CompletedProcess(["ctspine-zarr", *argv], code, out, err)
        for argv, (code, out, err) in zip(argvs, json.loads(done.stdout), strict=True)
    ]


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
