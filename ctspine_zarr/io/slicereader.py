"""Lean reads of boxes of axial slices from a case's sharded ``(z, y, x)`` arrays.

For the store's own layout (``sharding_indexed`` with ``(1, ty, tx)`` inner chunks: tiles of
one slice, or the whole slice in store formats 1-3) a :class:`ZReader` fetches a shard's
index once per process, then only the byte ranges of the chunks a box touches (merged where
they touch: a slice of a shard written in C order is one range), and decodes them with the
libraries of the array's codecs synchronously, in the calling thread: no xarray, no dask, no
asyncio round trip per chunk on a local store (files are read with ``os.pread``). Other
stores (fsspec URLs) go through the zarr store API, with the requests of one batch gathered
concurrently. Arrays of any other layout are read with ``zarr.Array.__getitem__``. The
loaders (:mod:`ctspine_zarr.sampling`) and the accessor's ``slice`` read through here.

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
    "Box",
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
    """Reads boxes of slices ``[z0, z1)`` of one ``(z, y, x)`` zarr array (:func:`read_blocks`).

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
    local: dict[tuple[Path, str], list[int]] = {}
    for i, (_store, root, key, _) in enumerate(requests):
        if root is None:
            remote.append(i)
        else:
            local.setdefault((root, key), []).append(i)
    for (root, key), members in local.items():  # each file opened once, its ranges in turn
        results = _read_local(root / key, [requests[i][3] for i in members])
        for i, result in zip(members, results, strict=True):
            out[i] = result
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
    path: Path, byte_ranges: Sequence[RangeByteRequest | SuffixByteRequest | None]
) -> list[tuple[bytes | None, FileIdentity | None]]:
    """Read ranges of one file, each with the identity of the file read (ingests replace files)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        return [(None, None)] * len(byte_ranges)
    try:
        stat = os.fstat(fd)
        identity = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        size = stat.st_size
        out: list[tuple[bytes | None, FileIdentity | None]] = []
        for byte_range in byte_ranges:
            if byte_range is None:
                data = os.pread(fd, size, 0)
            elif isinstance(byte_range, SuffixByteRequest):
                start = max(0, size - byte_range.suffix)
                data = os.pread(fd, size - start, start)
            else:
                data = os.pread(fd, byte_range.end - byte_range.start, byte_range.start)
            out.append((data, identity))
        return out
    finally:
        os.close(fd)


#: An in-plane box ``(y0, y1, x0, x1)``.
Box = tuple[int, int, int, int]
#: ``(reader, z0, z1, dtype)``, or with a fifth item, the box of each slice to read (None: all).
Request = (
    tuple[ZReader, int, int, "np.dtype[Any] | None"]
    | tuple[ZReader, int, int, "np.dtype[Any] | None", "Box | None"]
)
#: A request with its box made explicit.
_Request = tuple[ZReader, int, int, "np.dtype[Any] | None", Box]
#: Remote stores: byte ranges of one shard apart by at most this many bytes are fetched as one
#: request (what zarr 3.4 merges by default, ``sharding_coalesce_max_gap_bytes``).
REMOTE_GAP: Final = 1 << 20


def _normalise(request: Request) -> _Request:
    reader, z0, z1, dtype, *rest = request
    n_y, n_x = reader.shape[1:]
    box: Box = rest[0] if rest and rest[0] is not None else (0, n_y, 0, n_x)
    y0, y1, x0, x1 = (int(v) for v in box)
    if not (0 <= z0 <= z1 <= reader.shape[0] and 0 <= y0 <= y1 <= n_y and 0 <= x0 <= x1 <= n_x):
        raise IndexError(
            f"{reader.where}: box z {z0}:{z1}, y {y0}:{y1}, x {x0}:{x1} "
            f"outside the array's shape {reader.shape}"
        )
    return reader, int(z0), int(z1), dtype, (y0, y1, x0, x1)


def read_blocks(requests: Sequence[Request]) -> list[np.ndarray]:
    """Read boxes ``[z0, z1) x [y0, y1) x [x0, x1)`` of several arrays; their I/O is batched.

    Each request is ``(reader, z0, z1, dtype)`` (whole slices) or ``(reader, z0, z1, dtype,
    (y0, y1, x0, x1))``: only the inner chunks (tiles) the box touches are fetched and
    decoded, into an output of ``dtype`` (None: the stored dtype). Shard indexes not yet
    cached are fetched in one batch, then the chunks in a second one: the byte ranges of
    one shard are merged where they touch (on remote stores, where they lie within
    :data:`REMOTE_GAP`), so a slice of a C-order shard is one range; a request spanning a
    whole shard fetches the shard object at once.
    """
    normal = [_normalise(r) for r in requests]
    out = _allocate(
        [
            ((z1 - z0, y1 - y0, x1 - x0), np.dtype(r.dtype if dtype is None else dtype))
            for r, z0, z1, dtype, (y0, y1, x0, x1) in normal
        ]
    )
    pieces: list[_Piece] = []
    for n, (reader, z0, z1, _, (y0, y1, x0, x1)) in enumerate(normal):
        layout = reader.layout
        if z1 == z0 or y1 == y0 or x1 == x0:
            continue
        if layout is None:
            out[n][...] = reader.array[z0:z1, y0:y1, x0:x1]
            continue
        for shard in range(z0 // layout.shard_z, (z1 - 1) // layout.shard_z + 1):
            lo = max(z0, shard * layout.shard_z)
            hi = min(z1, (shard + 1) * layout.shard_z)
            pieces.append((n, reader, shard, lo, hi))
    shards = _fetch_shards_and_indexes(normal, pieces)
    _read_chunks(normal, pieces, shards, out)
    return out


#: A lean request's part in one shard: (request number, reader, shard, first z, stop z).
_Piece = tuple[int, ZReader, int, int, int]


def _fetch_shards_and_indexes(
    requests: Sequence[_Request], pieces: Sequence[_Piece]
) -> dict[int, bytes]:
    """First batch: the whole shards of the pieces spanning one, the uncached indexes of others.

    Indexes are checked against the metadata and cached in their reader; whole shards are
    checked and returned by piece number.
    """
    first: list[_Fetch] = []
    first_of: list[tuple[str, int]] = []
    for p, (n, reader, shard, lo, hi) in enumerate(pieces):
        layout = reader.layout
        assert layout is not None
        whole = (
            lo == shard * layout.shard_z
            and hi == min((shard + 1) * layout.shard_z, reader.shape[0])
            and requests[n][4] == (0, reader.shape[1], 0, reader.shape[2])
        )
        if whole and hi - lo > 1:
            first.append((layout.store, layout.local_root, layout.key(shard), None))
            first_of.append(("shard", p))
        elif reader.cached_index(shard) is None:
            first.append(
                (layout.store, layout.local_root, layout.key(shard), layout.index.byte_range())
            )
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
            reader.check_index(shard, layout.index.split(data))
        else:
            reader.check_index(shard, data)
            reader.remember_index(shard, layout.decode_index(data), identity)
    return shards


def _tiles(
    reader: ZReader, table: np.ndarray, shard: int, lo: int, hi: int, box: Box
) -> np.ndarray:
    """The chunks of slices ``[lo, hi)`` that ``box`` touches, with their place in the shard.

    An int64 ``[n, 5]`` array of rows ``(offset, length, z, tile row, tile column)``.
    """
    layout = reader.layout
    assert layout is not None
    rows, columns = layout.tiles(*box)
    if hi - lo == len(rows) == len(columns) == 1:  # one chunk (a slice of whole slices): the
        # hot path of slice reads, where the arrays below cost more than the lookup
        entry = layout.entry(lo - shard * layout.shard_z, rows.start, columns.start)
        offset, length = (int(v) for v in table[entry])
        if offset == EMPTY_ENTRY or length == EMPTY_ENTRY:
            reader.missing(lo, "its chunk is missing from the shard")
        return np.array([[offset, length, lo, rows.start, columns.start]], dtype=np.int64)
    n_rows, n_columns = layout.grid
    # entry numbers in C order of (z, tile row, tile column); z, row and column follow
    first = (lo - shard * layout.shard_z) * n_rows
    row_starts = np.arange(first, first + (hi - lo) * n_rows, n_rows)[:, None] + rows.start
    entries = ((row_starts + np.arange(len(rows)))[:, :, None] * n_columns).ravel()
    entries = (entries.reshape(-1, 1) + np.arange(columns.start, columns.stop)).ravel()
    picked = table[entries].astype(np.int64)  # the empty marker becomes -1
    z, rest = np.divmod(entries, n_rows * n_columns)
    z += shard * layout.shard_z
    row, column = np.divmod(rest, n_columns)
    empty = (picked < 0).any(axis=1)
    if empty.any():
        reader.missing(int(z[int(np.argmax(empty))]), "its chunk is missing from the shard")
    return np.stack([picked[:, 0], picked[:, 1], z, row, column], axis=1)


def _runs(tiles: np.ndarray, gap: int) -> list[tuple[int, int, np.ndarray]]:
    """Chunks sorted by offset and merged into ``(start, stop, chunks)`` byte ranges."""
    if len(tiles) <= 1:  # one whole slice: nothing to sort or merge
        return [(int(t[0]), int(t[0] + t[1]), tiles) for t in tiles]
    tiles = tiles[np.argsort(tiles[:, 0], kind="stable")]
    stops = np.maximum.accumulate(tiles[:, 0] + tiles[:, 1])
    first = np.ones(len(tiles), dtype=bool)
    first[1:] = tiles[1:, 0] > stops[:-1] + gap
    bounds = [*np.flatnonzero(first).tolist(), len(tiles)]
    return [
        (int(tiles[a, 0]), int(stops[b - 1]), tiles[a:b])
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]


def _read_chunks(
    requests: Sequence[_Request],
    pieces: Sequence[_Piece],
    shards: dict[int, bytes],
    out: list[np.ndarray],
) -> None:
    """Second batch: decode the whole shards fetched, fetch and decode the chunks of others."""
    scratch: dict[int, np.ndarray] = {}
    second: list[_Fetch] = []
    second_of: list[tuple[int, int, int, np.ndarray]] = []
    for p, (n, reader, shard, lo, hi) in enumerate(pieces):
        layout = reader.layout
        assert layout is not None
        z0, box = requests[n][1], requests[n][4]
        if p in shards:
            whole = memoryview(shards[p])
            table = layout.decode_index(layout.index.split(shards[p]))
            for offset, length, z, row, column in _tiles(
                reader, table, shard, lo, hi, box
            ).tolist():
                if offset + length > len(whole):
                    reader.missing(z, "its chunk lies past the end of the shard")
                chunk = whole[offset : offset + length]
                _put(out[n], z - z0, row, column, layout, box, chunk, scratch)
            continue
        cached = reader.cached_index(shard)
        assert cached is not None
        gap = 0 if layout.local_root is not None else REMOTE_GAP
        for start, stop, members in _runs(_tiles(reader, cached, shard, lo, hi, box), gap):
            byte_range = RangeByteRequest(start, stop)
            second.append((layout.store, layout.local_root, layout.key(shard), byte_range))
            second_of.append((n, shard, start, members))
    for (n, shard, start, members), (data, identity) in zip(second_of, _fetch(second), strict=True):
        reader, z0, box = requests[n][0], requests[n][1], requests[n][4]
        layout = reader.layout
        assert layout is not None
        reader.check_identity(shard, identity)
        if data is None:
            reader.missing(int(members[0, 2]), f"shard {layout.key(shard)!r} is missing")
        view = memoryview(data)
        for offset, length, z, row, column in members.tolist():
            if offset + length - start > len(view):
                reader.missing(z, f"shard {layout.key(shard)!r} is truncated")
            chunk = view[offset - start : offset - start + length]
            _put(out[n], z - z0, row, column, layout, box, chunk, scratch)


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
    row: int,
    column: int,
    layout: ShardLayout,
    box: Box,
    chunk: Any,
    scratch: dict[int, np.ndarray],
) -> None:
    """Decode tile ``(row, column)`` of slice ``i`` of ``block`` and copy its part in ``box``."""
    tile = layout.decode_chunk(chunk, scratch)
    (ty, tx), (y0, y1, x0, x1) = layout.tile, box
    top, left = row * ty, column * tx
    ya, yb, xa, xb = max(y0, top), min(y1, top + ty), max(x0, left), min(x1, left + tx)
    block[i, ya - y0 : yb - y0, xa - x0 : xb - x0] = tile[
        ya - top : yb - top, xa - left : xb - left
    ]


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
