"""The optional ``zarrs`` codec pipeline (``pip install 'ctspine-zarr[fast]'``), where it wins.

``docs/performance.md`` measures zarr's pipelines against the lean paths: the Rust
pipeline of the ``zarrs`` package reads a whole array faster than the lean reader (it
decodes on all cores at once), while the lean reader stays about twice as fast for single
slices. So, when zarrs is installed, a whole volume (``vol.image.values``) is read in one
call through a *twin* of the array: the same metadata, store and runtime config, opened
with the zarrs pipeline (no I/O). The dask tasks stay on the lean reader (zarrs inside each
of dask's threads was no faster). The values are the same (a test compares them with and
without zarrs). ``CTSPINE_ZARR_FAST=0`` turns it off; zarrs serves local stores only.
Writes stay on the lean writer: zarrs' Blosc/zstd build compresses some chunks to other
(equally valid) bytes, and a store's bytes should not depend on what is installed.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from typing import Final

import zarr

from .compat import using_fallbacks
from .shardformat import ShardLayout

__all__ = ["ZARRS_PIPELINE", "enabled", "twin"]

#: zarr's ``codec_pipeline.path`` of the zarrs pipeline.
ZARRS_PIPELINE: Final = "zarrs.ZarrsCodecPipeline"
_INSTALLED: Final = importlib.util.find_spec("zarrs") is not None
_lock = threading.Lock()
#: zarrs was used in this process (its worker threads started)
_used = False
#: this process was forked after zarrs was used: its threads did not survive the fork
_forked_after_use = False


def _after_fork_in_child() -> None:
    global _lock, _forked_after_use
    _lock = threading.Lock()
    _forked_after_use = _forked_after_use or _used


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def enabled() -> bool:
    """Whether zarrs is installed and in use (not ``CTSPINE_ZARR_FAST=0``).

    False in a process forked after zarrs was used (a DataLoader or pool worker): zarrs'
    thread pool did not survive the fork and would wait forever; such workers read
    through the lean reader.
    """
    return _INSTALLED and not _forked_after_use and os.environ.get("CTSPINE_ZARR_FAST", "1") != "0"


def twin(array: zarr.Array, *, threads: int | None = None) -> zarr.Array | None:
    """``array`` with the zarrs pipeline, or None (zarrs off, or a layout it is not used for).

    Parameters
    ----------
    array
        A ``(z, y, x)`` array of the store's layout with the standard codecs (not the
        JPEG-LS compact codec, which zarrs does not know), in a local store.
    threads
        zarrs' threads (zarr's ``threading.max_workers``); None: zarrs' default (all cores).
    """
    if not enabled() or using_fallbacks():
        return None
    layout = ShardLayout.of(array)
    if layout is None or layout.chunk.serializer != "bytes" or layout.local_root is None:
        return None  # local files only: zarrs' own HTTP/S3 clients bypass fsspec's options
    settings: dict[str, object] = {"codec_pipeline.path": ZARRS_PIPELINE}
    settings["codec_pipeline.strict"] = True  # an unsupported array raises, never warns
    if threads is not None:
        settings["threading.max_workers"] = threads
    global _used
    _used = True
    try:
        # zarr.config is process-wide: one twin at a time, restored at once
        with _lock, zarr.config.set(settings):
            source = array.async_array
            opened = zarr.AsyncArray(source.metadata, source.store_path, source.config)
    except Exception:  # noqa: BLE001 - zarrs refused the array: the lean path reads it
        return None
    # where zarrs cannot serve the array it falls back to zarr's pipeline: no gain
    pipeline = type(opened.codec_pipeline).__module__
    return zarr.Array(opened) if pipeline.split(".")[0] == "zarrs" else None
