"""The root catalogue: one row per complete case, built from the case groups' attrs."""

from __future__ import annotations

import json
import warnings
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import xarray as xr
import zarr
from zarr.buffer import default_buffer_prototype

from .._version import __version__
from ..compat import sync
from ..schema import (
    AXIS_DIM,
    CASE_DIM,
    CASES_GROUP,
    CASES_MARKER,
    CATALOGUE_CRC_KEY,
    CATALOGUE_KEY_ENCODINGS,
    COMPLETE_KEY,
    FORMAT_KEY,
    FORMAT_VERSION,
    GENERATION_KEY,
    INTERNAL_DIR,
    SPLITS,
    VERTEBRA_DIM,
    VERTEBRA_NAME,
    VOLUME_ARRAYS,
    VOLUME_DIMS,
)
from ..vertebrae import VERTEBRA_LABELS, VERTEBRA_NAMES
from .labelindex import boxes_from_attrs
from .location import Location
from .store import refresh_listings
from .vertebracoords import LABEL_ATTRS, NAME_ATTRS

__all__ = [
    "ROOT_CASE_ATTRS",
    "CaseScan",
    "build_catalogue",
    "case_members",
    "consolidate",
    "publish_catalogue",
    "replace_root_attributes",
    "root_attrs",
    "scan_cases",
    "withdraw_case_members",
]


def root_attrs() -> dict[str, Any]:
    """Return the attrs every ctspine store root carries."""
    return {
        FORMAT_KEY: FORMAT_VERSION,
        "title": "CTSpine1K as a slice-chunked Zarr store",
        "created_by": f"ctspine_zarr {__version__}",
        "vertebra_names": {str(k): v for k, v in VERTEBRA_NAMES.items()},
        "splits": list(SPLITS),
        "orientation": "closest canonical RAS+, arrays indexed [z, y, x]",
    }


@dataclass
class CaseScan:
    """The case groups a store holds, by state."""

    #: ``{case_id: attrs}`` of the groups marked complete
    complete: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: ids of groups whose ``zarr.json`` is missing or not marked complete (unfinished writes)
    unfinished: set[str] = field(default_factory=set)
    #: ``{case_id: problem}`` of groups whose ``zarr.json`` does not parse
    damaged: dict[str, str] = field(default_factory=dict)
    #: ``{case_id: parsed zarr.json}`` of the complete groups
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)


def scan_cases(loc: Location) -> CaseScan:
    """Read every case group's ``zarr.json`` (one read each, concurrent on remote stores).

    Unlike a zarr walk, a document that does not parse is reported, not raised: the
    ingest rewrites that case.
    """
    scan = CaseScan()
    names = [n for n in loc.children(CASES_GROUP) if n != "zarr.json"]
    documents = loc.read_many([f"{CASES_GROUP}/{n}/zarr.json" for n in names])
    for name, raw in zip(names, documents, strict=True):
        if raw is None:
            scan.unfinished.add(name)
            continue
        try:
            document = json.loads(raw)
            attrs = document.get("attributes") or {}
        except (UnicodeDecodeError, json.JSONDecodeError, AttributeError) as err:
            scan.damaged[name] = f"{CASES_GROUP}/{name}/zarr.json is not valid JSON ({err})"
            continue
        if attrs.get(COMPLETE_KEY) is True:
            scan.complete[name] = attrs
            scan.documents[name] = document
        else:
            scan.unfinished.add(name)
    return scan


