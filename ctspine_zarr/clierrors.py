"""How an error reads on the command line: one line (two with a hint) and an exit code.

``ctspine-zarr`` runs every command inside one wrapper (``cli.main``) that hands whatever
the command raised to :func:`explain`: the package's own errors keep their message, the
families of the libraries underneath (botocore and s3fs, aiohttp, ``OSError``) are named
by what the user can change (the path, the endpoint, the credentials), and Ctrl-C says what
is kept and how to resume. ``--debug`` (or ``CTSPINE_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import errno
import os
import shlex
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from .errors import CTSpineError, IngestInterrupted

__all__ = [
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_PROBLEMS",
    "Explained",
    "Remote",
    "exit_codes",
    "explain",
    "remotes_of",
]

#: The command did what it was asked.
EXIT_OK: Final = 0
#: It ran to the end, but found problems: cases refused or failed, a store with errors.
EXIT_PROBLEMS: Final = 1
#: An error stopped it (bad arguments or input, a store or server problem): one line says why.
EXIT_ERROR: Final = 2
#: Ctrl-C (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED: Final = 130

#: The commands whose Ctrl-C message says how to resume (a rerun skips the cases written;
#: ``demo`` writes its raw tree anew, so its rerun starts over).
_RESUMABLE: Final = ("ingest",)


def exit_codes(problems: str = "") -> str:
    """The exit codes of a command, for its ``--help`` epilog.

    Parameters
    ----------
    problems
        What exit code 1 means for this command (empty: the command never exits 1).
    """
    codes = [f"{EXIT_OK} done"]
    if problems:
        codes.append(f"{EXIT_PROBLEMS} {problems}")
    codes += [
        f"{EXIT_ERROR} an error stopped it (bad arguments or input, a store or server "
        "problem: one line on stderr says which; --debug shows the traceback)",
        f"{EXIT_INTERRUPTED} interrupted (Ctrl-C)",
    ]
    return "exit status: " + "; ".join(codes) + "."


@dataclass(frozen=True)
class Remote:
    """A URL the command reads or writes, with its fsspec options (to name its endpoint)."""

    url: str
    options: Mapping[str, Any] | None = None
    #: the command-line option that takes its fsspec options
    flag: str = "--storage-options"

    @property
    def is_s3(self) -> bool:
        """Whether the URL is an S3 one."""
        return self.url.lower().startswith(("s3://", "s3a://"))

    def endpoint(self) -> str:
        """The server the URL is read from: the S3 endpoint, or the URL's host."""
        if self.is_s3:
            options = dict(self.options or {})
            client = options.get("client_kwargs") or {}
            url = options.get("endpoint_url") or client.get("endpoint_url")
            url = url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
            return f"the S3 endpoint {url}" if url else "AWS S3 (no endpoint_url given)"
        scheme, _, rest = self.url.partition("://")
        return f"{scheme}://{rest.split('/', 1)[0]}"


def remotes_of(args: Any) -> list[Remote]:
    """The URLs a parsed command line names (store, raw tree), with their options."""
    found = []
    for name, options in (
        ("store", "storage_options"),
        ("raw", "raw_storage_options"),
        ("against", "raw_storage_options"),
    ):
        location = getattr(args, name, None)
        if isinstance(location, str) and "://" in location and not location.startswith("file:"):
            flag = "--" + options.replace("_", "-")
            found.append(Remote(location, getattr(args, options, None) or None, flag))
    return found


@dataclass(frozen=True)
class Explained:
    """What the command line prints for an error (one line, maybe a hint) and its exit code."""

    message: str
    code: int = EXIT_ERROR
    hint: str = ""

    def lines(self, command: str) -> list[str]:
        """The lines for stderr, the first prefixed by ``ctspine-zarr COMMAND:``."""
        kind = "" if self.code == EXIT_INTERRUPTED else "error: "
        first = f"ctspine-zarr {command}: {kind}{_one_line(self.message)}"
        return [first, _one_line(self.hint)] if self.hint else [first]


def _one_line(text: str) -> str:
    return " ".join(text.split()) if "\n" in text or "\r" in text else text


