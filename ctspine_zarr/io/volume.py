"""One case as a lazy xarray Dataset: image and label on ``(z, y, x)`` in mm."""

from __future__ import annotations

import os
import sys
import threading
from typing import Any, Final

import dask
import dask.array as da
import numpy as np
import xarray as xr
import zarr
from dask.base import tokenize
from zarr.abc.store import Store

from ..compat import using_fallbacks
from ..schema import (
    AXIS_DIM,
    IMAGE,
    LABEL,
    SHARD_CRC_KEY,
    SLICE_VERTEBRAE,
    VERTEBRA_DIM,
    VOLUME_DIMS,
)
from .labelindex import boxes_from_attrs
from .processcache import ProcessCache
from .store import cache_key, case_group
from .vertebracoords import vertebra_coordinates

__all__ = ["LeanSlices", "LeanVariable", "axis_coordinates", "open_volume"]


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


class LeanSlices:
    """A ``(z, y, x)`` zarr array as dask reads it: its blocks come from the lean reader.

    ``__getitem__`` reads the box asked for (ints and step-1 slices) through
    :func:`ctspine_zarr.io.slicereader.read_blocks`: shard index cached, only the tiles the
    box touches fetched (merged ranges, or the whole shard) and decoded. It
    pickles as the zarr array alone, so dask.distributed workers rebuild their own reader.
    Arrays the lean reader does not support are read by ``zarr.Array.__getitem__``.
    """

    def __init__(self, array: zarr.Array, **checks: Any) -> None:
        self.array = array
        self.shape: tuple[int, ...] = tuple(array.shape)
        self.dtype = np.dtype(array.dtype)
        self.ndim = len(self.shape)
        #: what the reader checks (``index_checksums``, ``where``, ``location``: see ZReader)
        self.checks = checks
        self._reader: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"array": self.array, "checks": self.checks}

    def __setstate__(self, state: dict[str, Any]) -> None:
        array = state["array"]
        self.array, self.shape, self.dtype = array, tuple(array.shape), np.dtype(array.dtype)
        self.ndim, self._reader = len(self.shape), None
        self.checks = state.get("checks", {})

    def __getitem__(self, key: Any) -> np.ndarray:
        from .slicereader import ZReader, read_blocks

        basic = _basic_key(key, self.shape)
        if basic is None:
            return np.asarray(self.array[key])  # steps, fancy keys: zarr reads
        bounds: list[tuple[int, int]] = []
        pick: list[Any] = []
        for k, n in zip(
            (*basic, *(slice(None),) * (self.ndim - len(basic))), self.shape, strict=True
        ):
            if isinstance(k, slice):
                start, stop, _ = k.indices(n)
                bounds.append((start, max(start, stop)))  # [5:3] is empty
                pick.append(slice(None))
            else:
                bounds.append((k, k + 1))
                pick.append(0)
        (z0, z1), (y0, y1), (x0, x1) = bounds
        if self._reader is None:
            self._reader = ZReader(self.array, **self.checks)
        (block,) = read_blocks([(self._reader, z0, z1, None, (y0, y1, x0, x1))])
        return block[tuple(pick)]


def _basic_key(key: Any, shape: tuple[int, ...]) -> tuple[Any, ...] | None:
    """``key`` as a tuple of in-range ints and step-1 slices, or None for any other key."""
    key = key if isinstance(key, tuple) else (key,)
    if len(key) > len(shape):
        return None
    out: list[Any] = []
    for k, n in zip(key, shape, strict=False):
        if isinstance(k, slice):
            if k.indices(n)[2] != 1:
                return None
            out.append(k)
        elif isinstance(k, (int, np.integer)) and not isinstance(k, bool) and -n <= k < n:
            out.append(int(k) % n)
        else:
            return None
    return tuple(out)


def _scheduler_is_local() -> bool:
    """Whether a compute would run in this process (no distributed client, no other scheduler)."""
    if dask.config.get("scheduler", None) not in _LOCAL_SCHEDULERS:
        return False
    if "distributed" in sys.modules:
        import distributed

        try:
            distributed.default_client()
        except ValueError:
            return True
        return False
    return True


_LOCAL_SCHEDULERS: Final = (None, "threads", "threading", "sync", "synchronous", "single-threaded")


_DEFAULT: Final = object()
#: xarray makes views with ``type(self)._replace`` (checked: the direct view reads need it)
_LEAN_VIEWS: Final = callable(getattr(xr.Variable, "_replace", None))


