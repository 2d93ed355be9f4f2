"""Every private zarr, xarray and dask API the package touches, each with its fallback.

The speed paths once reached into private internals in several modules; a new zarr
(3.3 deprecated its enums, made codec attributes plain strings) broke them. Each remaining
touchpoint now lives here, used through one function, with a public fallback taken when the
private piece is missing or changed, and in CI under :func:`forced_fallbacks` (a test
checks that the fallbacks give the same bytes, values and ``verify`` verdict).

Inventory (:data:`TOUCHPOINTS` holds the same as data):

==========================================  ====================================================
private API                                 replacement or fallback
==========================================  ====================================================
zarr ``_encode_sync`` / ``_decode_sync``    replaced: :mod:`ctspine_zarr.io.shardformat` codes the
                                            store's chunks with numcodecs and google-crc32c
                                            from the codecs' public ``to_dict()``; other codecs
                                            go through the public ``zarr.Array`` path
``ShardingCodec._shard_index_size``,        replaced: the index layout of the sharding spec,
``_get_index_chunk_spec``                   in :class:`ctspine_zarr.io.shardformat.IndexFormat`
``Endian``, ``ShardingCodecIndexLocation``  replaced: strings from ``to_dict()``
``zarr.core.buffer``                        replaced: the public ``zarr.buffer``
``zarr.core.sync.sync``                     :func:`sync`; fallback: an event loop of our own
                                            on one daemon thread (local and memory stores;
                                            an fsspec filesystem already bound to zarr's loop
                                            may refuse another loop)
xarray ``Dataset._construct_direct``        :func:`construct_dataset`; fallback: the public
                                            ``xr.Dataset`` constructor (0.25 ms slower)
dask graph introspection                    :func:`zarr_array_behind`; fallback: None (the
(``store.storage_options_of``)              accessor then opens cases without the catalogue's
                                            storage options: environment credentials only)
xarray ``Variable._replace`` (overridden    :class:`ctspine_zarr.io.volume.LeanVariable`; fallback
by the volume's variables, so that views    (missing method, or :func:`forced_fallbacks`):
keep their key)                             views compute through dask, ~1 ms slower
fsspec ``HTTPFileSystem._process_limits``,  :func:`http_internals`, for
``_raise_not_found_for_status``,            ``io.remote.RangeCheckedHTTPFileSystem``:
``set_session``, ``encode_url`` (to see     the status of a Range answer before its body;
the status of an answer: a server that      fallback: fsspec's ``_cat_file`` (its async
ignores Range answers 200 with the whole    filesystem's extension point), the body refused
file)                                       when longer than the range asked
==========================================  ====================================================

``ctspine_zarr.io.codecs`` imports ``zarr.core`` types to implement zarr's codec interface
(a codec plug-in must), and :mod:`ctspine_zarr.io.snapshot` names ``zarr.core.buffer`` types
in annotations only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, Final, TypeVar

import xarray as xr

__all__ = [
    "TOUCHPOINTS",
    "construct_dataset",
    "forced_fallbacks",
    "http_internals",
    "sync",
    "using_fallbacks",
    "zarr_array_behind",
]

_T = TypeVar("_T")

#: private API -> what replaces it, or its fallback (see the module docstring).
TOUCHPOINTS: Final[dict[str, str]] = {
    "zarr Codec._encode_sync/_decode_sync": "replaced: shardformat (numcodecs, google-crc32c)",
    "zarr ShardingCodec._shard_index_size": "replaced: shardformat.IndexFormat",
    "zarr ShardingCodec._get_index_chunk_spec": "replaced: shardformat.IndexFormat",
    "zarr Endian, ShardingCodecIndexLocation": "replaced: strings of the codecs' to_dict()",
    "zarr.core.buffer.default_buffer_prototype": "replaced: zarr.buffer.default_buffer_prototype",
    "zarr.core.sync.sync": "compat.sync; fallback: an event loop on a daemon thread",
    "xarray Dataset._construct_direct": "compat.construct_dataset; fallback: xr.Dataset(...)",
    "dask graph introspection": "compat.zarr_array_behind; fallback: None",
    "xarray Variable._replace": "volume.LeanVariable; fallback: views computed by dask",
    "fsspec HTTPFileSystem._process_limits, _raise_not_found_for_status": (
        "remote.RangeCheckedHTTPFileSystem; fallback: fsspec's _cat_file, checked by length"
    ),
}

_forced = False


@contextlib.contextmanager
def forced_fallbacks() -> Iterator[None]:
    """Take every fallback inside the block, as when the private APIs are gone (for tests)."""
    global _forced
    before, _forced = _forced, True
    try:
        yield
    finally:
        _forced = before


def using_fallbacks() -> bool:
    """Whether :func:`forced_fallbacks` is in force."""
    return _forced


# --------------------------------------------------------------------------------------------
# zarr.core.sync.sync
# --------------------------------------------------------------------------------------------

_zarr_sync: Any
try:
    from zarr.core.sync import sync as _zarr_sync
except ImportError:  # pragma: no cover - a zarr without it: the fallback below
    _zarr_sync = None

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def _own_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _loop_lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="ctspine-zarr-io", daemon=True).start()
            _loop = loop
        return _loop


def _forget_loop() -> None:
    """In a forked child the loop's thread does not exist: start another on first use."""
    global _loop, _loop_lock
    _loop, _loop_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_loop)


