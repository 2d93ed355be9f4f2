"""Stopping the cases of an interrupted ingest: Ctrl-C asks them to stop, then waits for them.

A Ctrl-C reaches the thread that waits for the cases; the cases already running in this
process's threads would otherwise go on writing after the ingest released its lock. Each
case runs inside :func:`running`, whose checkpoint (called before each shard and before the
switch) raises :class:`CaseStopped` once :func:`stop` was called for its ingest. What a
stopped case wrote is staging, which the next ingest deletes.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["CaseStopped", "mark_written", "running", "stop"]

_stopped: set[str] = set()
_running: collections.Counter[str] = collections.Counter()
_written: collections.Counter[str] = collections.Counter()
_changed = threading.Condition()


class CaseStopped(Exception):
    """The ingest this case belongs to was interrupted."""


@contextmanager
def running(run: str) -> Iterator[Callable[[], None]]:
    """Count a case of ingest ``run`` as running in this process; yield its checkpoint.

    The checkpoint raises :class:`CaseStopped` once :func:`stop` was called for ``run``.
    """

    def checkpoint() -> None:
        if run in _stopped:
            raise CaseStopped(f"ingest {run} was interrupted")

    with _changed:
        _running[run] += 1
    try:
        checkpoint()
        yield checkpoint
    finally:
        with _changed:
            _running[run] -= 1
            if _running[run] <= 0:
                del _running[run]
            _changed.notify_all()


def mark_written(run: str) -> None:
    """Count a case of ingest ``run`` as written (switched in) by this process."""
    with _changed:
        _written[run] += 1


def stop(run: str, timeout: float = 60.0) -> tuple[bool, int]:
    """Ask the cases of ingest ``run`` running in this process to stop, and wait for them.

    Parameters
    ----------
    run
        The ingest's token.
    timeout
        Longest wait, in seconds.

    Returns
    -------
    tuple of (bool, int)
        Whether every case stopped within ``timeout``, and how many cases of ``run`` this
        process wrote (:func:`mark_written`).
    """
    deadline = time.monotonic() + timeout
    with _changed:
        _stopped.add(run)
        while _running[run] > 0:
            left = deadline - time.monotonic()
            if left <= 0:
                return False, _written[run]
            _changed.wait(left)
        _running.pop(run, None)
        return True, _written.pop(run, 0)
