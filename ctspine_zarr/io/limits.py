"""Reading a source file within the memory cap per volume, so that no file can bomb the reader.

The cap (:func:`default_max_voxel_bytes`) bounds the decompressed size of one NIfTI file.
:func:`read_bytes` reads only regular files (FIFOs, sockets and devices are refused before
they are opened) of at most the cap; :func:`gunzip` decompresses every gzip member with its
CRC checked, keeps what the header claims and refuses the stream as soon as it passes the
cap; :func:`head` decompresses just the header.
"""

from __future__ import annotations

import os
import re
import stat
import zlib
from typing import Any, cast

import fsspec
from fsspec.implementations.local import LocalFileSystem

from ..errors import InvalidCaseError

__all__ = [
    "DEFLATE_MAX_RATIO",
    "GZIP_MAGIC",
    "MAX_VOLUME_BYTES_ENV",
    "RAISE_CAP",
    "default_max_voxel_bytes",
    "format_bytes",
    "gunzip",
    "head",
    "read_bytes",
]

#: Environment variable that sets the default memory cap per volume, in bytes.
MAX_VOLUME_BYTES_ENV = "CTSPINE_MAX_VOLUME_BYTES"
#: The advice of every error that names the cap.
RAISE_CAP = (
    f"raise max_voxel_bytes or the environment variable {MAX_VOLUME_BYTES_ENV} if it is genuine"
)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def default_max_voxel_bytes() -> int:
    """The memory cap per volume: ``$CTSPINE_MAX_VOLUME_BYTES``, else min(16 GiB, RAM / 4).

    The cap bounds the decompressed size of one NIfTI file (header and voxels), and so
    the memory one read may allocate. The variable takes a byte count, optionally with a
    binary unit: ``8589934592``, ``8G``, ``8GiB``, ``512MiB``.

    Raises
    ------
    ValueError
        When the variable is set to something else.
    """
    text = os.environ.get(MAX_VOLUME_BYTES_ENV, "").strip()
    if text:
        match = re.fullmatch(r"(\d+)\s*([KMGT]?)(?:i?B)?", text, flags=re.IGNORECASE)
        if match is None or int(match.group(1)) <= 0:
            raise ValueError(
                f"{MAX_VOLUME_BYTES_ENV}={text!r} is not a positive byte count "
                "such as 8589934592, 8G or 512MiB"
            )
        return int(match.group(1)) * _UNITS[match.group(2).upper()]
    return min(16 << 30, _physical_memory() // 4)


def _physical_memory() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        return 64 << 30


def format_bytes(n: int) -> str:
    """A byte count as people read it in error messages: ``512 B``, ``1.5 GiB``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover - the loop always returns


# --------------------------------------------------------------------------------------------
# The file's bytes
# --------------------------------------------------------------------------------------------


def read_bytes(
    path: str, fs: fsspec.AbstractFileSystem, case_id: str, cap: int
) -> tuple[bytes, dict[str, Any]]:
    """Read a regular file of at most ``cap`` bytes; refuse anything else before opening it.

    Returns the bytes and the file's fsspec ``info`` (size, modification time, ...).
    """
    if isinstance(fs, LocalFileSystem):
        return _read_local(path, case_id, cap)
    try:
        info = fs.info(path)
    except FileNotFoundError as err:
        raise InvalidCaseError(case_id, path, "file not found", "check the raw tree") from err
    if info.get("type", "file") != "file":
        raise InvalidCaseError(
            case_id,
            path,
            f"not a regular file (a {info.get('type')})",
            "remove it from the raw tree",
        )
    _check_file_size(int(info.get("size") or 0), path, case_id, cap)
    try:
        data = fs.cat_file(path)
    except FileNotFoundError as err:
        raise InvalidCaseError(case_id, path, "file not found", "check the raw tree") from err
    return data, info


def _read_local(path: str, case_id: str, cap: int) -> tuple[bytes, dict[str, Any]]:
    """Read a local regular file (symlinks followed); FIFOs, sockets, devices are refused.

    The file is checked with ``stat`` before it is opened, and opened non-blocking and
    checked again, so a FIFO swapped in between cannot hang the read.
    """
    try:
        _check_regular(os.stat(path).st_mode, path, case_id)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError as err:
        raise InvalidCaseError(case_id, path, "file not found", "check the raw tree") from err
    with open(fd, "rb", closefd=True) as handle:
        stat_result = os.fstat(fd)
        _check_regular(stat_result.st_mode, path, case_id)
        _check_file_size(stat_result.st_size, path, case_id, cap)
        data = handle.read()
    info = {"size": len(data), "mtime": stat_result.st_mtime, "type": "file"}
    return data, info


_NOT_REGULAR = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _check_regular(mode: int, path: str, case_id: str) -> None:
    if stat.S_ISREG(mode):
        return
    kind = next((name for test, name in _NOT_REGULAR if test(mode)), "not a regular file")
    raise InvalidCaseError(
        case_id, path, f"not a regular file but {kind}", "remove it from the raw tree"
    )


def _check_file_size(size: int, path: str, case_id: str, cap: int) -> None:
    if size > cap:
        raise InvalidCaseError(
            case_id,
            path,
            f"the file is {format_bytes(size)}, more than the {format_bytes(cap)} memory cap "
            "per volume",
            RAISE_CAP,
        )


# --------------------------------------------------------------------------------------------
# Bounded gzip decompression
# --------------------------------------------------------------------------------------------

_zlib: Any
try:  # ISA-L's inflate is about twice as fast as zlib's; both check every member's CRC
    from isal import isal_zlib as _zlib

    _INFLATE_ERRORS: tuple[type[Exception], ...] = (zlib.error, cast(type, _zlib.error), OSError)
except ImportError:  # pragma: no cover - isal is a dependency; keep working without it
    _zlib = zlib
    _INFLATE_ERRORS = (zlib.error, OSError)

#: The first two bytes of every gzip member.
GZIP_MAGIC = b"\x1f\x8b"
_GZIP_WBITS = 31
#: A deflate stream expands at most 1032:1 (258 bytes per 2 bits of the last code).
DEFLATE_MAX_RATIO = 1032


#: Output block of the counting pass past the kept bytes (decompressed, then discarded).
_COUNT_BLOCK = 1 << 24
#: Input fed per call in the counting pass (zlib copies the unconsumed input each call).
_COUNT_INPUT = 1 << 20


def _inflate(data: bytes, keep: int, limit: int, path: str, case_id: str) -> bytes:
    """Decompress every gzip member, keep the first ``keep`` bytes, count the rest.

    Every member's CRC and length are checked. Past ``keep`` bytes (the header's claim),
    the stream is decompressed in blocks that are counted and discarded, and refused as
    soon as it passes ``limit`` bytes: at most ``keep`` + one block is ever held.
    """
    parts: list[bytes] = []
    kept = total = pos = 0
    view = memoryview(data)
    while True:
        inflater = _zlib.decompressobj(wbits=_GZIP_WBITS)
        while not inflater.eof:
            keeping = kept < keep
            # keeping: the whole input in one call, so the kept bytes are one buffer
            piece = view[pos:] if keeping else view[pos : pos + _COUNT_INPUT]
            budget = min(keep - kept if keeping else _COUNT_BLOCK, limit - total + 1)
            chunk = inflater.decompress(piece, budget)
            pos += len(piece) - len(inflater.unconsumed_tail) - len(inflater.unused_data)
            total += len(chunk)
            if keeping:
                parts.append(chunk)
                kept += len(chunk)
            if total > limit:
                raise InvalidCaseError(
                    case_id,
                    path,
                    f"decompresses to more than the {format_bytes(limit)} memory cap per volume",
                    RAISE_CAP,
                )
            if not chunk and pos >= len(view):
                break
        if not inflater.eof:
            raise EOFError("compressed file ended before the end-of-stream marker was reached")
        rest = view[pos:]
        if not rest or not any(rest):  # trailing zeros: padding, as gzip.decompress allows
            break
        if bytes(rest[:2]) != GZIP_MAGIC:
            raise zlib.error(f"{len(rest)} bytes of trailing garbage after the last member")
    return parts[0] if len(parts) == 1 else b"".join(parts)


def gunzip(data: bytes, path: str, case_id: str, keep: int, limit: int) -> bytes:
    """The first ``keep`` decompressed bytes of a file of at most ``limit`` (plain: as is).

    Raises
    ------
    InvalidCaseError
        When the stream is truncated or corrupt, or decompresses to more than ``limit``.
    """
    if data[:2] != GZIP_MAGIC:
        return data
    try:
        return _inflate(data, keep, limit, path, case_id)
    except EOFError as err:
        raise InvalidCaseError(
            case_id,
            path,
            f"truncated gzip stream ({len(data)} bytes on disk): {err}",
            "download the file again",
        ) from err
    except _INFLATE_ERRORS as err:
        raise InvalidCaseError(
            case_id, path, f"corrupt gzip stream: {err}", "download the file again"
        ) from err


def head(data: bytes, size: int) -> bytes:
    """The first ``size`` decompressed bytes of a gzip file (``data`` itself if plain)."""
    if data[:2] != GZIP_MAGIC:
        return data[:size]
    out = b""
    pos = 0
    view = memoryview(data)
    try:
        while len(out) < size and bytes(view[pos : pos + 2]) == GZIP_MAGIC:
            inflater = _zlib.decompressobj(wbits=_GZIP_WBITS)
            step = 1 << 12
            while len(out) < size and not inflater.eof and pos < len(view):
                piece = view[pos : pos + step]  # a little input: the header is at the start
                out += inflater.decompress(piece, size - len(out))
                pos += len(piece) - len(inflater.unconsumed_tail) - len(inflater.unused_data)
                step *= 2
            if not inflater.eof:
                break
    except _INFLATE_ERRORS:
        pass  # the full decompression names the damage
    return out
