"""One writer at a time: the lock an ingest holds on its store.

The lock is the object ``.ctspine/lock`` inside the store, holding who took it (host, pid,
start time, last heartbeat):

- on a local folder it is ``flock``-ed; the kernel releases it when the holder dies, so a
  killed ingest never leaves a stale lock behind;
- on an object store it is created with a conditional PUT (``If-None-Match: *`` on S3)
  and rewritten every :data:`HEARTBEAT_SECONDS`; a lock whose heartbeat is older than
  :data:`STALE_SECONDS`, or that names a process of this host that no longer exists,
  belongs to a writer that died and is taken over;
- on an in-memory or other zarr store, a lock held in this process.

A second ingest raises :class:`~ctspine_zarr.errors.StoreLockedError` before touching
anything.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from types import TracebackType
from typing import Any, Final

from ..errors import StoreLockedError
from ..io.location import Location
from ..schema import INTERNAL_DIR

__all__ = ["HEARTBEAT_SECONDS", "LOCK_KEY", "STALE_SECONDS", "WriterLock"]

LOCK_KEY: Final = f"{INTERNAL_DIR}/lock"
#: How often the holder of a lock on an object store rewrites it.
HEARTBEAT_SECONDS: Final = 30.0
#: A lock on an object store whose heartbeat is older than this is taken over.
STALE_SECONDS: Final = 300.0

_in_process: set[int] = set()
_in_process_lock = threading.Lock()


def _holder() -> dict[str, Any]:
    now = time.time()
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": now, "heartbeat": now}


def _describe(raw: bytes | None) -> str:
    try:
        info = json.loads(raw or b"")
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info["started"])))
        return f"pid {info['pid']} on {info['host']}, since {started}"
    except (ValueError, KeyError, TypeError):
        return "holder unknown"


def _stale(raw: bytes | None) -> bool:
    """Whether a lock object belongs to a writer that died.

    Its heartbeat stopped more than :data:`STALE_SECONDS` ago, or it names a process of
    this host that no longer exists, or it does not parse (a writer that died mid-write).
    """
    try:
        info = json.loads(raw or b"")
        age = time.time() - float(info["heartbeat"])
        host, pid = str(info["host"]), int(info["pid"])
    except (ValueError, KeyError, TypeError):
        return True
    if age > STALE_SECONDS:
        return True
    if host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class WriterLock:
    """The writer lock of one store; use as a context manager around a whole ingest."""

    def __init__(self, location: Location) -> None:
        self.location = location
        self._fd: int | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._info = _holder()

    def __enter__(self) -> WriterLock:
        self.acquire()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def _refuse(self, raw: bytes | None) -> StoreLockedError:
        return StoreLockedError(
            f"{self.location.text}: another ingest is writing this store ({_describe(raw)}); "
            "wait for it to finish, then run this one again"
        )

    def acquire(self) -> None:
        """Take the lock, or raise :class:`StoreLockedError` naming its holder."""
        loc = self.location
        if loc.local_root is not None:
            self._acquire_local(loc.local_root / LOCK_KEY)
        elif loc.fs is not None:
            self._acquire_remote()
        else:
            with _in_process_lock:
                if id(loc.store) in _in_process:
                    raise self._refuse(None)
                _in_process.add(id(loc.store))

    def _acquire_local(self, path: Any) -> None:
        import fcntl

        path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raw = os.pread(fd, 4096, 0)
                os.close(fd)
                raise self._refuse(raw) from None
            try:  # the holder before us may have unlinked the file we opened
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(self._info).encode(), 0)
        self._fd = fd

    def _acquire_remote(self) -> None:
        loc = self.location
        if not loc.create(LOCK_KEY, json.dumps(self._info).encode()):
            raw = loc.read(LOCK_KEY)
            if not _stale(raw):
                raise self._refuse(raw)
            loc.delete(LOCK_KEY)  # stale: its writer stopped beating
            if not loc.create(LOCK_KEY, json.dumps(self._info).encode()):
                raise self._refuse(loc.read(LOCK_KEY))
        self._beat = threading.Thread(target=self._heartbeat, name="ctspine-lock", daemon=True)
        self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            self._info["heartbeat"] = time.time()
            try:
                self.location.put(LOCK_KEY, json.dumps(self._info).encode())
            except Exception:  # noqa: BLE001 - a missed beat is retried at the next one
                continue

    def release(self) -> None:
        """Give the lock back (deleting the lock object)."""
        loc = self.location
        if self._fd is not None:
            assert loc.local_root is not None
            (loc.local_root / LOCK_KEY).unlink(missing_ok=True)
            os.close(self._fd)  # closing releases the flock
            self._fd = None
        elif loc.fs is not None:
            self._stop.set()
            if self._beat is not None:
                self._beat.join()
                self._beat = None
            loc.delete(LOCK_KEY)
        else:
            with _in_process_lock:
                _in_process.discard(id(loc.store))