def build_catalogue(
    rows: Mapping[str, Mapping[str, Any]], *, splits: Mapping[str, str] | None = None
) -> xr.Dataset:
    """Build the catalogue Dataset from case attrs.

    Parameters
    ----------
    rows
        ``{case_id: case group attrs}``.
    splits
        Split per case id overriding the stored one (the current split file).

    Returns
    -------
    xarray.Dataset
        On dims ``case``, ``vertebra`` and ``axis``; the coordinate ``vertebra_name`` names
        each ``vertebra`` value (not indexed: what is written to the store).
    """
    ids = sorted(rows)
    splits = splits or {}
    n = len(ids)
    n_vert = len(VERTEBRA_LABELS)

    def column(key: str, dtype: Any) -> np.ndarray:
        return np.array([rows[c][key] for c in ids], dtype=dtype).reshape(n)

    spacing = np.array([rows[c]["spacing_zyx"] for c in ids], dtype=np.float64).reshape(n, 3)
    shape = np.array([rows[c]["shape_zyx"] for c in ids], dtype=np.int32).reshape(n, 3)
    counts = np.zeros((n, n_vert), dtype=np.int64)
    start = np.full((n, n_vert, 3), -1, dtype=np.int32)
    stop = np.full((n, n_vert, 3), -1, dtype=np.int32)
    for i, c in enumerate(ids):
        counts[i], start[i], stop[i] = boxes_from_attrs(rows[c]["vertebrae"])
    split = np.array([splits.get(c, rows[c]["split"]) for c in ids], dtype=object)
    present = counts > 0
    data_vars = {
        "split": ((CASE_DIM,), split, {"long_name": "split (Hugging Face names)"}),
        "source": ((CASE_DIM,), column("source", object), {"long_name": "source collection"}),
        "n_slices": ((CASE_DIM,), shape[:, 0], {"long_name": "axial slices"}),
        "n_y": ((CASE_DIM,), shape[:, 1], {"long_name": "rows per slice (y)"}),
        "n_x": ((CASE_DIM,), shape[:, 2], {"long_name": "columns per slice (x)"}),
        "spacing_z": ((CASE_DIM,), spacing[:, 0], {"units": "mm"}),
        "spacing_y": ((CASE_DIM,), spacing[:, 1], {"units": "mm"}),
        "spacing_x": ((CASE_DIM,), spacing[:, 2], {"units": "mm"}),
        "image_dtype": ((CASE_DIM,), column("image_dtype", object), {}),
        "image_codec": (
            (CASE_DIM,),
            np.array([rows[c].get("image_codec", "unknown") for c in ids], dtype=object),
            {"long_name": "image chunk codec (ctspine_zarr.jpegls needs ctspine-zarr[compact])"},
        ),
        "has_nonfinite": ((CASE_DIM,), column("has_nonfinite", bool), {}),
        "n_vertebrae": ((CASE_DIM,), present.sum(axis=1).astype(np.int16), {}),
        "has_vertebra": ((CASE_DIM, VERTEBRA_DIM), present, {}),
        "voxel_count": ((CASE_DIM, VERTEBRA_DIM), counts, {"long_name": "voxels per label"}),
        "bbox_start": (
            (CASE_DIM, VERTEBRA_DIM, AXIS_DIM),
            start,
            {"long_name": "first voxel index of the label's box, -1 if absent"},
        ),
        "bbox_stop": (
            (CASE_DIM, VERTEBRA_DIM, AXIS_DIM),
            stop,
            {"long_name": "one past the last voxel index of the label's box, -1 if absent"},
        ),
    }
    coords = {
        CASE_DIM: np.array(ids, dtype=object),
        VERTEBRA_DIM: (
            (VERTEBRA_DIM,),
            np.array(VERTEBRA_LABELS, dtype=np.uint8),
            dict(LABEL_ATTRS),
        ),
        # stored for every Zarr reader; ctspine_zarr.open adds it to older stores too
        VERTEBRA_NAME: (
            (VERTEBRA_DIM,),
            np.array([VERTEBRA_NAMES[v] for v in VERTEBRA_LABELS], dtype=object),
            dict(NAME_ATTRS),
        ),
        AXIS_DIM: np.array(VOLUME_DIMS, dtype=object),
    }
    return xr.Dataset(data_vars, coords=coords, attrs=root_attrs())