class LeanVariable(xr.Variable):
    """The variable of a volume's ``image`` or ``label``: its data a plain dask array.

    Its dask chunks are read by :class:`LeanSlices`. One addition: a view taken by basic
    indexing (``vol.image.isel(z=k)``: ints and step-1 slices) remembers its key, and its
    ``.values`` reads those voxels straight through :class:`LeanSlices` instead of building,
    optimising and scheduling a dask graph (about 1 ms per call whatever the graph, more
    than the read). Only when a compute would
    run in this process anyway (no dask.distributed client, a local scheduler) and not under
    :func:`ctspine_zarr.compat.forced_fallbacks`; ``.compute()``, ``.load()``,
    ``.chunk()``, arithmetic and every other operation go through dask as before. This
    relies on xarray making views with ``type(self)`` (``Variable._replace``); without
    that, views are plain Variables and compute through dask.
    """

    _lean_source: LeanSlices | None = None
    _lean_key: tuple[Any, ...] | None = None
    #: the dask array the shortcut stands for: once data is loaded or replaced, no shortcut
    _lean_data: Any = None

    def _replace(  # type: ignore[override]
        self, dims: Any = _DEFAULT, data: Any = _DEFAULT, **kwargs: Any
    ) -> Any:
        if dims is not _DEFAULT:
            kwargs["dims"] = dims
        if data is not _DEFAULT:
            kwargs["data"] = data
        out = super()._replace(**kwargs)
        if isinstance(out, LeanVariable) and (data is _DEFAULT or data is self._data):
            out._lean_source, out._lean_key = self._lean_source, self._lean_key
            out._lean_data = self._lean_data
        return out

    def __getitem__(self, key: Any) -> Any:
        out = super().__getitem__(key)
        if isinstance(out, LeanVariable) and self._lean_source is not None:
            basic = _basic_key(key, self.shape) if self._lean_key is None else None
            out._lean_source, out._lean_key = (self._lean_source, basic) if basic else (None, None)
            out._lean_data = out._data
        return out

    @property
    def values(self) -> np.ndarray:
        """The voxels as numpy (a basic view of the volume: read without the scheduler)."""
        source, key = self._lean_source, self._lean_key
        if (
            source is not None
            and self._data is self._lean_data  # still the lazy data: not loaded, not replaced
            and not using_fallbacks()
            and _scheduler_is_local()
        ):
            if key is not None:
                return np.asarray(source[key])
        return xr.Variable.values.fget(self)  # type: ignore[attr-defined]

    @values.setter
    def values(self, values: Any) -> None:
        xr.Variable.values.fset(self, values)  # type: ignore[attr-defined]


def _lean_variable(array: zarr.Array, name: str, chunks_z: int, **checks: Any) -> xr.Variable:
    """The ``(z, y, x)`` variable of ``array``: dask over :class:`LeanSlices`."""
    source = LeanSlices(array, **checks)
    data = da.from_array(
        source,
        chunks=(chunks_z, *array.shape[1:]),
        name=name,
        lock=False,
        asarray=False,
        inline_array=True,
        meta=np.empty((0,) * array.ndim, dtype=array.dtype),
    )
    if not _LEAN_VIEWS:
        return xr.Variable(VOLUME_DIMS, data, dict(array.attrs))
    variable = LeanVariable(VOLUME_DIMS, data, dict(array.attrs))
    variable._lean_source, variable._lean_data = source, data
    return variable


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
_volumes: ProcessCache[xr.Dataset] = ProcessCache(limit=256)


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
        in mm; ``attrs["affine"]`` is the 4x4 canonical affine. ``vertebra`` (VerSe values)
        and ``vertebra_name`` (``"L3"``) are indexed:
        ``vol.slice_vertebrae.sel(vertebra_name="L3")`` is ``.sel(vertebra=22)``.
    """
    # a shallow copy: the caller may change attrs or variables without touching the cache
    return cached_volume(location, case_id, storage_options).copy(deep=False)


def cached_volume(
    location: str | os.PathLike | Store, case_id: str, storage_options: dict[str, Any] | None
) -> xr.Dataset:
    """The process's cached lazy volume of one case, built on first use; never modify it."""
    key = (*cache_key(location, storage_options), case_id)
    cached = _volumes.get(key)
    if cached is None:
        cached = _volumes.put(key, _build_volume(location, case_id, storage_options))
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
    coords[AXIS_DIM] = list(VOLUME_DIMS)
    _, start, stop = boxes_from_attrs(attrs["vertebrae"])
    index = group[SLICE_VERTEBRAE]
    assert isinstance(index, zarr.Array)
    checksums = attrs.get(SHARD_CRC_KEY) or {}
    lean = {
        name: _lean_variable(
            array,
            f"{name}-{token}",
            shard_z,
            index_checksums=checksums.get(name),
            where=f"case {case_id!r}, array {name!r}",
            location=location,
        )
        for name, array in ((IMAGE, image), (LABEL, label))
    }
    data_vars = {
        **lean,
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
    return xr.Dataset(data_vars, coords=vertebra_coordinates(others=coords), attrs=ds_attrs)
