"""A cheap check that a stored case is intact, without decoding its voxels.

A rerun of ``ingest`` skips a case only when its sources are unchanged *and* this check
passes: every array's ``zarr.json`` parses, every shard of ``image`` and ``label`` exists,
its index passes its CRC32C, equals the index the case metadata records and lists every
slice, and every chunk of the small arrays exists. That costs one small read per shard and
per document (``ingest --repair`` decodes everything instead, through ``verify``).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import zarr

from ..io.location import Location
from ..io.slicereader import EMPTY_ENTRY, ZReader
from ..schema import (
    CASE_ARRAYS,
    CASES_GROUP,
    OME_LABEL,
    SHARD_CRC_KEY,
    SMALL_ARRAYS,
    VOLUME_ARRAYS,
)

__all__ = ["case_problem"]


def case_problem(loc: Location, case_id: str) -> str | None:
    """Return what is damaged in one complete case group, or None when it is intact."""
    prefix = f"{CASES_GROUP}/{case_id}"
    documents = loc.read_many([f"{prefix}/{name}/zarr.json" for name in CASE_ARRAYS])
    for name, raw in zip(CASE_ARRAYS, documents, strict=True):
        if raw is None:
            return f"{prefix}/{name}/zarr.json is missing"
        try:
            json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            return f"{prefix}/{name}/zarr.json is not valid JSON ({err})"
    try:
        group = zarr.open_group(loc.store, path=prefix, mode="r", use_consolidated=True)
        if "ome" not in group.attrs:
            return f"{prefix}: written by store format 2 (no OME-Zarr metadata)"
        arrays = {name: group[name] for name in (*CASE_ARRAYS, OME_LABEL)}
    except Exception as err:  # noqa: BLE001 - whatever it is, the case must be rewritten
        return f"{prefix}: metadata unreadable ({type(err).__name__}: {err})"
    checksums: Any = group.attrs.get(SHARD_CRC_KEY) or {}
    for name in (*VOLUME_ARRAYS, OME_LABEL):
        array = arrays[name]
        assert isinstance(array, zarr.Array)
        problem = _shards_problem(loc, f"{prefix}/{name}", array, checksums.get(name))
        if problem:
            return problem
    for name in SMALL_ARRAYS:
        array = arrays[name]
        assert isinstance(array, zarr.Array)
        if array.size and not all(loc.exists(key) for key in _chunk_keys(prefix, name, array)):
            return f"{prefix}/{name}: a chunk is missing"
    return None


def _chunk_keys(prefix: str, name: str, array: zarr.Array) -> list[str]:
    shape = array.shape
    chunks = array.chunks
    counts = [max(1, -(-s // c)) for s, c in zip(shape, chunks, strict=True)]
    encode: Any = array.metadata.encode_chunk_key
    return [f"{prefix}/{name}/{encode(tuple(i))}" for i in np.ndindex(*counts)]


def _shards_problem(
    loc: Location, where: str, array: zarr.Array, checksums: list[int] | None
) -> str | None:
    reader = ZReader(array, index_checksums=checksums, where=where)
    layout = reader.layout
    if layout is None:
        return None  # not the store's own layout: nothing cheap to check
    n_z = array.shape[0]
    n_shards = -(-n_z // layout.shard_z)
    if checksums is not None and len(checksums) != n_shards:
        return f"{where}: the metadata records {len(checksums)} shard(s), the array has {n_shards}"
    if not layout.index_at_end:
        return None
    keys = [layout.key(s) for s in range(n_shards)]
    tails = loc.read_tails(keys, layout.index_size)
    for shard, (key, (raw, size)) in enumerate(zip(keys, tails, strict=True)):
        if raw is None or len(raw) < layout.index_size:
            return f"{key}: shard missing or truncated"
        try:
            reader.check_index(shard, raw)
            table = layout.decode_index(raw)
        except Exception as err:  # noqa: BLE001 - a checksum or decode failure
            return f"{key}: shard index unreadable or replaced ({type(err).__name__}: {err})"
        rows = min(layout.shard_z, n_z - shard * layout.shard_z) * layout.per_slice
        offsets, lengths = table[:rows, 0], table[:rows, 1]
        if (offsets == EMPTY_ENTRY).any():
            return f"{key}: a slice's chunk is missing from the shard"
        if size is not None and int((offsets + lengths).max()) > size - layout.index_size:
            return f"{key}: truncated (chunks past the end of the shard)"
    return None
