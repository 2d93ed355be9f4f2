"""Lean reads of whole axial slices from a case's sharded ``(z, y, x)`` arrays.

For the store's own layout (``sharding_indexed`` with ``(1, Y, X)`` inner chunks) a
:class:`ZReader` fetches a shard's index once per process, then only the byte ranges of the
chunks it needs, and decodes them with the libraries of the array's codecs synchronously, in the
calling thread: no xarray, no dask, no asyncio round trip per chunk on a local store (files
are read with ``os.pread``). Other stores (fsspec URLs) go through the zarr store API, with the
requests of one batch gathered concurrently. Arrays of any other layout are read with
``zarr.Array.__getitem__``. The loaders (:mod:`ctspine_zarr.sampling`) and the accessor's
``slice`` read through here.

The shard layout and the chunk codecs come from :mod:`ctspine_zarr.io.shardformat` (public
metadata, numcodecs); an array it does not support gets no :class:`ShardLayout`, and the
public path is used.
"""

from __future__ import annotations

import asyncio
import os
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, NamedTuple, NoReturn

import numpy as np
import zarr
from zarr.abc.store import RangeByteRequest, Store, SuffixByteRequest
from zarr.buffer import default_buffer_prototype

from ..compat import sync
from ..errors import DamagedStoreError, StoreChangedError
from ..schema import IMAGE, LABEL, SHARD_CRC_KEY
from .processcache import ProcessCache
from .shardformat import EMPTY_ENTRY, ShardLayout
from .store import cache_key, case_group, forget

__all__ = [
    "EMPTY_ENTRY",
    "CaseReaders",
    "Request",
    "ShardLayout",
    "ZReader",
    "case_readers",
    "read_blocks",
]

_INDEX_CACHE_SIZE: Final = 4096

# --------------------------------------------------------------------------------------------
# Lean chunk reads (the shard format itself: :mod:`ctspine_zarr.io.shardformat`)
# --------------------------------------------------------------------------------------------


#: What identifies a local shard file between reads: inode, size, modification time.
FileIdentity = tuple[int, int, int]


class ZReader:
    """Reads z ranges ``[z0, z1)`` of full slices of one ``(z, y, x)`` zarr array.

    Parameters
    ----------
    array
        The array.
    index_checksums
        CRC-32 of each shard's encoded index as the case metadata records it (format 2):
        a shard whose index differs was replaced since the metadata was read, and reading
        it raises :class:`StoreChangedError` instead of mixing two versions.
    where
        How messages name the array (``case 'liver_2', array 'image'``).
    location
        The store location, whose caches are dropped when it changed.
    """

    def __init__(
        self,
        array: zarr.Array,
        *,
        index_checksums: Sequence[int] | None = None,
        where: str = "",
        location: Any = None,
    ) -> None:
        self.array = array
        self.shape: tuple[int, ...] = tuple(array.shape)
        self.dtype = np.dtype(array.dtype)
        try:
            self.layout = ShardLayout.of(array)
        except Exception:  # noqa: BLE001 - any surprise in zarr internals: use the public path
            self.layout = None
        self.index_checksums = None if index_checksums is None else list(index_checksums)
        self.where = where or f"array {array.store_path.path!r}"
        self.location = location
        self._index: dict[int, np.ndarray] = {}
        self._identity: dict[int, FileIdentity | None] = {}

    def cached_index(self, shard: int) -> np.ndarray | None:
        """The ``(offset, length)`` table of shard ``shard`` when already fetched, else None."""
        return self._index.get(shard)

    def remember_index(
        self, shard: int, table: np.ndarray, identity: FileIdentity | None = None
    ) -> None:
        """Keep the decoded index of shard ``shard`` (the cache is bounded)."""
        if len(self._index) >= _INDEX_CACHE_SIZE:
            self._index.clear()
            self._identity.clear()
        self._index[shard] = table
        self._identity[shard] = identity

    def check_index(self, shard: int, encoded: bytes) -> None:
        """Raise :class:`StoreChangedError` unless ``encoded`` is the index the metadata names."""
        expected = self.index_checksums
        if expected is None or shard >= len(expected):
            return
        if zlib.crc32(encoded) != expected[shard]:
            self.changed(f"shard {shard} was replaced")

    def check_identity(self, shard: int, identity: FileIdentity | None) -> None:
        """Raise :class:`StoreChangedError` when a local shard file is not the one indexed."""
        known = self._identity.get(shard)
        if known is not None and identity is not None and known != identity:
            self.changed(f"shard {shard} was replaced")

    def changed(self, detail: str) -> NoReturn:
        """Drop the process's caches of the store and raise :class:`StoreChangedError`."""
        if self.location is not None:
            forget(self.location)
        raise StoreChangedError(
            f"{self.where}: the store changed since it was opened ({detail}); "
            "reopen it (ctspine_zarr.open or ds.ctspine.volume again) to read the new version"
        )

    def missing(self, z: int, what: str) -> NoReturn:
        """Raise :class:`DamagedStoreError` for slice ``z``."""
        raise DamagedStoreError(
            f"{self.where}, slice z={z}: {what}; the store is damaged "
            "(run `ctspine-zarr ingest RAW STORE` again to repair it)"
        )


