"""Claiming a store location for an ingest, and the writer's own folder in it.

An ingest writes only to a ctspine store or to an empty location; anything else is
refused unless ``force_clear`` names and deletes it, and a store overlapping the raw tree
is always refused (:func:`claim`, :func:`refuse_nesting`). Under the writer lock,
:func:`prepare` drops what a killed ingest left in ``.ctspine/`` and lays out a new store;
:func:`finish` deletes replaced versions once the catalogue has switched.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any, Final

from ..errors import StoreError, option
from ..io.catalogue import root_attrs
from ..io.location import TMP_DIR, Location, nested, normalise
from ..schema import CASES_GROUP, CASES_MARKER, FORMAT_KEY, INTERNAL_DIR

__all__ = [
    "STAGING",
    "TRASH",
    "claim",
    "finish",
    "inspect_location",
    "prepare",
    "refuse_nesting",
    "remove_internal_dir",
]

#: Where new versions of cases are written before they are switched in.
STAGING: Final = f"{INTERNAL_DIR}/staging"
#: Where replaced versions wait for the catalogue's switch.
TRASH: Final = f"{INTERNAL_DIR}/trash"


def refuse_nesting(
    raw: str | os.PathLike,
    loc: Location,
    raw_storage_options: dict[str, Any] | None,
) -> None:
    """Refuse a store inside the raw tree, or the raw tree inside the store (always)."""
    if loc.local_root is not None:
        where = os.fspath(loc.local_root)
    elif loc.fs is not None and loc.fs_root is not None:
        protocol = loc.fs.protocol if isinstance(loc.fs.protocol, str) else loc.fs.protocol[0]
        where = f"{protocol}://{loc.fs_root}"
    else:
        return  # an in-memory or other store cannot hold files
    store_at = normalise(where, loc.storage_options)
    raw_at = normalise(raw, raw_storage_options)
    if nested(store_at, raw_at):
        raise StoreError(
            f"{loc.text}: the store and the raw tree {os.fspath(raw)} overlap (one is inside "
            "the other); writing the store there could damage the sources: choose a store "
            "location outside the raw tree"
        )


def inspect_location(loc: Location) -> tuple[str, dict[str, Any] | None, list[str]]:
    """Say what a location holds: ``("ctspine" | "empty" | "foreign", root doc, foreign keys)``.

    A ctspine store is recognised by its root attrs or, when its root ``zarr.json`` is
    damaged, by the marker of its ``cases`` group (or, for stores of format 1, a case
    group's attrs), so that a rerun repairs it.
    """
    if loc.local_root is not None and loc.local_root.is_file():
        return "foreign", None, [os.fspath(loc.local_root)]
    document = _parse(loc.read("zarr.json"))
    if document is not None and FORMAT_KEY in (document.get("attributes") or {}):
        return "ctspine", document, []
    names = loc.children("")
    if not names:
        return "empty", None, []
    if INTERNAL_DIR in names:  # an ingest of ours runs (or was killed) there: the lock decides
        return "ctspine", document, []
    if _has_our_cases(loc):
        return "ctspine", None, []
    return "foreign", document, loc.keys()


def _parse(raw: bytes | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return document if isinstance(document, dict) else None


def _has_our_cases(loc: Location) -> bool:
    marker = _parse(loc.read(f"{CASES_GROUP}/zarr.json"))
    if marker is not None and (marker.get("attributes") or {}).get(CASES_MARKER) is True:
        return True
    for name in loc.children(CASES_GROUP)[:20]:
        case = _parse(loc.read(f"{CASES_GROUP}/{name}/zarr.json"))
        if case is not None and "files" in (case.get("attributes") or {}):
            return True
    return False


def claim(
    loc: Location,
    *,
    overwrite: bool,
    force_clear: bool,
    announce: Callable[[str], None] | None,
) -> tuple[dict[str, Any] | None, list[str]]:
    """Check that ingest may write to ``loc``, clearing it only with ``force_clear``.

    Returns
    -------
    tuple
        The current root document (None: none, or not JSON) and the objects deleted by
        ``force_clear`` (at most the first 100).

    Raises
    ------
    StoreError
        When ``loc`` holds something other than a ctspine store and not ``force_clear``.
    """
    state, document, foreign = inspect_location(loc)
    if state != "foreign":
        return document, []
    shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
    if not force_clear:
        what = (
            "a file"
            if loc.local_root is not None and loc.local_root.is_file()
            else (f"{len(foreign)} object(s) that are not a ctspine store ({shown})")
        )
        hint = (
            f"{option('overwrite')} replaces only a ctspine store or an empty location"
            if overwrite
            else "ingest never deletes what it did not write"
        )
        target = "it" if what == "a file" else "them"
        raise StoreError(
            f"{loc.text}: holds {what}; {hint}: choose a new or empty location, or pass "
            f"{option('force_clear')} to delete {target}"
        )
    if announce is not None:
        announce(f"--force-clear: deleting {len(foreign)} object(s) at {loc.text}: {shown}")
    if loc.local_root is not None and loc.local_root.is_file():
        loc.local_root.unlink()
    elif loc.local_root is not None:
        import shutil

        for child in loc.local_root.iterdir():
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    else:
        for key in foreign:
            loc.delete(key)
    return None, foreign[:100]


def prepare(
    loc: Location, document: dict[str, Any] | None, attributes: dict[str, Any] | None = None
) -> None:
    """Under the lock: drop what a killed ingest left behind, and lay out a new store.

    A new store's root gets :func:`~ctspine_zarr.io.catalogue.root_attrs` and
    ``attributes`` (the raw tree it is made from) until its first catalogue is published.

    Besides our own folders, that is the ``zarr.<hex>.partial`` file zarr's local store
    leaves at the root when it is killed while checking, by an exclusive write, that the
    root group exists (it does that for the parents of every staged case group).
    """
    loc.delete_prefix(STAGING)
    loc.delete_prefix(TRASH)
    loc.delete_prefix(TMP_DIR)
    for name in loc.children(""):  # zarr's own atomic writes, killed midway (see below)
        if name.startswith("zarr.") and name.endswith(".partial"):
            loc.delete(name)
    cases = _parse(loc.read(f"{CASES_GROUP}/zarr.json"))
    if cases is None or (cases.get("attributes") or {}).get(CASES_MARKER) is not True:
        doc = {"zarr_format": 3, "node_type": "group", "attributes": {CASES_MARKER: True}}
        loc.put(f"{CASES_GROUP}/zarr.json", json.dumps(doc).encode())
    if document is None and loc.read("zarr.json") is None:
        # a new store: readers are told its first ingest did not finish, until it does
        doc = {
            "zarr_format": 3,
            "node_type": "group",
            "attributes": {**root_attrs(), **(attributes or {})},
        }
        loc.put("zarr.json", json.dumps(doc).encode())


def finish(loc: Location) -> None:
    """After the catalogue switched: delete replaced versions and the writer's folder.

    Only what this package writes there is deleted, and the folder itself only when empty
    after the lock is released (another ingest may have taken it since).
    """
    loc.delete_prefix(TRASH)
    loc.delete_prefix(STAGING)
    loc.delete_prefix(TMP_DIR)
    loc.delete(f"{INTERNAL_DIR}/zarr.json")  # zarr's implicit parent group of the staging


def remove_internal_dir(loc: Location) -> None:
    if loc.local_root is not None:
        try:
            (loc.local_root / INTERNAL_DIR).rmdir()
        except OSError:
            pass  # not empty: another ingest's lock, or not there
