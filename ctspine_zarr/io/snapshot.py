"""Readers see one snapshot of the catalogue: the root document they opened, and its chunks.

An ingest publishes a new catalogue by writing its chunks under new keys (the chunk key
encoding rotates, see ``docs/format.md``) and then replacing the root ``zarr.json`` in one
atomic write. The root document records the CRC-32 of every catalogue chunk. A
:class:`SnapshotStore` pins the root document it read first and checks every catalogue
chunk against it, so a Dataset opened with :func:`ctspine_zarr.open` keeps reading its own
snapshot, or raises :class:`~ctspine_zarr.errors.StoreChangedError`: never a mix.
"""

from __future__ import annotations

import json
import zlib
from typing import TYPE_CHECKING, Any

from zarr.abc.store import ByteRequest, Store
from zarr.storage import WrapperStore

from ..errors import DamagedStoreError, StoreChangedError
from ..schema import CATALOGUE_CRC_KEY

if TYPE_CHECKING:
    from zarr.core.buffer import Buffer, BufferPrototype

__all__ = ["ROOT_DOCUMENT", "SnapshotStore", "parse_document"]

ROOT_DOCUMENT = "zarr.json"


def parse_document(raw: bytes, where: str) -> dict[str, Any]:
    """Parse a ``zarr.json`` document, or raise :class:`DamagedStoreError` naming it."""
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DamagedStoreError(
            f"{where}: not valid JSON ({err}); the store is damaged "
            "(run `ctspine-zarr ingest RAW STORE` again to repair it)"
        ) from None
    if not isinstance(document, dict):
        raise DamagedStoreError(f"{where}: not a Zarr metadata document; the store is damaged")
    return document


class SnapshotStore(WrapperStore[Store]):
    """A read-only view of a store that serves one snapshot of its root document.

    Parameters
    ----------
    store
        The store to read.
    where
        How messages name the store.
    on_change
        Called before :class:`StoreChangedError` is raised (drops the process's caches).
    """

    def __init__(self, store: Store, *, where: str = "", on_change: Any = None) -> None:
        super().__init__(store)
        self._where = where
        self._on_change = on_change
        self._root: bytes | None = None
        self._checksums: dict[str, int] = {}

    async def get(
        self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        """Return the pinned root document, or an object checked against it."""
        if key == ROOT_DOCUMENT and byte_range is None:
            if self._root is None:
                found = await self._store.get(key, prototype)
                if found is None:
                    return None
                raw = found.to_bytes()
                attrs = parse_document(raw, f"{self._where}/{key}").get("attributes") or {}
                recorded = attrs.get(CATALOGUE_CRC_KEY) or {}
                self._checksums = {str(k): int(v) for k, v in recorded.items()}
                self._root = raw
            return prototype.buffer.from_bytes(self._root)
        found = await self._store.get(key, prototype, byte_range)
        expected = self._checksums.get(key)
        if expected is not None and byte_range is None:
            if found is None or zlib.crc32(found.to_bytes()) != expected:
                if self._on_change is not None:
                    self._on_change()
                raise StoreChangedError(
                    f"{self._where}: the catalogue changed since it was opened ({key!r} was "
                    "replaced by a later ingest); reopen it with ctspine_zarr.open"
                )
        return found