# The functional form, so that the field types are objects rather than strings: with the
# class form and ``from __future__ import annotations`` the generated ``__new__`` keeps them as
# forward references that no tool can resolve (its ``__module__`` is not this module), and the
# API reference (docs/api.py) warns.
CaseReaders = NamedTuple(  # noqa: UP014
    "CaseReaders", [("image", ZReader), ("label", ZReader), ("affine", np.ndarray)]
)
CaseReaders.__doc__ = (
    """The readers of one case's ``image`` and ``label``, and its canonical affine."""
)


_Fetch = tuple[Store, Path | None, str, "RangeByteRequest | SuffixByteRequest | None"]


def _fetch(requests: Sequence[_Fetch]) -> list[tuple[bytes | None, FileIdentity | None]]:
    """Fetch byte ranges; local files with ``pread``, other stores concurrently through zarr.

    Each result comes with the identity of the local file it was read from (None remotely).
    """
    out: list[tuple[bytes | None, FileIdentity | None]] = [(None, None)] * len(requests)
    remote: list[int] = []
    for i, (_store, root, key, byte_range) in enumerate(requests):
        if root is None:
            remote.append(i)
        else:
            out[i] = _read_local(root / key, byte_range)
    if remote:
        prototype = default_buffer_prototype()

        async def gather() -> list[Any]:
            return await asyncio.gather(
                *(requests[i][0].get(requests[i][2], prototype, requests[i][3]) for i in remote)
            )

        for i, buf in zip(remote, sync(gather()), strict=True):
            out[i] = (None if buf is None else buf.to_bytes(), None)
    return out


def _read_local(
    path: Path, byte_range: RangeByteRequest | SuffixByteRequest | None
) -> tuple[bytes | None, FileIdentity | None]:
    """Read a file's range; with the identity of the very file read (an ingest may replace it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        return None, None
    try:
        stat = os.fstat(fd)
        identity = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        size = stat.st_size
        if byte_range is None:
            return os.pread(fd, size, 0), identity
        if isinstance(byte_range, SuffixByteRequest):
            start = max(0, size - byte_range.suffix)
            return os.pread(fd, size - start, start), identity
        return os.pread(fd, byte_range.end - byte_range.start, byte_range.start), identity
    finally:
        os.close(fd)


Request = tuple[ZReader, int, int, "np.dtype[Any] | None"]


def read_blocks(requests: Sequence[Request]) -> list[np.ndarray]:
    """Read full slices ``[z0, z1)`` of several arrays; the I/O of all requests is batched.

    Each request is ``(reader, z0, z1, dtype)``: chunks are decoded straight into an output of
    ``dtype`` (None: the stored dtype), so no intermediate copy is made. Shard indexes not yet
    cached are fetched in one batch, then the chunks in a second one; a request spanning a
    whole shard fetches the shard object at once.
    """
    out = _allocate(
        [
            ((z1 - z0, *r.shape[1:]), np.dtype(r.dtype if dtype is None else dtype))
            for r, z0, z1, dtype in requests
        ]
    )
    pieces: list[_Piece] = []
    for n, (reader, z0, z1, _) in enumerate(requests):
        layout = reader.layout
        if layout is None:
            if z1 > z0:
                out[n][...] = reader.array[z0:z1]
            continue
        for shard in range(z0 // layout.shard_z, (z1 - 1) // layout.shard_z + 1 if z1 > z0 else 0):
            lo = max(z0, shard * layout.shard_z)
            hi = min(z1, (shard + 1) * layout.shard_z)
            pieces.append((n, reader, shard, lo, hi))
    shards = _fetch_shards_and_indexes(pieces)
    _read_chunks(requests, pieces, shards, out)
    return out


#: A lean request's part in one shard: (request number, reader, shard, first z, stop z).
_Piece = tuple[int, ZReader, int, int, int]


def _fetch_shards_and_indexes(pieces: Sequence[_Piece]) -> dict[int, bytes]:
    """First batch: the whole shards of the pieces spanning one, the uncached indexes of others.

    Indexes are checked against the metadata and cached in their reader; whole shards are
    checked and returned by piece number.
    """
    first: list[_Fetch] = []
    first_of: list[tuple[str, int]] = []
    for p, (_, reader, shard, lo, hi) in enumerate(pieces):
        layout = reader.layout
        assert layout is not None
        whole = lo == shard * layout.shard_z and hi == min(
            (shard + 1) * layout.shard_z, reader.shape[0]
        )
        if whole and hi - lo > 1:
            first.append((layout.store, layout.local_root, layout.key(shard), None))
            first_of.append(("shard", p))
        elif reader.cached_index(shard) is None:
            byte_range: RangeByteRequest | SuffixByteRequest = (
                SuffixByteRequest(layout.index_size)
                if layout.index_at_end
                else RangeByteRequest(0, layout.index_size)
            )
            first.append((layout.store, layout.local_root, layout.key(shard), byte_range))
            first_of.append(("index", p))
    shards: dict[int, bytes] = {}
    for (kind, p), (data, identity) in zip(first_of, _fetch(first), strict=True):
        _, reader, shard, lo, _ = pieces[p]
        layout = reader.layout
        assert layout is not None
        if data is None or len(data) < layout.index_size:
            reader.missing(lo, f"shard {layout.key(shard)!r} is missing or truncated")
        if kind == "shard":
            shards[p] = data
            reader.check_index(shard, _index_bytes(layout, data))
        else:
            reader.check_index(shard, data)
            reader.remember_index(shard, layout.decode_index(data), identity)
    return shards


def _read_chunks(
    requests: Sequence[Request],
    pieces: Sequence[_Piece],
    shards: dict[int, bytes],
    out: list[np.ndarray],
) -> None:
    """Second batch: decode the whole shards fetched, fetch and decode the single chunks."""
    scratch: dict[int, np.ndarray] = {}
    second: list[_Fetch] = []
    second_of: list[tuple[int, int]] = []
    for p, (n, reader, shard, lo, hi) in enumerate(pieces):
        layout = reader.layout
        assert layout is not None
        if p in shards:
            whole = shards[p]
            table = layout.decode_index(_index_bytes(layout, whole))
            for z in range(lo, hi):
                offset, length = (int(v) for v in table[z - shard * layout.shard_z])
                if offset == EMPTY_ENTRY or offset + length > len(whole):
                    reader.missing(z, "its chunk is missing from the shard")
                _put(out[n], z - requests[n][1], layout, whole[offset : offset + length], scratch)
            continue
        cached = reader.cached_index(shard)
        assert cached is not None
        for z in range(lo, hi):
            offset, length = (int(v) for v in cached[z - shard * layout.shard_z])
            if offset == EMPTY_ENTRY:
                reader.missing(z, "its chunk is missing from the shard")
            byte_range = RangeByteRequest(offset, offset + length)
            second.append((layout.store, layout.local_root, layout.key(shard), byte_range))
            second_of.append((n, z))
    for (n, z), (data, identity) in zip(second_of, _fetch(second), strict=True):
        reader = requests[n][0]
        layout = reader.layout
        assert layout is not None
        shard = z // layout.shard_z
        reader.check_identity(shard, identity)
        if data is None:
            reader.missing(z, f"shard {layout.key(shard)!r} is missing")
        _put(out[n], z - requests[n][1], layout, data, scratch)


def _index_bytes(layout: ShardLayout, shard: bytes) -> bytes:
    """The encoded index at the end (or the start) of a whole shard's bytes."""
    return shard[-layout.index_size :] if layout.index_at_end else shard[: layout.index_size]