def _chain(err: BaseException) -> Iterator[BaseException]:
    """``err`` and the exceptions it was raised from (cause or context), nearest first."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _named(err: BaseException, *names: str) -> bool:
    """Whether ``err`` is an instance of a class of one of ``names`` (by name, no import)."""
    return any(cls.__name__ in names for cls in type(err).__mro__)


def _from_library(err: BaseException, package: str) -> bool:
    return type(err).__module__.split(".", 1)[0] == package


def explain(
    err: BaseException,
    *,
    command: str,
    argv: Sequence[str] = (),
    remotes: Sequence[Remote] = (),
) -> Explained:
    """Say what went wrong with ``command`` in one line (and a hint), with the exit code.

    Parameters
    ----------
    err
        What the command raised (an ``Exception`` or a ``KeyboardInterrupt``).
    command
        The subcommand (``ingest``).
    argv
        The command's arguments, for the command that resumes an interrupted ingest.
    remotes
        The URLs the command works on, to name the server of a network error.

    Returns
    -------
    Explained
    """
    if isinstance(err, KeyboardInterrupt):
        return _interrupted(err, command, argv)
    s3 = [r for r in remotes if r.is_s3] or list(remotes)
    chain = list(_chain(err))
    for found in chain:  # credentials first, even under one of the package's errors
        if _named(found, *_CREDENTIAL_ERRORS) or _denied(found):
            return _s3_error(err, found, s3)
    if isinstance(err, CTSpineError):
        return Explained(str(err), hint=str(getattr(err, "hint", "") or ""))
    for found in chain:
        if _from_library(found, "botocore") or _from_library(found, "aiobotocore"):
            return _s3_error(err, found, s3)
        if _from_library(found, "aiohttp"):
            return _http_error(found, [r for r in remotes if not r.is_s3] or list(remotes))
    if isinstance(err, OSError):
        return _os_error(err, remotes)
    if isinstance(err, ModuleNotFoundError):
        return Explained(
            f"this needs the Python package {err.name!r}, which is not installed",
            hint=f"install it (pip install {err.name}) and run the command again",
        )
    if isinstance(err, MemoryError):
        return Explained("out of memory", hint="fewer --workers use less memory")
    if isinstance(err, ValueError):
        return Explained(str(err) or type(err).__name__)
    return Explained(
        f"{type(err).__name__}: {err}",
        hint="unexpected: run it again with --debug to see the traceback, and report it",
    )


def _interrupted(err: BaseException, command: str, argv: Sequence[str]) -> Explained:
    rerun = "ctspine-zarr " + shlex.join(argv) if argv else "the same command"
    if isinstance(err, IngestInterrupted):
        return Explained(
            f"interrupted: {err.written} of {err.total} case(s) were written to {err.store} "
            "and are kept",
            EXIT_INTERRUPTED,
            f"to resume, run the same command again (it skips the cases written): {rerun}"
            if command in _RESUMABLE
            else "",
        )
    if command in _RESUMABLE:
        return Explained(
            "interrupted; every case finished is kept",
            EXIT_INTERRUPTED,
            f"to resume, run the same command again: {rerun}",
        )
    return Explained("interrupted", EXIT_INTERRUPTED)


def _where(remotes: Sequence[Remote]) -> str:
    urls = list(dict.fromkeys(r.url for r in remotes))
    return " or ".join(urls) if urls else "the remote store"


def _endpoints(remotes: Sequence[Remote]) -> str:
    found = list(dict.fromkeys(r.endpoint() for r in remotes))
    return " or ".join(found) if found else "the server"


def _flags(remotes: Sequence[Remote]) -> str:
    found = list(dict.fromkeys(r.flag for r in remotes))
    return " or ".join(found) if found else "--storage-options"


_CREDENTIALS_HINT: Final = (
    'give "key" and "secret" in {flags}, or set AWS_ACCESS_KEY_ID and '
    'AWS_SECRET_ACCESS_KEY (or AWS_PROFILE); {{"anon": true}} reads a public bucket'
)
_DENIED: Final = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "AllAccessDisabled",
    "AccountProblem",
    "Forbidden",
    "403",
}


_CREDENTIAL_ERRORS: Final = ("NoCredentialsError", "PartialCredentialsError", "NoRegionError")


def _error_code(err: BaseException) -> str:
    """The S3 error code of a botocore ``ClientError`` (empty for anything else)."""
    response = getattr(err, "response", None)
    if not _named(err, "ClientError") or not isinstance(response, dict):
        return ""
    return str((response.get("Error") or {}).get("Code", ""))


def _denied(err: BaseException) -> bool:
    return _error_code(err) in _DENIED


def _s3_error(err: BaseException, found: BaseException, remotes: Sequence[Remote]) -> Explained:
    where, endpoint = _where(remotes), _endpoints(remotes)
    if _named(found, "NoCredentialsError", "PartialCredentialsError"):
        hint = _CREDENTIALS_HINT.format(flags=_flags(remotes))
        return Explained(f"{where}: no S3 credentials found for {endpoint}", hint=hint)
    if _named(found, "NoRegionError"):
        return Explained(
            f"{where}: no S3 region given",
            hint='set AWS_DEFAULT_REGION, or "client_kwargs": {"region_name": ...} in '
            + _flags(remotes),
        )
    if _named(found, "ClientError"):
        code = _error_code(found)
        response = getattr(found, "response", None) or {}
        text = str((response.get("Error") or {}).get("Message", "")) or str(found)
        if code in _DENIED or isinstance(err, PermissionError):
            return Explained(
                f"{where}: access denied by {endpoint} ({code or 'HTTP 403'}: {text})",
                hint=f"check the key and secret ({_flags(remotes)}, or AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY) and that they may read and write the bucket",
            )
        return Explained(f"{where}: {endpoint} answered {code or 'an error'}: {text}")
    if _named(found, "EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError"):
        return Explained(
            f"{where}: cannot reach {endpoint} ({found}); check the endpoint_url and the "
            f"network (limits: connect_timeout, read_timeout, max_attempts in {_flags(remotes)})"
        )
    return Explained(f"{where}: {endpoint}: {type(found).__name__}: {found}")


def _http_error(found: BaseException, remotes: Sequence[Remote]) -> Explained:
    status = getattr(found, "status", None)
    url = getattr(getattr(found, "request_info", None), "real_url", None)
    where = str(url) if url is not None else _where(remotes)
    if status is not None:
        return Explained(f"{where}: HTTP {status} {getattr(found, 'message', '')}".rstrip())
    return Explained(f"{where}: cannot reach {_endpoints(remotes)} ({found})")


def _os_error(err: OSError, remotes: Sequence[Remote]) -> Explained:
    if isinstance(err, TimeoutError | ConnectionError) and remotes:
        return Explained(f"{_where(remotes)}: cannot reach {_endpoints(remotes)} ({err})")
    filename = getattr(err, "filename", None)
    if filename is None or err.strerror is None:
        return Explained(str(err) or type(err).__name__)
    reason = {
        errno.ENOENT: "no such file or folder",
        errno.EACCES: "permission denied",
        errno.ENOSPC: "no space left on the device",
        errno.EROFS: "read-only file system",
        errno.ENOTDIR: "a file where a folder is expected",
        errno.EISDIR: "a folder where a file is expected",
    }.get(err.errno or 0, err.strerror)
    return Explained(f"{os.fspath(filename)}: {reason}")
