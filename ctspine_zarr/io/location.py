"""A store location resolved once: the zarr store, and the few byte operations writers need.

Writers resolve the store argument (a local path, an fsspec URL or a zarr store) into one
:class:`Location` at the boundary and pass that object down, so lower layers never
re-interpret strings. It offers what a safe writer needs and zarr's store API lacks:
listing what a location already holds, atomic single-object writes, exclusive creation
(the writer lock on object stores), and moving a folder of ours into place
(an atomic exchange of two folders on Linux, ``renameat2(RENAME_EXCHANGE)``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import posixpath
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
import zarr.storage
from zarr.abc.store import Store
from zarr.buffer import default_buffer_prototype

from ..compat import sync
from ..schema import INTERNAL_DIR

__all__ = ["TMP_DIR", "Location", "nested", "normalise"]

#: Where local atomic writes stage their bytes (inside the writer's folder).
TMP_DIR = f"{INTERNAL_DIR}/tmp"

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


@dataclass
class Location:
    """Where a store lives, resolved once.

    Attributes
    ----------
    text
        The location as the user gave it (for messages).
    store
        The zarr store (writable unless resolved read-only).
    local_root
        The folder of a local store, else None.
    fs, fs_root
        The fsspec filesystem and the store's path in it, for a URL store; else None.
    storage_options
        The fsspec options of a URL store.
    """

    text: str
    store: Store
    local_root: Path | None = None
    fs: Any = None
    fs_root: str | None = None
    storage_options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def resolve(
        cls,
        location: str | os.PathLike[str] | Store,
        *,
        storage_options: dict[str, Any] | None = None,
        read_only: bool = False,
    ) -> Location:
        """Resolve a local path, an fsspec URL or a zarr store."""
        from .store import is_url, to_store

        options = dict(storage_options or {})
        if isinstance(location, Store):
            local = Path(location.root) if isinstance(location, zarr.storage.LocalStore) else None
            fs = getattr(location, "fs", None)
            fs_root = getattr(location, "path", None) if fs is not None else None
            return cls(repr(location), location, local, fs, fs_root, options)
        text = os.fspath(location)
        store = to_store(text, storage_options=options, read_only=read_only)
        if is_url(text):
            fs = getattr(store, "fs", None)
            return cls(text, store, None, fs, getattr(store, "path", None), options)
        path = Path(text.removeprefix("file://")).absolute()
        return cls(text, store, path, None, None, options)

    # ---- reading -------------------------------------------------------------------------

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key under ``prefix`` (all of the location when empty), sorted."""
        if self.local_root is not None:
            base = self.local_root / prefix if prefix else self.local_root
            if base.is_file():
                return [prefix]
            if not base.is_dir():
                return []
            found = []
            for dirpath, _dirs, files in os.walk(base):
                for name in files:
                    rel = os.path.relpath(os.path.join(dirpath, name), self.local_root)
                    found.append(rel.replace(os.sep, "/"))
            return sorted(found)
        if self.fs is not None:
            self.fs.invalidate_cache()

        async def collect() -> list[str]:
            return [k async for k in self.store.list_prefix(prefix)]

        return sorted(sync(collect()))

    def children(self, prefix: str) -> list[str]:
        """Names directly under ``prefix`` (folders and objects)."""
        if self.local_root is not None:
            base = self.local_root / prefix
            return sorted(os.listdir(base)) if base.is_dir() else []
        if self.fs is not None:
            self.fs.invalidate_cache()

        async def collect() -> list[str]:
            return [k async for k in self.store.list_dir(prefix)]

        return sorted(sync(collect()))

    def read(self, key: str) -> bytes | None:
        """The bytes of one object, or None when it does not exist."""
        if self.local_root is not None:
            try:
                return (self.local_root / key).read_bytes()
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                return None
        buf = sync(self.store.get(key, default_buffer_prototype()))
        return None if buf is None else buf.to_bytes()

    def read_many(self, keys: list[str]) -> list[bytes | None]:
        """The bytes of several objects (fetched concurrently from remote stores)."""
        if self.local_root is not None:
            return [self.read(k) for k in keys]
        prototype = default_buffer_prototype()

        async def gather() -> list[Any]:
            import asyncio

            return await asyncio.gather(*(self.store.get(k, prototype) for k in keys))

        return [None if b is None else b.to_bytes() for b in sync(gather())]

    def read_tails(self, keys: list[str], n: int) -> list[tuple[bytes | None, int | None]]:
        """The last ``n`` bytes of several objects, with each object's size (None remotely)."""
        if self.local_root is not None:
            out: list[tuple[bytes | None, int | None]] = []
            for key in keys:
                try:
                    fd = os.open(self.local_root / key, os.O_RDONLY)
                except (FileNotFoundError, NotADirectoryError):
                    out.append((None, None))
                    continue
                try:
                    size = os.fstat(fd).st_size
                    out.append((os.pread(fd, min(n, size), max(0, size - n)), size))
                finally:
                    os.close(fd)
            return out
        from zarr.abc.store import SuffixByteRequest

        prototype = default_buffer_prototype()

        async def gather() -> list[Any]:
            import asyncio

            requests = (self.store.get(k, prototype, SuffixByteRequest(n)) for k in keys)
            return await asyncio.gather(*requests)

        return [(None if b is None else b.to_bytes(), None) for b in sync(gather())]

    def exists(self, key: str) -> bool:
        """Whether the object ``key`` exists."""
        if self.local_root is not None:
            return (self.local_root / key).is_file()
        return bool(sync(self.store.exists(key)))

    # ---- writing -------------------------------------------------------------------------

    def put(self, key: str, data: bytes) -> None:
        """Write one object atomically: readers see the old bytes or the new, never a part.

        A local file is written in the writer's folder (``.ctspine/tmp``, on the same file
        system) and renamed over, so that a killed write leaves nothing in the hierarchy that
        Zarr walks; one PUT is atomic on object stores.
        """
        if self.local_root is not None:
            path = self.local_root / key
            path.parent.mkdir(parents=True, exist_ok=True)
            scratch = self.local_root / TMP_DIR
            scratch.mkdir(parents=True, exist_ok=True)
            tmp = scratch / f"{uuid.uuid4().hex}.part"
            try:
                with open(tmp, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
            return
        sync(self.store.set(key, default_buffer_prototype().buffer.from_bytes(data)))

    def create(self, key: str, data: bytes) -> bool:
        """Create the object ``key`` only if it does not exist; False when it does.

        Exclusive on local folders (``O_EXCL``) and on S3 (a conditional PUT,
        ``If-None-Match: *``); other stores check first (not atomic).
        """
        if self.local_root is not None:
            path = self.local_root / key
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            return True
        if self.fs is not None and "s3" in _protocols(self.fs):
            try:
                sync(self.fs._pipe_file(self._fs_path(key), data, mode="create"))
            except (FileExistsError, OSError) as err:
                if _precondition_failed(err):
                    return False
                raise
            return True
        if self.exists(key):
            return False
        self.put(key, data)
        return True

    def delete(self, key: str) -> None:
        """Delete one object (no error when it is absent)."""
        if self.local_root is not None:
            (self.local_root / key).unlink(missing_ok=True)
            return
        sync(self.store.delete(key))

    def delete_prefix(self, prefix: str) -> None:
        """Delete every object under ``prefix``; only ever called on folders this package made."""
        if not prefix or prefix.strip("/") in ("", "."):
            raise ValueError("refusing to delete a whole location")
        if self.local_root is not None:
            import shutil

            shutil.rmtree(self.local_root / prefix, ignore_errors=True)
            return
        for key in self.keys(prefix.rstrip("/") + "/"):
            sync(self.store.delete(key))

    def move(self, source: str, target: str) -> None:
        """Move the folder ``source`` to ``target`` (which must not exist).

        A rename locally; on other stores every object is copied, then the source deleted.
        """
        if self.local_root is not None:
            dest = self.local_root / target
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.rename(self.local_root / source, dest)
            return
        src = source.rstrip("/") + "/"
        for key in self.keys(src):
            data = self.read(key)
            if data is not None:
                self.put(target.rstrip("/") + "/" + key[len(src) :], data)
        self.delete_prefix(source)

    def exchange(self, first: str, second: str) -> bool:
        """Swap two local folders atomically; False where the system cannot (then nothing moved).

        Linux's ``renameat2(..., RENAME_EXCHANGE)``: a reader sees one folder or the other
        at each path, never neither.
        """
        if self.local_root is None or _renameat2 is None:
            return False
        a = os.fsencode(self.local_root / first)
        b = os.fsencode(self.local_root / second)
        if _renameat2(_AT_FDCWD, a, _AT_FDCWD, b, _RENAME_EXCHANGE) == 0:
            return True
        errno = ctypes.get_errno()
        if errno in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: not on this file system
            return False
        raise OSError(errno, os.strerror(errno), str(self.local_root / first))

    def _fs_path(self, key: str) -> str:
        return posixpath.join(self.fs_root or "", key)


def _load_renameat2() -> Any:
    if not hasattr(os, "register_at_fork") or os.uname().sysname != "Linux":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        function = libc.renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
    function.argtypes += [ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_renameat2 = _load_renameat2()


def _protocols(fs: Any) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def _precondition_failed(err: BaseException) -> bool:
    text = f"{type(err).__name__} {err} {getattr(err, '__cause__', '')}"
    return isinstance(err, FileExistsError) or "PreconditionFailed" in text or "412" in text


def normalise(location: str | os.PathLike[str], storage_options: dict[str, Any] | None) -> str:
    """Return ``protocol://absolute/path`` for a path or URL, to compare locations."""
    text = os.fspath(location)
    if "://" not in text or text.startswith("file://"):
        return "file://" + os.path.realpath(text.removeprefix("file://"))
    fs, path = fsspec.core.url_to_fs(text, **(storage_options or {}))
    return f"{_protocols(fs)[0]}://{path.strip('/')}"


def nested(first: str, second: str) -> bool:
    """Whether two normalised locations are the same or one lies inside the other."""
    a, b = first.rstrip("/"), second.rstrip("/")
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")
