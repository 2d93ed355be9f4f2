"""Bounded per-process caches of what was opened for a case, least recently used out first.

The case readers (:mod:`ctspine_zarr.io.slicereader`) and the lazy volumes
(:mod:`ctspine_zarr.io.volume`) are each kept in a :class:`ProcessCache`. Keys start like
:func:`ctspine_zarr.io.store.cache_key` (process id, location, storage options), so a forked
worker never uses its parent's entries, and :func:`ctspine_zarr.io.store.forget` drops a
location's entries once the store was written.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Generic, TypeVar

from .store import register_cache

__all__ = ["ProcessCache"]

_V = TypeVar("_V")


class ProcessCache(Generic[_V]):
    """At most ``limit`` values by key; thread-safe; the least recently used goes first.

    Parameters
    ----------
    limit
        The number of values kept.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        #: The values, least recently used first (registered with ``store.forget``).
        self.entries: OrderedDict[tuple, _V] = OrderedDict()
        self._lock = threading.Lock()
        register_cache(self.entries)

    def get(self, key: tuple) -> _V | None:
        """The value of ``key``, now the most recently used, or None."""
        with self._lock:
            found = self.entries.get(key)
            if found is not None:
                self.entries.move_to_end(key)
            return found

    def put(self, key: tuple, value: _V) -> _V:
        """Keep ``value`` under ``key``, dropping the least recently used beyond the limit."""
        with self._lock:
            self.entries[key] = value
            while len(self.entries) > self.limit:
                self.entries.popitem(last=False)
        return value