def _allocate(blocks: Sequence[tuple[tuple[int, ...], np.dtype[Any]]]) -> list[np.ndarray]:
    """Empty arrays of the given shapes and dtypes; those alike are views of one allocation.

    One large allocation instead of many of a few MB: numpy backs it with transparent huge
    pages, which halves the cost of touching fresh memory (page faults), a large part of an
    item's time. The arrays of one batch thus share a buffer, freed with the last of them.
    """
    groups: dict[tuple[tuple[int, ...], np.dtype[Any]], list[int]] = {}
    for n, block in enumerate(blocks):
        groups.setdefault(block, []).append(n)
    out: list[np.ndarray] = [np.empty(0)] * len(blocks)
    for (shape, dtype), members in groups.items():
        whole = np.empty((len(members), *shape), dtype=dtype)
        for j, n in enumerate(members):
            out[n] = whole[j]
    return out


def _put(
    block: np.ndarray,
    i: int,
    layout: ShardLayout,
    chunk: bytes | None,
    scratch: dict[int, np.ndarray],
) -> None:
    assert chunk is not None
    block[i] = layout.decode_chunk(chunk, scratch)


#: Readers of the cases opened in this process (each keeps its shard indexes).
_readers: ProcessCache[CaseReaders] = ProcessCache(limit=256)


def case_readers(
    location: str | os.PathLike[str] | Store,
    case_id: str,
    storage_options: dict[str, Any] | None = None,
) -> CaseReaders:
    """Return the image and label readers and the affine of one case, cached per process.

    Parameters
    ----------
    location
        Path, fsspec URL or zarr store of the ctspine store.
    case_id
        The case.
    storage_options
        fsspec options for a URL.
    """
    key = (*cache_key(location, storage_options), case_id)
    found = _readers.get(key)
    if found is not None:
        return found
    group = case_group(location, case_id, storage_options=storage_options)
    image, label = group[IMAGE], group[LABEL]
    assert isinstance(image, zarr.Array) and isinstance(label, zarr.Array)
    affine = np.asarray(group.attrs["affine"], dtype=np.float64)
    checksums: Any = group.attrs.get(SHARD_CRC_KEY) or {}
    image_reader, label_reader = (
        ZReader(
            array,
            index_checksums=checksums.get(name),
            where=f"case {case_id!r}, array {name!r}",
            location=location,
        )
        for name, array in ((IMAGE, image), (LABEL, label))
    )
    return _readers.put(key, CaseReaders(image_reader, label_reader, affine))
