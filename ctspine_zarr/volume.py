"""One case as a lazy xarray Dataset: image and label on ``(z, y, x)`` in mm."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
import zarr
from dask.base import tokenize
from zarr.abc.store import Store

from .labelindex import boxes_from_attrs
from .schema import (
    AXIS_DIM,
    IMAGE,
    LABEL,
    SLICE_VERTEBRAE,
    VERTEBRA_DIM,
    VERTEBRA_LABELS,
    VOLUME_DIMS,
)
from .store import cache_key, case_group, register_cache

__all__ = ["axis_coordinates", "open_volume"]


def _reset_dask_thread_pools() -> None:
    """Forget dask's thread pools in a forked child: their threads did not survive the fork.

    Without this, computing a lazy volume in a fork-started worker (a PyTorch DataLoader or
    a multiprocessing pool) after the parent computed one waits forever on the parent's
    pool. zarr and fsspec reset their own event loops after a fork the same way.
    """
    import dask.threaded

    dask.threaded.pools_lock = threading.Lock()
    dask.threaded.default_pool = None
    dask.threaded.pools.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_dask_thread_pools)


def axis_coordinates(affine: np.ndarray, shape_zyx: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Return the ``z``, ``y``, ``x`` coordinates (mm) of voxel centres.

    For an axis-aligned canonical affine these are the world RAS+ positions along each
    axis; for an oblique one, ``origin + index * spacing`` along each axis (the exact world
    position of a voxel is ``affine @ [x, y, z, 1]``).
    """
    affine = np.asarray(affine, dtype=float)
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    coords = {}
    for axis, name in enumerate(("x", "y", "z")):
        n = shape_zyx[2 - axis]
        coords[name] = affine[axis, 3] + np.arange(n) * spacing[axis]
    return coords


def _lazy(array: zarr.Array, name: str, chunks_z: int) -> da.Array:
    chunks = (chunks_z, *array.shape[1:]) if array.ndim == 3 else array.shape
    return da.from_array(
        array,
        chunks=chunks,
        name=name,
        lock=False,
        asarray=False,
        inline_array=True,
        meta=np.empty((0,) * array.ndim, dtype=array.dtype),
    )


#: Lazy volumes built in this process (graph construction costs ~10 ms; a slice read ~2 ms).
_volumes: OrderedDict[tuple, xr.Dataset] = OrderedDict()
_volumes_lock = threading.Lock()
_MAX_CACHED_VOLUMES = 256
register_cache(_volumes)


def open_volume(
    location: str | os.PathLike | Store,
    case_id: str,
    *,
    storage_options: dict[str, Any] | None = None,
) -> xr.Dataset:
    """Open one case lazily: reading values reads only the chunks they lie in.

    Parameters
    ----------
    location
        Path or fsspec URL of the store.
    case_id
        The case.
    storage_options
        fsspec options for a URL.

    Returns
    -------
    xarray.Dataset
        ``image`` and ``label`` on ``(z, y, x)`` (dask), ``slice_vertebrae`` on
        ``(z, vertebra)``, ``bbox_start``/``bbox_stop`` on ``(vertebra, axis)``; coordinates
        in mm; ``attrs["affine"]`` is the 4x4 canonical affine.
    """
    # a shallow copy: the caller may change attrs or variables without touching the cache
    return cached_volume(location, case_id, storage_options).copy(deep=False)


def cached_volume(
    location: str | os.PathLike | Store, case_id: str, storage_options: dict[str, Any] | None
) -> xr.Dataset:
    """The process's cached lazy volume of one case, built on first use; never modify it."""
    key = (*cache_key(location, storage_options), case_id)
    with _volumes_lock:
        cached = _volumes.get(key)
        if cached is not None:
            _volumes.move_to_end(key)
    if cached is None:
        cached = _build_volume(location, case_id, storage_options)
        with _volumes_lock:
            _volumes[key] = cached
            while len(_volumes) > _MAX_CACHED_VOLUMES:
                _volumes.popitem(last=False)
    return cached


def _build_volume(
    location: str | os.PathLike | Store, case_id: str, storage_options: dict[str, Any] | None
) -> xr.Dataset:
    group = case_group(location, case_id, storage_options=storage_options)
    attrs: dict[str, Any] = dict(group.attrs)
    image = group[IMAGE]
    label = group[LABEL]
    assert isinstance(image, zarr.Array) and isinstance(label, zarr.Array)
    shard_z = (image.shards or image.chunks)[0]
    where = f"store-{id(location)}" if isinstance(location, Store) else os.fspath(location)
    token = tokenize(where, case_id, image.shape, str(image.dtype))
    affine = np.asarray(attrs["affine"], dtype=float)
    coords: dict[str, Any] = {
        name: (name, values, {"units": "mm"})
        for name, values in axis_coordinates(affine, image.shape).items()
    }
    coords[VERTEBRA_DIM] = np.asarray(VERTEBRA_LABELS, dtype=np.uint8)
    coords[AXIS_DIM] = list(VOLUME_DIMS)
    _, start, stop = boxes_from_attrs(attrs["vertebrae"])
    index = group[SLICE_VERTEBRAE]
    assert isinstance(index, zarr.Array)
    data_vars = {
        IMAGE: (VOLUME_DIMS, _lazy(image, f"image-{token}", shard_z), dict(image.attrs)),
        LABEL: (VOLUME_DIMS, _lazy(label, f"label-{token}", shard_z), dict(label.attrs)),
        SLICE_VERTEBRAE: (("z", VERTEBRA_DIM), _lazy(index, f"index-{token}", 0)),
        "bbox_start": ((VERTEBRA_DIM, AXIS_DIM), start),
        "bbox_stop": ((VERTEBRA_DIM, AXIS_DIM), stop),
    }
    ds_attrs = {
        "case": case_id,
        "source": attrs["source"],
        "split": attrs["split"],
        "affine": affine,
        "spacing_zyx": tuple(np.asarray(attrs["spacing_zyx"], dtype=float).tolist()),
        "store": where,
    }
    return xr.Dataset(data_vars, coords=coords, attrs=ds_attrs)
