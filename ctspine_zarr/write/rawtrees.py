"""Which raw trees a store was made from, and the guard against mixing in another one.

A store records, in its root attribute ``raw_trees``
(:data:`~ctspine_zarr.schema.RAW_TREES_KEY`), one entry per raw tree ingested into it::

    {"location": "file:///data/ctspine/raw",
     "split_file": {"sha256": "9f2c...", "size": 21000},
     "sources": ["COLONOG", "COVID-19", "HNSCC-3DCT-RT", "MSD-T10"],
     "cases": 1005, "case_ids_sha256": "4b1e..."}

``location`` is where the tree is (an absolute ``file://`` path or ``protocol://bucket/path``;
never a credential), ``split_file`` the SHA-256 and size of its ``metadata/data_split.txt``
(None without one), ``sources`` the source folders of its cases, ``cases`` the number of
image/label pairs found and ``case_ids_sha256`` the SHA-256 of their ids, sorted, one per
line.

An ingest's tree is a recorded tree when it is at the same location (a resume, a repair, an
edited split file, more files downloaded since) or holds the same case ids with the same
split file (the tree was moved). Any other tree is refused before anything is written,
unless ``add`` is given: it is then recorded beside the others. ``overwrite``, which leaves
only the new tree's cases in the store, replaces the record. A store without the record (an
ingest older than it) takes any tree, and records it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from typing import Any, Final

from ..errors import TreeMismatchError, option
from ..io.layout import RawTree
from ..io.location import normalise
from ..schema import CASES_GROUP, RAW_TREES_KEY

__all__ = ["recorded_trees", "same_tree", "tree_record", "trees_after_ingest"]

#: Hex digits of a SHA-256 shown in messages.
_SHOWN: Final = 12


def tree_record(
    tree: RawTree, raw: str | os.PathLike[str], raw_storage_options: dict[str, Any] | None
) -> dict[str, Any]:
    """The record of a raw tree (see the module's docstring), JSON-able."""
    ids = sorted(case.case_id for case in tree.cases)
    sources = {case.source for case in tree.cases} | {case.source for case, _ in tree.problems}
    split = None
    if tree.split_sha256 is not None:
        split = {"sha256": tree.split_sha256, "size": tree.split_size}
    return {
        "location": normalise(raw, raw_storage_options),
        "split_file": split,
        "sources": sorted(sources),
        "cases": len(ids),
        "case_ids_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
    }


def recorded_trees(document: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The trees a root document records (empty: none recorded, an older store)."""
    attrs = (document or {}).get("attributes") or {}
    found = attrs.get(RAW_TREES_KEY)
    if not isinstance(found, list):
        return []
    return [dict(entry) for entry in found if isinstance(entry, dict) and "location" in entry]


def _split_hash(record: Mapping[str, Any]) -> str | None:
    split = record.get("split_file")
    return str(split.get("sha256")) if isinstance(split, dict) else None


def same_tree(recorded: Mapping[str, Any], record: Mapping[str, Any]) -> bool:
    """Whether ``record`` is the tree ``recorded``: same place, or same cases and split file."""
    if recorded.get("location") == record.get("location"):
        return True
    return recorded.get("case_ids_sha256") == record.get("case_ids_sha256") and _split_hash(
        recorded
    ) == _split_hash(record)


def trees_after_ingest(
    document: Mapping[str, Any] | None,
    record: dict[str, Any],
    *,
    add: bool,
    overwrite: bool,
    store: str,
    case_ids: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """The store's record of raw trees once ``record``'s tree is ingested into it.

    Parameters
    ----------
    document
        The store's root document (None: a new store, or a damaged root).
    record
        The tree being ingested (:func:`tree_record`).
    add
        Add a tree other than the recorded ones.
    overwrite
        The ingest leaves only this tree's cases: its record replaces the others.
    store
        The store, for the message.
    case_ids
        The tree's case ids, for the message (how many the store holds already).

    Raises
    ------
    TreeMismatchError
        For a tree other than the recorded ones, without ``add``: the message says how the
        trees differ, the hint how to add it anyway.
    """
    recorded = recorded_trees(document)
    if overwrite or not recorded:
        return [record]
    if any(same_tree(old, record) for old in recorded):
        kept: list[dict[str, Any]] = []
        for old in recorded:  # the first entry of this tree is updated in place
            if not same_tree(old, record):
                kept.append(old)
            elif record not in kept:
                kept.append(record)
        return kept
    if not add:
        raise TreeMismatchError(
            f"{store}: made from another raw tree ({_places(recorded)}); "
            f"RAW {_place(record)} differs: {_difference(recorded, record, document, case_ids)}",
            f"pass {option('add')} to add RAW's cases to the store (a case id in both is "
            "replaced by RAW's), or ingest RAW into a new store",
        )
    return [*recorded, record]


def _place(record: Mapping[str, Any]) -> str:
    return str(record.get("location", "?")).removeprefix("file://")


def _places(records: Iterable[Mapping[str, Any]]) -> str:
    return ", ".join(_place(r) for r in records)


def _stored_ids(document: Mapping[str, Any] | None) -> set[str]:
    """The case ids the root document lists (its consolidated metadata's case groups)."""
    members = ((document or {}).get("consolidated_metadata") or {}).get("metadata") or {}
    prefix = f"{CASES_GROUP}/"
    return {
        name[len(prefix) :] for name in members if name.startswith(prefix) and name.count("/") == 1
    }


def _difference(
    recorded: list[dict[str, Any]],
    record: dict[str, Any],
    document: Mapping[str, Any] | None,
    case_ids: Iterable[str],
) -> str:
    """How ``record``'s tree differs from the recorded ones, in a few clauses."""
    parts = []
    old_splits = list(dict.fromkeys(_split_hash(r) for r in recorded))
    new_split = _split_hash(record)
    if new_split not in old_splits or len(old_splits) > 1:
        shown = ", ".join(_short(h) for h in old_splits)
        parts.append(f"its split file is {_short(new_split)}, the store's {shown}")
    old_sources = {s for r in recorded for s in r.get("sources") or ()}
    new_sources = set(record.get("sources") or ())
    if new_sources - old_sources:
        parts.append(f"sources only in RAW: {', '.join(sorted(new_sources - old_sources))}")
    if old_sources - new_sources:
        only = ", ".join(sorted(old_sources - new_sources))
        parts.append(f"sources only in the store's tree: {only}")
    old_cases = sum(int(r.get("cases") or 0) for r in recorded)
    stored = _stored_ids(document)
    already = f" ({len(stored & set(case_ids))} of them in the store already)" if stored else ""
    parts.append(f"{record.get('cases', 0)} cases in RAW{already}, {old_cases} in the store's tree")
    return "; ".join(parts)


def _short(digest: str | None) -> str:
    return f"sha256 {digest[:_SHOWN]}" if digest else "missing"