def sync(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coroutine`` (a zarr store call) to its end from synchronous code.

    zarr's own ``sync`` (its I/O event loop, where its stores live) when present; else an
    event loop of this module's own, on a daemon thread.
    """
    if _zarr_sync is not None and not _forced:
        return _zarr_sync(coroutine)
    return asyncio.run_coroutine_threadsafe(coroutine, _own_loop()).result()


# --------------------------------------------------------------------------------------------
# xarray Dataset._construct_direct
# --------------------------------------------------------------------------------------------

_CONSTRUCT_DIRECT: Any = getattr(xr.Dataset, "_construct_direct", None)


def construct_dataset(
    variables: dict[str, xr.Variable],
    coord_names: set[str],
    sizes: dict[str, int],
    attrs: dict[str, Any],
    indexes: dict[str, Any],
) -> xr.Dataset:
    """A Dataset of ready ``variables`` reusing ready ``indexes`` of its coordinates.

    xarray's internal ``Dataset._construct_direct`` (16 us); the public constructor
    (about 0.25 ms: it rebuilds the indexes and merges coordinates) when it is gone, has
    another signature, or under :func:`forced_fallbacks`. Both give equal Datasets.
    """
    if _CONSTRUCT_DIRECT is not None and not _forced:
        try:
            return _CONSTRUCT_DIRECT(dict(variables), set(coord_names), sizes, attrs, indexes)
        except TypeError:  # a future xarray with another signature
            pass
    data = dict(variables)
    coords = {name: data.pop(name) for name in coord_names}
    return xr.Dataset(data, coords=coords, attrs=attrs)


# --------------------------------------------------------------------------------------------
# dask graph introspection
# --------------------------------------------------------------------------------------------


def zarr_array_behind(ds: xr.Dataset) -> Any:
    """The first ``zarr.Array`` behind a lazy variable of ``ds`` (from ``xr.open_zarr``).

    Walks the dask graph of each dask-backed variable to xarray's lazy zarr wrapper; None
    when there is none, when dask's or xarray's internals changed, or under
    :func:`forced_fallbacks`.
    """
    if _forced:
        return None
    import zarr

    try:
        for variable in ds.variables.values():
            data = variable.data if variable.chunks is not None else None
            graph = getattr(data, "dask", None)
            if graph is None:
                continue
            for task in dict(graph).values():
                node, depth = task, 0
                while node is not None and depth < 8 and not isinstance(node, zarr.Array):
                    node = getattr(node, "array", None) or getattr(node, "_array", None)
                    depth += 1
                if isinstance(node, zarr.Array):
                    return node
    except Exception:  # noqa: BLE001 - internals changed: behave as if nothing was found
        return None
    return None


# --------------------------------------------------------------------------------------------
# fsspec HTTPFileSystem internals
# --------------------------------------------------------------------------------------------

_HTTP_INTERNALS: Final = (
    "_process_limits",
    "_raise_not_found_for_status",
    "set_session",
    "encode_url",
)


def http_internals(fs: Any) -> bool:
    """Whether ``fs`` (an fsspec HTTPFileSystem) has the internals the Range check reads."""
    return not _forced and all(callable(getattr(fs, name, None)) for name in _HTTP_INTERNALS)
