"""The checks ``verify`` makes of a case's downsampled levels (``ctspine-zarr pyramid``).

A case whose attribute ``levels`` lists factors must hold, for each, the image and label
level arrays that :mod:`ctspine_zarr.io.levels` lays out, listed in the case's consolidated
metadata exactly as their own ``zarr.json`` say, with the shape of the case divided by the
factor (rounded up), the image's dtype and uint8; every shard must exist and its index list
every inner chunk (written empty chunks included), and every chunk must decode (its CRC32C
checked). The values are not recomputed from the full resolution.
"""

from __future__ import annotations

import json
import math
from itertools import product
from typing import Any

import numpy as np
import zarr
from zarr.abc.store import Store
from zarr.buffer import default_buffer_prototype

from ..compat import sync
from ..io.levels import LEVEL_FACTORS, LEVELS_KEY, level_paths, level_shape
from ..io.shardformat import EMPTY_ENTRY, IndexFormat, sharding_config
from .verifyreport import VerifyReport

__all__ = ["check_levels"]


def check_levels(
    report: VerifyReport, store: Store, case_id: str, group: zarr.Group, attrs: dict[str, Any]
) -> None:
    """Check the levels a complete case lists (nothing when it lists none).

    Parameters
    ----------
    report
        Where problems go.
    store
        The store.
    case_id
        The case.
    group
        The case group opened through its consolidated metadata.
    attrs
        The case's attributes.
    """
    listed = attrs.get(LEVELS_KEY)
    if listed is None:
        return
    if not isinstance(listed, list) or not set(listed) <= set(LEVEL_FACTORS):
        message = f"attr {LEVELS_KEY} is {listed!r}, not a list of factors of {LEVEL_FACTORS}"
        report.add(case_id, None, None, message, "metadata")
        return
    shape = tuple(int(n) for n in attrs.get("shape_zyx") or ())
    for factor in listed:
        paths = _paths(group, factor)
        dtypes = (str(attrs.get("image_dtype")), "uint8")
        for path, dtype in zip(paths, dtypes, strict=True):
            _check_array(report, store, case_id, group, path, level_shape(shape, factor), dtype)


def _paths(group: zarr.Group, factor: int) -> tuple[str, str]:
    """The level's paths: the label in the OME label image when the case lists that."""
    members = group.metadata.consolidated_metadata
    flat = members.flattened_metadata if members is not None else {}
    image, label = level_paths(factor, label_image=True)
    return (image, label) if label in flat else level_paths(factor, label_image=False)


def _check_array(
    report: VerifyReport,
    store: Store,
    case_id: str,
    group: zarr.Group,
    path: str,
    shape: tuple[int, ...],
    dtype: str,
) -> None:
    where = f"{group.path}/{path}"
    try:
        listed = group[path]
    except KeyError:
        message = "listed in attr levels but missing from the case's consolidated metadata"
        report.add(case_id, path, None, message, "metadata")
        return
    try:
        array = zarr.open_array(store, path=where, mode="r", zarr_format=3)
    except Exception as err:
        report.add(case_id, path, None, f"level array missing or unreadable: {err}", "missing")
        return
    assert isinstance(listed, zarr.Array)
    if _json(listed.metadata) != _json(array.metadata):
        message = "the case's consolidated metadata holds stale metadata of this level"
        report.add(case_id, path, None, message, "metadata")
    if tuple(array.shape) != shape or str(array.dtype) != dtype:
        message = f"shape {array.shape} dtype {array.dtype}, expected {shape} {dtype}"
        report.add(case_id, path, None, message, "index")
        return
    problem = _shard_problem(store, array, where)
    if problem is not None:
        report.add(case_id, path, None, problem, "missing")
        return
    chunks = zip(shape, array.chunks, strict=True)
    report.chunks_checked += math.prod(math.ceil(n / c) for n, c in chunks)
    try:
        np.asarray(array[...])
    except Exception as err:
        report.add(case_id, path, None, f"chunk unreadable: {err}", "checksum")


def _json(metadata: Any) -> str:
    return json.dumps(metadata.to_dict(), sort_keys=True, default=str)


def _shard_problem(store: Store, array: zarr.Array, where: str) -> str | None:
    """A missing shard, a bad index or an absent chunk of a level array, else None."""
    config, shards = sharding_config(array), array.shards
    if config is None or shards is None:
        return None  # plain chunks: a missing one reads as fill values, like zarr's
    per_shard = [s // c for s, c in zip(shards, array.chunks, strict=True)]
    index = IndexFormat.of(config, math.prod(per_shard))
    if index is None:
        return None
    grid = [math.ceil(n / s) for n, s in zip(array.shape, shards, strict=True)]
    for coords in product(*(range(n) for n in grid)):
        key = f"{where}/" + array.metadata.encode_chunk_key(coords)
        buf = sync(store.get(key, default_buffer_prototype(), index.byte_range()))
        if buf is None:
            return f"shard {key} is missing"
        try:
            entries = index.decode(buf.to_bytes())
        except ValueError:
            return f"shard {key}: the shard index fails its CRC32C"
        inside = _inner_inside(array.shape, shards, array.chunks, coords, per_shard)
        if any(int(entries[i, 0]) == EMPTY_ENTRY for i in inside):
            return f"shard {key}: a chunk is missing from its index"
    return None


def _inner_inside(
    shape: tuple[int, ...],
    shards: tuple[int, ...],
    chunks: tuple[int, ...],
    coords: tuple[int, ...],
    per_shard: list[int],
) -> list[int]:
    """Index entries (C order) of the inner chunks of a shard that overlap the array."""
    ranges = []
    for n, s, c, k, m in zip(shape, shards, chunks, coords, per_shard, strict=True):
        ranges.append([i for i in range(m) if k * s + i * c < n])
    return [int(np.ravel_multi_index(ix, per_shard)) for ix in product(*ranges)]