def publish_catalogue(
    loc: Location,
    catalogue: xr.Dataset,
    *,
    previous: Mapping[str, Any] | None = None,
    cases: Mapping[str, Mapping[str, Any]] | None = None,
) -> int:
    """Make ``catalogue`` the store's catalogue; a reader sees the old one or the new one.

    The arrays' chunks are written under the chunk key encoding of the new generation
    (:data:`~ctspine_zarr.schema.CATALOGUE_KEY_ENCODINGS` in turn), so they never
    overwrite the chunks of the two catalogues before; then the root ``zarr.json``, holding
    the consolidated metadata, the generation and every chunk's CRC-32, is replaced in one
    atomic write. Arrays of the previous catalogue that the new one lacks are deleted last.
    Nothing is deleted before the switch.

    Parameters
    ----------
    loc
        The writable store.
    catalogue
        The catalogue Dataset (:func:`build_catalogue`).
    previous
        The root document being replaced (None: unreadable or absent).
    cases
        ``{case_id: the case group's zarr.json}`` of the complete cases, listed after the
        catalogue in the root's consolidated metadata (:func:`case_members`).

    Returns
    -------
    int
        The new generation.
    """
    attrs = (previous or {}).get("attributes") or {}
    old_generation = attrs.get(GENERATION_KEY)
    generation = old_generation + 1 if isinstance(old_generation, int) else 1
    encoding = CATALOGUE_KEY_ENCODINGS[generation % len(CATALOGUE_KEY_ENCODINGS)]
    staged = zarr.storage.MemoryStore()
    if catalogue.sizes.get(CASE_DIM, 0) > 0:
        names = list(catalogue.variables)
        catalogue.to_zarr(
            staged,
            mode="w",
            consolidated=False,
            zarr_format=3,
            encoding={name: {"chunk_key_encoding": encoding} for name in names},
        )
    memory = Location.resolve(staged)
    objects = {key: memory.read(key) or b"" for key in memory.keys()}
    members: dict[str, Any] = {}
    checksums: dict[str, int] = {}
    for key, data in sorted(objects.items()):
        if key == "zarr.json":
            continue
        name, _, rest = key.partition("/")
        if rest == "zarr.json":
            members[name] = json.loads(data)
        else:
            checksums[key] = zlib.crc32(data)
        loc.put(key, data)
    document = {
        "zarr_format": 3,
        "node_type": "group",
        "attributes": {
            **dict(catalogue.attrs),
            GENERATION_KEY: generation,
            CATALOGUE_CRC_KEY: checksums,
        },
        "consolidated_metadata": {
            "kind": "inline",
            "must_understand": False,
            "metadata": {**members, **case_members(cases or {})},
        },
    }
    loc.put("zarr.json", json.dumps(document, separators=(",", ":"), allow_nan=False).encode())
    old_members = ((previous or {}).get("consolidated_metadata") or {}).get("metadata") or {}
    for name in set(old_members) - set(members):
        if "/" not in name and name not in (CASES_GROUP,):
            loc.delete_prefix(name)
    return generation


#: The case attributes the root repeats for generic readers (the rest: the case's own document).
ROOT_CASE_ATTRS: Final = ("case_id", "source", "split", "shape_zyx", "spacing_zyx", "affine")


