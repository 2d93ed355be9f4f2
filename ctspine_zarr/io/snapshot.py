"""Readers see one snapshot of the catalogue: the root document they opened, and its chunks.

An ingest publishes a new catalogue by writing its chunks under new keys (the chunk key
encoding rotates, see ``docs/format.md``) and then replacing the root ``zarr.json`` in one
atomic write. The root document records the CRC-32 of every catalogue chunk. A
:class:`SnapshotStore` pins the root document it read first and checks every catalogue
chunk against it, so a Dataset opened with :func:`ctspine_zarr.open` keeps reading its own
snapshot, or raises :class:`~ctspine_zarr.errors.StoreChangedError`: never a mix.

The root document also lists every case group and its arrays after the catalogue (so that
generic readers find the cases through it; :func:`ctspine_zarr.io.catalogue.case_members`).
A reader of the catalogue needs only the head of the document: :func:`catalogue_head` cuts
it where the case entries begin, so opening a store of 1,005 cases reads and parses a few
kilobytes, not megabytes.
"""

from __future__ import annotations

import json
import zlib
from typing import TYPE_CHECKING, Any, Final

from zarr.abc.store import ByteRequest, RangeByteRequest, Store
from zarr.storage import WrapperStore

from ..errors import DamagedStoreError, StoreChangedError
from ..schema import CASES_GROUP, CASES_MARKER, CATALOGUE_CRC_KEY

if TYPE_CHECKING:
    from zarr.core.buffer import Buffer, BufferPrototype

__all__ = ["HEAD_BYTES", "ROOT_DOCUMENT", "SnapshotStore", "catalogue_head", "parse_document"]

ROOT_DOCUMENT = "zarr.json"
#: What a reader asks for first of the root document: its attributes and the catalogue's
#: entries fit in it, unless the root also records large statistics (then a second read).
HEAD_BYTES: Final = 256 * 1024
#: Where the case entries begin in the root document as ctspine writes it (compact JSON,
#: the catalogue's entries first).
CASES_ENTRY: Final = (
    f',"{CASES_GROUP}":{{"zarr_format":3,"node_type":"group",'
    f'"attributes":{{"{CASES_MARKER}":true}}}}'
).encode()


def catalogue_head(raw: bytes) -> bytes | None:
    """The root document without its case entries: the catalogue alone.

    Returns None when ``raw`` holds no case entries where ctspine writes them (a store of
    format 2, or metadata another tool consolidated): the whole document is then read.
    """
    cut = raw.find(CASES_ENTRY)
    if cut < 0:
        return None
    head = raw[:cut] + b"}}}"  # close the metadata, consolidated_metadata and the document
    try:
        document = json.loads(head)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(document, dict) or "consolidated_metadata" not in document:
        return None
    return head


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

    async def _read_root(self, prototype: BufferPrototype) -> bytes | None:
        """The root document as the catalogue needs it: its head, read first on its own."""
        first = await self._store.get(ROOT_DOCUMENT, prototype, RangeByteRequest(0, HEAD_BYTES))
        if first is None:
            return None
        raw = first.to_bytes()
        if len(raw) >= HEAD_BYTES:  # perhaps more of it
            head = catalogue_head(raw)
            if head is not None:
                return head
            whole = await self._store.get(ROOT_DOCUMENT, prototype)
            if whole is None:
                return None
            raw = whole.to_bytes()
        return catalogue_head(raw) or raw

    async def get(
        self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        """Return the pinned root document (its catalogue), or an object checked against it."""
        if key == ROOT_DOCUMENT and byte_range is None:
            if self._root is None:
                raw = await self._read_root(prototype)
                if raw is None:
                    return None
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
