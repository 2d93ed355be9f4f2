"""The checks ``verify`` makes of the store itself: metadata, every case's chunks, the catalogue.

:func:`check_consolidated` compares a group's consolidated metadata with its arrays'
``zarr.json``; :func:`check_case` checks one complete case (every shard index, every chunk
decoded, shapes, dtype, label index and headers against its attrs); :func:`check_catalogue`
compares the root catalogue with the complete cases' attrs. Problems go to the
:class:`~ctspine_zarr.write.verifyreport.VerifyReport`, never raised.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Coroutine
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import zarr
from zarr.abc.store import Store
from zarr.buffer import default_buffer_prototype

from ..compat import sync
from ..io.catalogue import build_catalogue, case_members
from ..io.export import header_from_bytes
from ..io.labelindex import index_labels
from ..io.location import Location
from ..io.shardformat import EMPTY_ENTRY, IndexFormat, sharding_config, tiles_per_slice
from ..schema import (
    CASE_ARRAYS,
    CASE_DIM,
    CASES_GROUP,
    IMAGE,
    IMAGE_HEADER,
    LABEL,
    LABEL_HEADER,
    OME_LABEL,
    SLICE_VERTEBRAE,
)
from .verifyreport import ERROR, WARNING, VerifyReport

__all__ = [
    "check_root_cases",
    "catalogue_ids",
    "check_case",
    "check_catalogue",
    "check_consolidated",
    "read_whole",
]

_T = TypeVar("_T")


def read_whole(
    report: VerifyReport,
    case_id: str | None,
    name: str,
    array: zarr.Array,
    kind: str,
    dtype: npt.DTypeLike | None = None,
) -> np.ndarray | None:
    """Read a whole array, or record it as unreadable (a ``kind`` problem) and return None."""
    try:
        return np.asarray(array[...], dtype=dtype)
    except Exception as err:
        report.add(case_id, name, None, f"unreadable: {err}", kind)
        return None


# --------------------------------------------------------------------------------------------
# Consolidated metadata
# --------------------------------------------------------------------------------------------


def _metadata_json(metadata: Any) -> str:
    return json.dumps(metadata.to_dict(), sort_keys=True, default=str)


def check_consolidated(
    report: VerifyReport, case_id: str | None, document: Any, arrays: dict[str, zarr.Array]
) -> None:
    """Compare a group's consolidated metadata with its arrays, as their zarr.json give them.

    Readers open the root and each case through these documents only, so a stale entry
    makes them see an array as it was, not as it is.
    """
    where = f"the consolidated metadata of {'case ' + case_id if case_id else 'the root'}"
    if document is None:
        place = f"in case group {case_id}" if case_id else "at the root"
        report.add(case_id, None, None, f"no consolidated metadata {place}", "metadata")
        return
    listed = {n: m for n, m in document.metadata.items() if getattr(m, "node_type", "") == "array"}
    for name in sorted(set(listed) | set(arrays)):
        if name not in arrays:
            message = f"{where} lists {name}, which is not an array of the group"
        elif name not in listed:
            message = f"{name} is missing from {where}"
        elif _metadata_json(listed[name]) != _metadata_json(arrays[name].metadata):
            message = f"{where} holds stale metadata of {name} (it differs from its zarr.json)"
        else:
            continue
        report.add(case_id, name, None, message, "metadata")


# --------------------------------------------------------------------------------------------
# Cases: shards, chunks, attrs, headers
# --------------------------------------------------------------------------------------------


def check_case(
    report: VerifyReport,
    store: Store,
    case_id: str,
    attrs: dict[str, Any],
    arrays: dict[str, zarr.Array],
) -> None:
    """Check one complete case: its arrays, every shard and chunk, its attrs and headers."""
    for name in CASE_ARRAYS:
        if name not in arrays:
            report.add(case_id, name, None, "array is missing", "missing")
    shape = tuple(attrs.get("shape_zyx") or ())
    for name in (IMAGE, LABEL):
        array = arrays.get(name)
        if array is not None and array.shape != shape:
            message = f"shape {array.shape} differs from shape_zyx {shape}"
            report.add(case_id, name, None, message, "index")
    if IMAGE in arrays:
        image = arrays[IMAGE]
        if str(image.dtype) != attrs.get("image_dtype"):
            message = f"dtype {image.dtype} differs from image_dtype {attrs.get('image_dtype')}"
            report.add(case_id, IMAGE, None, message, "index")
        _check_volume(report, store, case_id, IMAGE, image)
    if LABEL in arrays:
        label = _check_volume(report, store, case_id, LABEL, arrays[LABEL], keep=True)
        if label is not None:
            _check_label_index(report, case_id, attrs, arrays.get(SLICE_VERTEBRAE), label)
    for name in (IMAGE_HEADER, LABEL_HEADER):
        if name in arrays:
            _check_header(report, case_id, name, arrays[name], attrs)
    _check_ome(report, store, case_id, attrs, label if LABEL in arrays else None)


def _check_ome(
    report: VerifyReport,
    store: Store,
    case_id: str,
    attrs: dict[str, Any],
    label: np.ndarray | None,
) -> None:
    """The OME label image holds the label voxels; a compact image is ours alone to read."""
    if str(attrs.get("image_codec", "")).startswith("ctspine_zarr."):
        message = (
            "the image uses the compact codec (JPEG-LS, ctspine_zarr.jpegls): other Zarr "
            "implementations (tensorstore, zarrs, napari, neuroglancer) cannot decode it"
        )
        report.add(case_id, IMAGE, None, message, "codec", WARNING)
    if "ome" not in attrs:
        message = (
            "written by store format 2: no OME-Zarr metadata, so viewers (napari, "
            "neuroglancer) do not see it; an ingest rerun rewrites the case"
        )
        report.add(case_id, None, None, message, "metadata", WARNING)
        return
    try:
        copy = zarr.open_array(store, path=f"{CASES_GROUP}/{case_id}/{OME_LABEL}", mode="r")
    except (FileNotFoundError, zarr.errors.ArrayNotFoundError, KeyError):
        report.add(case_id, OME_LABEL, None, "the OME label image is missing", "missing")
        return
    values = _check_volume(report, store, case_id, OME_LABEL, copy, keep=True)
    if values is not None and label is not None and not np.array_equal(values, label):
        message = "the OME label image differs from label: viewers would show other labels"
        report.add(case_id, OME_LABEL, None, message, "label")


def _check_volume(
    report: VerifyReport,
    store: Store,
    case_id: str,
    name: str,
    array: zarr.Array,
    *,
    keep: bool = False,
) -> np.ndarray | None:
    """Check the shards of a ``(z, y, x)`` array, then decode it one shard at a time.

    Returns the whole array when ``keep`` is true and no problem was found.
    """
    n_problems = len(report.problems)
    n_z = array.shape[0]
    config, shards, inner = sharding_config(array), array.shards, array.chunks
    tiles = [math.ceil(n / c) for n, c in zip(array.shape[1:], inner[1:], strict=True)]
    report.chunks_checked += math.ceil(n_z / inner[0]) * math.prod(tiles)
    index = None
    per_slice = None if shards is None else tiles_per_slice(array.shape, inner, shards)
    if config is not None and shards is not None and per_slice is not None:
        index = IndexFormat.of(config, shards[0] * per_slice)
    skip: set[int] = set()
    if index is None or shards is None or per_slice is None:
        message = "not sharded in tiles of whole axial slices as the format requires"
        report.add(case_id, name, None, message, "metadata")
        step = inner[0]
    else:
        step = shards[0]
        starts = range(0, n_z, step)
        checks = [_check_shard(store, array, index, z0, step, per_slice) for z0 in starts]
        results = sync(_gather(checks))
        for z0, (found, whole) in zip(starts, results, strict=True):
            for z, kind, message in found:
                report.add(case_id, name, z, message, kind, WARNING if kind == "order" else ERROR)
            if whole:
                skip.add(z0)
    data = np.empty(array.shape, dtype=array.dtype) if keep else None
    for z0 in range(0, n_z, step):
        if z0 not in skip:
            _decode(report, case_id, name, array, z0, min(n_z, z0 + step), data)
    return data if len(report.problems) == n_problems else None


async def _gather(tasks: list[Coroutine[Any, Any, _T]]) -> list[_T]:
    return list(await asyncio.gather(*tasks))


def _decode(
    report: VerifyReport,
    case_id: str,
    name: str,
    array: zarr.Array,
    z0: int,
    z1: int,
    data: np.ndarray | None,
) -> None:
    """Decode slices ``z0:z1`` (into ``data``); on a failure, slice by slice to name the bad."""
    try:
        block = np.asarray(array[z0:z1])
    except Exception as err:
        if z1 - z0 == 1:
            report.add(case_id, name, z0, f"chunk unreadable: {err}", "checksum")
        else:
            for z in range(z0, z1):
                _decode(report, case_id, name, array, z, z + 1, data)
        return
    if data is not None:
        data[z0:z1] = block


async def _check_shard(
    store: Store, array: zarr.Array, index: IndexFormat, z0: int, step: int, per_slice: int
) -> tuple[list[tuple[int, str, str]], bool]:
    """Check the shard object of slices ``z0:z0 + step`` (``per_slice`` chunks each), its index.

    Returns the problems found as ``(z, kind, message)``, and whether the whole shard is
    missing or unreadable (so that decoding it would only repeat the problem).
    """
    key = f"{array.path}/" + array.metadata.encode_chunk_key((z0 // step, 0, 0))
    z1 = min(array.shape[0], z0 + step)
    n_chunks = (z1 - z0) * per_slice
    try:
        size = await store.getsize(key)
        prototype = default_buffer_prototype()
        fits = size >= index.size
        buf = await store.get(key, prototype, index.byte_range()) if fits else None
    except FileNotFoundError:
        message = f"shard {key} is missing: {n_chunks} chunk(s), slices {z0}..{z1 - 1}"
        return [(z0, "missing", message)], True
    except Exception as err:
        return [(z0, "unreadable", f"shard {key} unreadable: {err!r}")], True
    if buf is None:
        return [(z0, "missing", f"shard {key}: no index in its {size} bytes")], True
    try:
        entries = index.decode(buf.to_bytes())
    except ValueError:
        return [(z0, "checksum", f"shard {key}: the shard index fails its CRC32C")], True
    low, high = index.data_bounds(size)
    problems = []
    written = entries[:n_chunks]
    if per_slice > 1 and (written[:, 0] != EMPTY_ENTRY).all():
        ends = written[:-1, 0] + written[:-1, 1]
        if (written[1:, 0] != ends).any():  # readable, but a slice is several ranges
            message = f"shard {key}: its tiles are not in C order (a slice is not one range)"
            problems.append((z0, "order", message))
    for i, (offset, nbytes) in enumerate(entries[:n_chunks].tolist()):
        z = z0 + i // per_slice
        if offset == nbytes == EMPTY_ENTRY:
            problems.append((z, "missing", f"chunk of slice {z} is missing from shard {key}"))
        elif offset < low or offset + nbytes > high:
            message = f"chunk of slice {z} lies outside shard {key} ({offset}+{nbytes})"
            problems.append((z, "missing", message))
    return problems, False


def _check_label_index(
    report: VerifyReport,
    case_id: str,
    attrs: dict[str, Any],
    array: zarr.Array | None,
    label: np.ndarray,
) -> None:
    """Compare ``slice_vertebrae`` and the ``vertebrae`` attrs with the label map just read."""
    index = index_labels(label)
    stored = None
    if array is not None:
        stored = read_whole(report, case_id, SLICE_VERTEBRAE, array, "checksum")
    if stored is not None:
        expected = index.slice_vertebrae
        if stored.shape != expected.shape:
            message = f"shape {stored.shape} differs from {expected.shape}"
            report.add(case_id, SLICE_VERTEBRAE, None, message, "index")
        elif not np.array_equal(stored, expected):
            rows = np.flatnonzero((stored != expected).any(axis=1))
            message = f"disagrees with the label map on {rows.size} slice(s)"
            report.add(case_id, SLICE_VERTEBRAE, int(rows[0]), message, "index")
    if attrs.get("vertebrae") != index.to_attrs():
        message = "attr vertebrae (voxel counts, boxes) disagrees with the label map"
        report.add(case_id, LABEL, None, message, "index")
    others = {str(k): v for k, v in index.other_values.items()}
    if attrs.get("other_label_values") != others:
        message = "attr other_label_values disagrees with the label map"
        report.add(case_id, LABEL, None, message, "index")


def _check_header(
    report: VerifyReport, case_id: str, name: str, array: zarr.Array, attrs: dict[str, Any]
) -> None:
    values = read_whole(report, case_id, name, array, "checksum", np.uint8)
    if values is None:
        return
    try:
        header = header_from_bytes(values.tobytes())
    except Exception as err:
        report.add(case_id, name, None, f"not the source's NIfTI header bytes: {err}", "header")
        return
    shape = [int(n) for n in header.get_data_shape()]
    if shape[:3] != list(attrs.get("source_shape") or [])[:3]:
        report.add(case_id, name, None, f"header shape {shape} differs from source_shape", "header")


# --------------------------------------------------------------------------------------------
# Catalogue
# --------------------------------------------------------------------------------------------


def catalogue_ids(report: VerifyReport, root_arrays: dict[str, zarr.Array]) -> list[str] | None:
    """Return the case ids the catalogue lists, or None when it has none (or unreadable)."""
    if CASE_DIM not in root_arrays:
        return None
    ids = read_whole(report, None, CASE_DIM, root_arrays[CASE_DIM], "catalogue")
    return None if ids is None else [str(v) for v in ids.ravel().tolist()]


def check_catalogue(
    report: VerifyReport,
    root_arrays: dict[str, zarr.Array],
    listed: list[str],
    complete: dict[str, dict[str, Any]],
    groups: set[str],
) -> None:
    """Compare the root catalogue arrays with the complete case groups' attrs.

    A listed case whose group is unfinished is reported by the caller.
    """
    for case_id in sorted(set(listed) - groups):
        report.add(case_id, None, None, "listed in the catalogue but no case group", "catalogue")
    for case_id in sorted(set(complete) - set(listed)):
        message = "complete case group missing from the catalogue"
        report.add(case_id, None, None, message, "catalogue")
    common = {c: complete[c] for c in listed if c in complete}
    if not common:
        return
    try:
        expected = build_catalogue(common)
    except Exception as err:
        report.add(None, None, None, f"case attrs do not build a catalogue: {err}", "catalogue")
        return
    ids = [str(c) for c in expected[CASE_DIM].values]
    rows = [listed.index(c) for c in ids]
    for var in map(str, expected.data_vars):
        if var not in root_arrays:
            report.add(None, var, None, "catalogue variable is missing", "catalogue")
            continue
        got = read_whole(report, None, var, root_arrays[var], "catalogue")
        if got is None:
            continue
        if got.shape[:1] != (len(listed),):
            message = f"length {got.shape[:1]} differs from the {len(listed)} cases"
            report.add(None, var, None, message, "catalogue")
            continue
        for case_id, a, b in zip(
            ids, got[rows].tolist(), expected[var].values.tolist(), strict=True
        ):
            if a == b:
                continue
            if var == "split":
                message = (
                    f"catalogue says {a!r}, the case attrs {b!r} (the split file changed "
                    "after the case was ingested)"
                )
                report.add(case_id, var, None, message, "catalogue", WARNING)
            else:
                report.add(
                    case_id, var, None, f"catalogue says {a}, the case attrs {b}", "catalogue"
                )


def check_root_cases(report: VerifyReport, loc: Location, listed: list[str]) -> None:
    """Compare the root's entries of the cases with each case's own ``zarr.json``.

    Generic readers (``xr.open_zarr(store, group=...)``, zarr, DataTree) resolve a case
    through these entries only: a stale one describes other data than the case holds.
    """
    raw = loc.read("zarr.json")
    members = (
        (json.loads(raw).get("consolidated_metadata") or {}).get("metadata") or {} if raw else {}
    )
    prefix = f"{CASES_GROUP}/"
    in_root = {k: v for k, v in members.items() if k == CASES_GROUP or k.startswith(prefix)}
    if listed and not in_root:
        message = (
            "the root's consolidated metadata lists no case (a store of format 2): "
            "xr.open_zarr(store, group=...), zarr and DataTree do not see the cases; "
            "run the ingest again to add them"
        )
        report.add(None, CASES_GROUP, None, message, "metadata", WARNING)
        return
    raws = loc.read_many([f"{prefix}{c}/zarr.json" for c in listed])
    documents = {c: json.loads(raw) for c, raw in zip(listed, raws, strict=True) if raw}
    # a case without its own consolidated metadata is reported by check_consolidated
    for case_id in [c for c, d in documents.items() if "consolidated_metadata" not in d]:
        del documents[case_id]
        in_root = {k: v for k, v in in_root.items() if k.split("/")[1:2] != [case_id]}
    expected = case_members(documents)
    stale: dict[str, str] = {}
    for key in sorted(set(in_root) | set(expected)):
        if in_root.get(key) != expected.get(key):
            where = (
                "lists" if key not in expected else "lacks" if key not in in_root else "differs on"
            )
            owner = key.split("/")[1] if "/" in key else ""
            stale.setdefault(owner, f"the root's consolidated metadata {where} {key}")
    for owner, message in sorted(stale.items()):
        report.add(
            owner or None,
            None,
            None,
            f"{message}: generic readers of the root see this case as it is not",
            "metadata",
        )