def case_members(cases: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The root's consolidated-metadata entries of the case groups, after the catalogue's.

    Generic readers (``xr.open_zarr(store, group="cases/<id>")``, ``zarr.open_group(store)
    ["cases/<id>/image"]``, ``xr.open_datatree``) resolve a case through the root's
    consolidated metadata, which zarr trusts to be complete. So the root lists the
    ``cases`` group (exactly ``{CASES_MARKER: true}``: readers of the catalogue cut the
    document there, see :func:`ctspine_zarr.io.snapshot.catalogue_head`), then every case
    group with the attributes of :data:`ROOT_CASE_ATTRS` and its ``image`` and ``label``
    arrays, as the case's own ``zarr.json`` gives them. That halves the document against
    listing every attribute and array (``docs/format.md``, "The root document"); the case's
    other arrays and attributes are in its own document (``xr.open_zarr(f"{store}/cases/<id>")``).
    """
    if not cases:
        return {}
    members: dict[str, Any] = {
        CASES_GROUP: {"zarr_format": 3, "node_type": "group", "attributes": {CASES_MARKER: True}}
    }
    for case_id in sorted(cases):
        document = cases[case_id]
        attrs = document.get("attributes") or {}
        prefix = f"{CASES_GROUP}/{case_id}"
        members[prefix] = {
            "zarr_format": 3,
            "node_type": "group",
            "attributes": {key: attrs[key] for key in ROOT_CASE_ATTRS if key in attrs},
        }
        nested = (document.get("consolidated_metadata") or {}).get("metadata") or {}
        for name in VOLUME_ARRAYS:
            if name in nested:
                members[f"{prefix}/{name}"] = nested[name]
    return members


def replace_root_attributes(loc: Location, attributes: Mapping[str, Any]) -> None:
    """Replace the root document's attributes in one atomic write, keeping its entries.

    The consolidated metadata (catalogue first, then the cases) is written back in the same
    order, so readers still find the catalogue's head (:func:`case_members`).
    """
    _rewrite_root(loc, attributes=attributes)


def withdraw_case_members(loc: Location, case_ids: Iterable[str]) -> None:
    """Drop the root's entries of cases about to be rewritten, in one atomic write.

    A generic reader resolves a case through the root's entries, with no check of its own:
    once the case's new version is switched in, the old entries would describe other data.
    Until the next catalogue lists the new version, such a reader gets a KeyError for the
    case instead. Our own readers open each case through its own document.
    """
    prefixes = tuple(f"{CASES_GROUP}/{c}" for c in case_ids)
    if prefixes:
        _rewrite_root(loc, drop=prefixes)


def _rewrite_root(
    loc: Location,
    *,
    attributes: Mapping[str, Any] | None = None,
    drop: tuple[str, ...] = (),
) -> None:
    raw = loc.read("zarr.json")
    document: dict[str, Any] = json.loads(raw) if raw else {"zarr_format": 3, "node_type": "group"}
    consolidated: dict[str, Any] | None = document.pop("consolidated_metadata", None)
    if attributes is not None:
        document["attributes"] = dict(attributes)
    if consolidated is not None:
        members = consolidated.get("metadata") or {}
        kept = {
            name: node
            for name, node in members.items()
            if not any(name == p or name.startswith(p + "/") for p in drop)
        }
        if attributes is None and len(kept) == len(members):
            return  # nothing to change
        document["consolidated_metadata"] = {**consolidated, "metadata": kept}  # last
    elif attributes is None:
        return
    loc.put("zarr.json", json.dumps(document, separators=(",", ":"), allow_nan=False).encode())


def consolidate(group: zarr.Group, *, attributes: Mapping[str, Any] | None = None) -> None:
    """Write ``group``'s ``zarr.json`` with the consolidated metadata of every node below it.

    A case group consolidates its arrays and its OME ``labels`` sub-groups (flattened keys:
    ``labels/vertebrae/0``); the root lists the cases itself (:func:`case_members`).
    Opening a case then reads one document. With ``attributes``, the group's attributes
    are replaced in the same single write (an ingest marks a case complete that way).
    """
    prototype = default_buffer_prototype()
    refresh_listings(group.store)
    members = {}
    with warnings.catch_warnings():  # the writer's folder (.ctspine) is no Zarr node
        warnings.filterwarnings("ignore", f"Object at {INTERNAL_DIR} is not recognized")
        nodes = sorted(group.members(max_depth=None), key=lambda item: item[0])
    for name, node in nodes:
        entry = json.loads(node.metadata.to_buffer_dict(prototype)["zarr.json"].to_bytes())
        entry.pop("consolidated_metadata", None)
        members[name] = entry
    document = json.loads(group.metadata.to_buffer_dict(prototype)["zarr.json"].to_bytes())
    if attributes is not None:
        document["attributes"] = dict(attributes)
    document["consolidated_metadata"] = {
        "kind": "inline",
        "must_understand": False,
        "metadata": members,
    }
    payload = json.dumps(document, separators=(",", ":"), allow_nan=False).encode()
    key = f"{group.path}/zarr.json" if group.path else "zarr.json"
    sync(group.store.set(key, prototype.buffer.from_bytes(payload)))
