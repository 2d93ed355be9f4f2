"""The audit record: what ``ctspine-zarr audit`` found, kept in the store beside the catalogue.

The record is one document, ``audit/zarr.json``: a Zarr group (so a walk of the store meets
a node, never a stray file) whose attribute :data:`~ctspine_zarr.schema.AUDIT_KEY` holds
the record as compact JSON. The root's consolidated metadata does not list it, so opening
the catalogue never reads it (``ctspine_zarr.open`` stays at two requests) and an ingest's
catalogue switch leaves it alone; the readers that need it (``ctspine-zarr info``,
``case_ids(exclude_flagged=...)``, ``show --audit``) read that one object.

The record (``docs/format.md``, "The audit record")::

    {"version": 1, "created_by": "ctspine_zarr ...", "time": "2026-12-09T10:12:03Z",
     "parameters": {...},
     "cases": {"<id>": {"token": "...", "time": "...", "version": 1, "checks": [...]}},
     "findings": [{"case": "<id>", "check": "gap", "labels": [22], "detail": "...",
                   "severity": "error"}, ...]}

A case's ``token`` digests the SHA-256 of its two source files (the case attribute
``files``): an ingest that rewrites a case from changed sources gives it a new token, and
:func:`prune_record`, which the ingest runs right after it publishes the catalogue, drops
the findings of every case whose token changed or that the catalogue no longer lists.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any, Final

from zarr.abc.store import Store
from zarr.buffer import default_buffer_prototype

from ..compat import sync
from ..errors import DamagedStoreError
from ..schema import AUDIT_GROUP, AUDIT_KEY
from .location import Location
from .store import _read_store

__all__ = [
    "RECORD_KEY",
    "case_token",
    "load_record",
    "parse_record",
    "prune_record",
    "read_record",
    "store_record",
]

#: The object holding the record.
RECORD_KEY: Final = f"{AUDIT_GROUP}/zarr.json"


def case_token(attrs: Mapping[str, Any]) -> str:
    """Return the token of a case version: a digest of its source files' SHA-256.

    Parameters
    ----------
    attrs
        The case group's attributes (their ``files`` entry).
    """
    files = attrs.get("files") or {}
    parts = []
    for role in ("image", "label"):
        entry = files.get(role) or {}
        parts.append(str(entry.get("sha256") or json.dumps(entry, sort_keys=True)))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def parse_record(raw: bytes | None, where: str) -> dict[str, Any] | None:
    """Return the record in the bytes of ``audit/zarr.json`` (None: no record).

    Raises
    ------
    DamagedStoreError
        When the document is not a record (naming ``where``).
    """
    if raw is None:
        return None
    try:
        document = json.loads(raw)
        record = document["attributes"][AUDIT_KEY]
        if not isinstance(record.get("cases"), dict) or not isinstance(
            record.get("findings"), list
        ):
            raise TypeError("no cases and findings")
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise DamagedStoreError(
            f"{where}: not an audit record ({type(err).__name__}: {err}); run "
            "`ctspine-zarr audit STORE` again to rewrite it"
        ) from None
    return dict(record)


def read_record(
    location: str | os.PathLike[str] | Store, *, storage_options: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """Read a store's audit record through the process's read-only store (one request).

    Returns None when the store holds no record.
    """
    store = _read_store(location, storage_options)
    found = sync(store.get(RECORD_KEY, default_buffer_prototype()))
    shown = repr(location) if isinstance(location, Store) else os.fspath(location)
    return parse_record(None if found is None else found.to_bytes(), f"{shown}/{RECORD_KEY}")


def load_record(loc: Location) -> dict[str, Any] | None:
    """Read the record for a writer; a damaged one counts as none (it is replaced)."""
    try:
        return parse_record(loc.read(RECORD_KEY), f"{loc.text}/{RECORD_KEY}")
    except DamagedStoreError:
        return None


def store_record(loc: Location, record: Mapping[str, Any]) -> None:
    """Write the record in one atomic write of ``audit/zarr.json`` (under the writer lock)."""
    document = {"zarr_format": 3, "node_type": "group", "attributes": {AUDIT_KEY: record}}
    loc.put(RECORD_KEY, json.dumps(document, separators=(",", ":"), allow_nan=False).encode())


def prune_record(loc: Location, tokens: Mapping[str, str]) -> list[str]:
    """Drop the entries of cases that are gone or whose sources changed; return their ids.

    Parameters
    ----------
    loc
        The store, under the writer lock.
    tokens
        ``{case_id: case_token}`` of every case the catalogue lists now.
    """
    record = load_record(loc)
    if record is None:
        return []
    cases: dict[str, Any] = record["cases"]
    stale = sorted(c for c, entry in cases.items() if tokens.get(c) != entry.get("token"))
    if not stale:
        return []
    gone = set(stale)
    record["cases"] = {c: entry for c, entry in cases.items() if c not in gone}
    record["findings"] = [f for f in record["findings"] if f.get("case") not in gone]
    store_record(loc, record)
    return stale
