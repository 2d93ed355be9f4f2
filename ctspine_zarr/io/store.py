"""Open a ctspine store (local path or fsspec URL) and its case groups.

Readers open the root once per process through consolidated metadata; the cache is keyed
by process id, so a forked worker never reuses its parent's filesystem or event loop.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr
import zarr.storage
from zarr.abc.store import Store

from ..errors import CaseNotFoundError, DamagedStoreError, StoreError
from ..schema import (
    AXIS_DIM,
    CASE_DIM,
    CASES_GROUP,
    COMPLETE_KEY,
    FORMAT_KEY,
    FORMAT_VERSION,
    READABLE_FORMATS,
    VERTEBRA_DIM,
    VERTEBRA_NAME,
    VOLUME_DIMS,
)
from .remote import url_store
from .vertebracoords import vertebra_coordinates

__all__ = ["case_group", "is_url", "open", "open_catalogue", "open_root", "to_store"]

_cache: dict[tuple, zarr.Group] = {}
_case_cache: dict[tuple, zarr.Group] = {}
_store_cache: dict[tuple, Store] = {}
_other_caches: list[MutableMapping[tuple, Any]] = []


def register_cache(cache: MutableMapping[tuple, Any]) -> None:
    """Have :func:`forget` also clear ``cache``, keyed like :func:`cache_key` + more."""
    _other_caches.append(cache)


_cache_lock = threading.Lock()


def is_url(location: Any) -> bool:
    """Whether ``location`` is an fsspec URL other than a plain local path."""
    if isinstance(location, Store):
        return False
    text = str(location)
    return "://" in text and not text.startswith("file://")


def to_store(
    location: str | os.PathLike | Store,
    *,
    storage_options: dict[str, Any] | None = None,
    read_only: bool = True,
) -> Store:
    """Return a zarr store for a local path, an fsspec URL or an existing store.

    URL stores get default timeouts and bounded retries, and exact keys over HTTP
    (see :mod:`ctspine_zarr.io.remote`).
    """
    if isinstance(location, Store):
        return location
    text = str(location)
    if is_url(text):
        return url_store(text, storage_options=storage_options, read_only=read_only)
    if text.startswith("file://"):
        text = text[len("file://") :]
    return zarr.storage.LocalStore(Path(text), read_only=read_only)


def _where(location: Any) -> Any:
    """Identify a location: a store object by identity, a local path absolutely, a URL as is."""
    if isinstance(location, Store):
        return id(location)
    text = os.fspath(location)
    return text if is_url(text) else os.path.abspath(text.removeprefix("file://"))


def cache_key(location: Any, storage_options: dict[str, Any] | None) -> tuple:
    options = json.dumps(storage_options or {}, sort_keys=True, default=str)
    return (os.getpid(), _where(location), options)


def _read_store(location: Any, storage_options: dict[str, Any] | None) -> Store:
    """Return a read-only store for ``location``, one per process (fork-safe)."""
    key = cache_key(location, storage_options)
    with _cache_lock:
        store = _store_cache.get(key)
    if store is None:
        store = to_store(location, storage_options=storage_options)
        with _cache_lock:
            _store_cache[key] = store
    return store


def open_root(
    location: str | os.PathLike | Store,
    *,
    storage_options: dict[str, Any] | None = None,
) -> zarr.Group:
    """Open a store's root group read-only through its consolidated metadata.

    The group is cached per process, location and storage options.

    Raises
    ------
    StoreError
        When the location is not a ctspine store or its format version is unsupported.
    """
    key = cache_key(location, storage_options)
    with _cache_lock:
        group = _cache.get(key)
    if group is not None:
        return group
    from .snapshot import SnapshotStore

    store = SnapshotStore(_read_store(location, storage_options), where=str(location))
    try:
        group = zarr.open_group(store, mode="r", zarr_format=3, use_consolidated=True)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as err:
        if isinstance(location, str | os.PathLike) and not is_url(location):
            if Path(location).is_file():
                raise StoreError(f"{location}: a file, not a store (a store is a folder)") from err
        raise StoreError(f"{location}: no Zarr v3 store there") from err
    except json.JSONDecodeError:
        raise DamagedStoreError(
            f"{location}/zarr.json: not valid JSON; the store is damaged "
            "(run `ctspine-zarr ingest RAW STORE` again to repair it)"
        ) from None
    except ValueError as err:  # a group without consolidated metadata
        group = zarr.open_group(store, mode="r", zarr_format=3, use_consolidated=False)
        check_format(group.attrs, location)
        raise StoreError(
            f"{location}: a ctspine store without consolidated metadata (its first ingest "
            "did not finish); run the ingest again to complete it"
        ) from err
    check_format(group.attrs, location)
    with _cache_lock:
        _cache[key] = group
    return group


def check_format(attrs: Any, location: Any) -> None:
    """Raise StoreError unless ``attrs`` are the root attrs of a ctspine store we can read."""
    version = attrs.get(FORMAT_KEY)
    if version is None:
        raise StoreError(
            f"{location}: a Zarr store, but not a ctspine store (no {FORMAT_KEY!r} attribute)"
        )
    if version not in READABLE_FORMATS:
        raise StoreError(
            f"{location}: store format {version} is newer than this package reads "
            f"({FORMAT_VERSION}); upgrade ctspine_zarr"
        )


def case_group(
    location: str | os.PathLike | Store,
    case_id: str,
    *,
    storage_options: dict[str, Any] | None = None,
) -> zarr.Group:
    """Return the group of one case, raising :class:`CaseNotFoundError` for an unknown id.

    The case's own consolidated metadata is read once per process (one request).
    """
    key = (*cache_key(location, storage_options), case_id)
    with _cache_lock:
        group = _case_cache.get(key)
    if group is not None:
        return group
    try:
        group = zarr.open_group(
            _read_store(location, storage_options),
            path=f"{CASES_GROUP}/{case_id}",
            mode="r",
            zarr_format=3,
            use_consolidated=True,
        )
    except (FileNotFoundError, zarr.errors.GroupNotFoundError):
        root = open_root(location, storage_options=storage_options)
        raise CaseNotFoundError(case_id, _case_ids(root)) from None
    except json.JSONDecodeError:
        raise DamagedStoreError(
            f"{location}: case {case_id!r}: its zarr.json is not valid JSON; the store is "
            "damaged (run `ctspine-zarr ingest RAW STORE` again to repair it)"
        ) from None
    except ValueError as err:  # the group exists without its consolidated metadata
        raise StoreError(
            f"{location}: case {case_id!r} has no consolidated metadata (an unfinished write); "
            "run the ingest again"
        ) from err
    if group.attrs.get(COMPLETE_KEY) is not True:
        raise StoreError(
            f"{location}: case {case_id!r} is an unfinished write; run the ingest again"
        )
    with _cache_lock:
        _case_cache[key] = group
    return group


def _case_ids(root: zarr.Group) -> list[str]:
    ids = root.get("case")
    if not isinstance(ids, zarr.Array):
        return []
    return [str(v) for v in np.asarray(ids[...]).ravel()]


def open_catalogue(
    location: str | os.PathLike | Store,
    *,
    storage_options: dict[str, Any] | None = None,
) -> xr.Dataset:
    """Open the catalogue of a ctspine store: one row per case, in two reads.

    The root document (consolidated metadata) and the case ids are read; the other
    columns are read when first used (one request each).

    Parameters
    ----------
    location
        Local path or fsspec URL of the store.
    storage_options
        fsspec options for a URL (endpoint, credentials, ...).

    Returns
    -------
    xarray.Dataset
        The catalogue on dims ``case``, ``vertebra`` and ``axis``; ``ds.ctspine`` reaches
        the cases. ``vertebra`` (VerSe values) and ``vertebra_name`` (``"L3"``) are indexed:
        ``ds.sel(vertebra_name="L3")`` is ``ds.sel(vertebra=22)``.
    """
    from .snapshot import SnapshotStore

    where = repr(location) if isinstance(location, Store) else os.fspath(location)
    store = SnapshotStore(
        _read_store(location, storage_options), where=where, on_change=lambda: forget(location)
    )
    try:
        ds = xr.open_zarr(
            store, consolidated=True, zarr_format=3, chunks=None, create_default_indexes=False
        )
    except StoreError:
        raise
    except Exception:
        open_root(location, storage_options=storage_options)  # raises the precise StoreError
        raise
    check_format(ds.attrs, location)
    # the vertebra, vertebra_name and axis coordinates are constants of the format: they
    # are not read, and a store written before vertebra_name was stored gets it too
    axis = np.array(VOLUME_DIMS, dtype=np.dtypes.StringDType())
    names = ds[VERTEBRA_NAME].attrs if VERTEBRA_NAME in ds.variables else None
    others = {AXIS_DIM: (AXIS_DIM, axis, ds[AXIS_DIM].attrs)}
    ds = ds.assign_coords(vertebra_coordinates(ds[VERTEBRA_DIM].attrs, names, others=others))
    ds = ds.set_xindex(CASE_DIM)  # reads the case ids: the one chunk opening costs
    ds.encoding["source"] = location if isinstance(location, Store) else os.fspath(location)
    ds.encoding["storage_options"] = dict(storage_options or {})
    return ds


#: ``ctspine_zarr.open``: the same as :func:`open_catalogue` (mirrors ``xr.open_zarr``).
open = open_catalogue  # noqa: A001


def refresh_listings(store: Store) -> None:
    """Drop the directory listings an fsspec filesystem cached (s3fs does), before a walk."""
    fs = getattr(store, "fs", None)
    if fs is not None and hasattr(fs, "invalidate_cache"):
        fs.invalidate_cache()


def storage_options_of(ds: xr.Dataset) -> dict[str, Any] | None:
    """Return the fsspec storage options a Dataset from ``xr.open_zarr`` was opened with.

    ``xr.open_zarr(url, storage_options=...)`` keeps them only inside the zarr store behind
    its lazy variables; the accessor needs them to reach the cases of the same store.
    Returns None when no fsspec-backed zarr array is found (local or loaded Datasets).
    """
    from ..compat import zarr_array_behind

    array = zarr_array_behind(ds)
    if array is None:
        return None
    fs = getattr(array.store, "fs", None)
    return dict(getattr(fs, "storage_options", {}) or {})


def forget(location: str | os.PathLike | Store) -> None:
    """Drop cached root groups of ``location`` (after the store was written)."""
    with _cache_lock:
        where = _where(location)
        caches: list[MutableMapping[tuple, Any]] = [_cache, _case_cache, _store_cache]
        for cache in caches + _other_caches:
            for key in [k for k in cache if k[1] == where]:
                del cache[key]
