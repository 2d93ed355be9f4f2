"""A lean reader and writer of ``(z, y, x)`` arrays sharded along z, for any inner chunk shape.

The prototype the chunk-layout benchmark (issue #18) measures. It generalises the package's
:mod:`ctspine_zarr.io.slicereader` (one whole slice per inner chunk) to inner chunks of any
``(cz, cy, cx)`` inside shards of ``(sz, Y', X')`` that span the whole plane (``Y'`` and ``X'``
are ``Y`` and ``X`` rounded up to whole chunks):

* each shard's index is fetched once per reader and cached;
* a read of a box (a slice, a patch, a volume) touches only the inner chunks the box
  overlaps; their byte ranges are sorted and coalesced (adjacent ranges, or ranges apart by
  at most ``max_gap`` bytes, become one request), so a slice of a shard written in C order
  of the chunk grid is one range;
* local files are read with ``os.pread``, other stores (fsspec) through the zarr store API
  with the requests of a batch gathered concurrently;
* chunks are decoded with numcodecs (or python-blosc2) Blosc, which release the GIL, on a
  small pool of threads, each chunk decoded straight into the caller's preallocated output
  when its place there is contiguous, else into a per-thread scratch buffer and copied.

:func:`write_tiled` writes an array of that layout the way the package's ingest writes
today's (``ctspine_zarr.io.shardwriter``): chunks encoded with the array's own codecs
(:class:`~ctspine_zarr.io.shardformat.ChunkCodec`), one object per shard, the chunks in C
order of the inner chunk grid. zarr-python itself writes them in Morton order (and zarrs in
the order its threads finish), where a slice's tiles are scattered through the shard.
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np
import zarr
from numcodecs.blosc import decompress as numcodecs_decompress
from zarr.abc.store import RangeByteRequest, Store, SuffixByteRequest
from zarr.buffer import default_buffer_prototype
from zarr.storage import LocalStore

from ctspine_zarr.compat import sync
from ctspine_zarr.io.shardformat import EMPTY_ENTRY, ChunkCodec, IndexFormat, sharding_config

__all__ = [
    "Box",
    "LeanArray",
    "TileLayout",
    "create_like",
    "read_many",
    "shard_runs",
    "write_tiled",
]

#: ``((z0, z1), (y0, y1), (x0, x1))``: a half-open box of voxel indices.
Box = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]

_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _pool(threads: int) -> ThreadPoolExecutor:
    """This process's pool of ``threads`` decoding (or encoding) threads."""
    with _POOLS_LOCK:
        pool = _POOLS.get(threads)
        if pool is None:
            pool = _POOLS[threads] = ThreadPoolExecutor(threads, thread_name_prefix="lean")
        return pool


def _forget_pools() -> None:
    """In a forked child the parent's pool threads do not exist: start afresh."""
    global _POOLS_LOCK
    _POOLS.clear()
    _POOLS_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools)


def _blosc2_decompress() -> Callable[[Any, np.ndarray], Any]:
    import blosc2

    def decompress(source: Any, dest: np.ndarray) -> Any:
        return blosc2.decompress(source, dst=dest)

    return decompress


DECODERS: dict[str, Callable[[], Callable[[Any, np.ndarray], Any]]] = {
    "numcodecs": lambda: numcodecs_decompress,
    "blosc2": _blosc2_decompress,
}


@dataclass(frozen=True)
class TileLayout:
    """The shard and chunk geometry and the codecs of one array."""

    shape: tuple[int, int, int]
    shard: tuple[int, int, int]
    chunk: tuple[int, int, int]
    grid: tuple[int, int, int]
    index: IndexFormat
    codec: ChunkCodec
    dtype: np.dtype[Any]
    fill_value: Any

    @classmethod
    def of(cls, array: zarr.Array) -> TileLayout:
        """The layout of ``array``; ValueError when it is not sharded along z only."""
        config = sharding_config(array)
        name = array.store_path.path
        if array.ndim != 3 or config is None:
            raise ValueError(f"{name}: not a 3-D array with one sharding_indexed codec")
        meta: Any = array.metadata
        shape = tuple(int(n) for n in array.shape)
        shard = tuple(int(n) for n in meta.chunk_grid.chunk_shape)
        chunk = tuple(int(n) for n in config["chunk_shape"])
        if any(s % c for s, c in zip(shard, chunk, strict=True)):
            raise ValueError(f"{name}: shard {shard} is not a multiple of chunk {chunk}")
        for axis in (1, 2):
            if shard[axis] != math.ceil(shape[axis] / chunk[axis]) * chunk[axis]:
                raise ValueError(f"{name}: shard {shard} does not span the plane {shape}")
        grid = tuple(s // c for s, c in zip(shard, chunk, strict=True))
        index = IndexFormat.of(config, math.prod(grid))
        dtype = np.dtype(array.dtype)
        codec = ChunkCodec.of(config.get("codecs", ()), dtype, (chunk[0] * chunk[1], chunk[2]))
        if index is None or codec is None:
            raise ValueError(f"{name}: index or chunk codecs not supported")
        return cls(
            shape,  # type: ignore[arg-type]
            shard,  # type: ignore[arg-type]
            chunk,  # type: ignore[arg-type]
            grid,  # type: ignore[arg-type]
            index,
            codec,
            dtype,
            meta.fill_value,
        )

    @property
    def n_shards(self) -> int:
        """Shards along z."""
        return math.ceil(self.shape[0] / self.shard[0])

    @property
    def chunk_nbytes(self) -> int:
        """Bytes of one decoded inner chunk."""
        return math.prod(self.chunk) * self.dtype.itemsize


@dataclass
class _Task:
    """One inner chunk to decode: its bytes and where its values go."""

    data: np.ndarray  # the chunk's encoded bytes (uint8, read-only)
    dest: np.ndarray  # the view of the output it fills
    src: tuple[slice, slice, slice]  # the part of the chunk it holds
    whole: bool  # the chunk fills ``dest`` exactly
    reader: LeanArray


class LeanArray:
    """Lean reads of boxes of one ``(z, y, x)`` array (see the module docstring).

    Parameters
    ----------
    array
        The zarr array (its store is read directly).
    threads
        Decoding threads (1: decode in the calling thread).
    decoder
        ``"numcodecs"`` or ``"blosc2"`` (Blosc chunks; other codecs use numcodecs' chain).
    max_gap
        Byte ranges of one shard this close are fetched as one request.
    """

    def __init__(
        self,
        array: zarr.Array,
        *,
        threads: int = 2,
        decoder: str = "numcodecs",
        max_gap: int = 0,
    ) -> None:
        self.layout = TileLayout.of(array)
        self.shape = self.layout.shape
        self.dtype = self.layout.dtype
        self.threads = max(1, int(threads))
        self.max_gap = int(max_gap)
        self.decompress = DECODERS[decoder]()
        store = array.store_path.store
        self.store: Store = store
        self.root = Path(store.root) if isinstance(store, LocalStore) else None
        self.prefix = array.store_path.path
        self.metadata: Any = array.metadata
        self._index: dict[int, np.ndarray] = {}
        self._keys: dict[int, str] = {}
        self._checksum = _checksum_only(self.layout.codec)

    def key(self, shard: int) -> str:
        """The store key of shard number ``shard``."""
        key = self._keys.get(shard)
        if key is None:
            chunk_key = self.metadata.encode_chunk_key((shard, 0, 0))
            key = self._keys[shard] = f"{self.prefix}/{chunk_key}" if self.prefix else chunk_key
        return key

    def forget_indexes(self) -> None:
        """Drop the cached shard indexes (the next read fetches them again)."""
        self._index.clear()

    def read(self, box: Box, out: np.ndarray | None = None) -> np.ndarray:
        """The values of ``box``, into ``out`` when given (its shape is the box's)."""
        return read_many([(self, box, out)])[0]

    def read_slice(self, z: int, out: np.ndarray | None = None) -> np.ndarray:
        """Slice ``z`` as a ``[Y, X]`` array."""
        _, ny, nx = self.shape
        block = None if out is None else out.reshape(1, ny, nx)
        return self.read(((z, z + 1), (0, ny), (0, nx)), block)[0]

    def chunks_of(self, box: Box) -> dict[int, list[tuple[int, int, int, int]]]:
        """Per shard, the inner chunks ``box`` touches: ``(entry, zc, yc, xc)`` in C order."""
        lay = self.layout
        (z0, z1), (y0, y1), (x0, x1) = _check_box(box, lay.shape)
        sz = lay.shard[0]
        cz, cy, cx = lay.chunk
        _, gy, gx = lay.grid
        out: dict[int, list[tuple[int, int, int, int]]] = {}
        if z1 <= z0 or y1 <= y0 or x1 <= x0:
            return out
        ys = range(y0 // cy, (y1 - 1) // cy + 1)
        xs = range(x0 // cx, (x1 - 1) // cx + 1)
        for shard in range(z0 // sz, (z1 - 1) // sz + 1):
            base = shard * sz
            lo, hi = max(z0, base) - base, min(z1, base + sz) - base
            out[shard] = [
                ((zc * gy + yc) * gx + xc, zc, yc, xc)
                for zc in range(lo // cz, (hi - 1) // cz + 1)
                for yc in ys
                for xc in xs
            ]
        return out


def _check_box(box: Box, shape: tuple[int, int, int]) -> Box:
    for (lo, hi), n in zip(box, shape, strict=True):
        if not 0 <= lo <= hi <= n:
            raise IndexError(f"box {box} outside an array of shape {shape}")
    return box


def shard_runs(
    table: np.ndarray, entries: Sequence[int], max_gap: int = 0
) -> list[tuple[int, int, list[int]]]:
    """Coalesce the byte ranges of ``entries`` of a shard index into requests.

    Returns ``(start, stop, entries)`` runs in offset order: entries whose ranges are
    adjacent, or apart by at most ``max_gap`` bytes, share a run.
    """
    picked = np.asarray(entries, dtype=np.int64)
    offsets, lengths = table[picked, 0], table[picked, 1]
    if (offsets == EMPTY_ENTRY).any():
        missing = int(picked[np.flatnonzero(offsets == EMPTY_ENTRY)[0]])
        raise ValueError(f"inner chunk {missing} is missing from its shard")
    order = np.argsort(offsets, kind="stable")
    runs: list[tuple[int, int, list[int]]] = []
    stop = -1
    for k in order.tolist():
        offset, length, entry = int(offsets[k]), int(lengths[k]), int(picked[k])
        if runs and offset <= stop + max_gap:
            stop = max(stop, offset + length)
            runs[-1][2].append(entry)
            runs[-1] = (runs[-1][0], stop, runs[-1][2])
        else:
            stop = offset + length
            runs.append((offset, stop, [entry]))
    return runs


_Fetch = tuple["LeanArray", str, "RangeByteRequest | SuffixByteRequest"]


def _fetch(requests: Sequence[_Fetch]) -> list[bytes]:
    """Fetch byte ranges: local files with ``pread``, other stores concurrently."""
    out: list[bytes] = [b""] * len(requests)
    remote: list[int] = []
    fds: dict[str, int] = {}
    try:
        for i, (reader, key, byte_range) in enumerate(requests):
            if reader.root is None:
                remote.append(i)
                continue
            path = f"{reader.root}/{key}"
            fd = fds.get(path)
            if fd is None:
                fd = fds[path] = os.open(path, os.O_RDONLY)
            if isinstance(byte_range, SuffixByteRequest):
                size = os.fstat(fd).st_size
                start = max(0, size - byte_range.suffix)
                out[i] = os.pread(fd, size - start, start)
            else:
                out[i] = os.pread(fd, byte_range.end - byte_range.start, byte_range.start)
    finally:
        for fd in fds.values():
            os.close(fd)
    if remote:
        prototype = default_buffer_prototype()

        async def gather() -> list[Any]:
            return await asyncio.gather(
                *(
                    requests[i][0].store.get(requests[i][1], prototype, requests[i][2])
                    for i in remote
                )
            )

        for i, buf in zip(remote, sync(gather()), strict=True):
            if buf is None:
                raise FileNotFoundError(f"{requests[i][1]}: missing")
            out[i] = buf.to_bytes()
    return out


#: Where the chunks of one index along one axis go: (dst slice, src slice, whole) each.
_Axis = list[tuple[slice, slice, bool]]


def _axis(lo: int, hi: int, first: int, count: int, origin: int, size: int) -> _Axis:
    """For chunks ``first .. first + count - 1`` of ``size`` from ``origin``: their part of
    ``[lo, hi)`` as (slice of the output, slice of the chunk, whether the whole chunk)."""
    out = []
    for k in range(first, first + count):
        c0 = origin + k * size
        a, b = max(lo, c0), min(hi, c0 + size)
        out.append((slice(a - lo, b - lo), slice(a - c0, b - c0), a == c0 and b == c0 + size))
    return out


def read_many(items: Sequence[tuple[LeanArray, Box, np.ndarray | None]]) -> list[np.ndarray]:
    """Read several boxes (of one or several arrays) in one batch of I/O and one of decoding.

    Uncached shard indexes are fetched first (one concurrent batch), then every coalesced
    range (a second batch); the chunks of all boxes are then decoded on the largest thread
    pool among the readers.
    """
    outs: list[np.ndarray] = []
    plans: list[tuple[int, LeanArray, int, list[tuple[int, int, int, int]]]] = []
    for n, (reader, box, out) in enumerate(items):
        shape = tuple(hi - lo for lo, hi in box)
        if out is None:
            out = np.empty(shape, dtype=reader.dtype)
        elif out.shape != shape:
            raise ValueError(f"out of shape {out.shape} for a box of shape {shape}")
        outs.append(out)
        plans += [(n, reader, s, chunks) for s, chunks in reader.chunks_of(box).items()]
    missing = sorted(
        {(id(r), s): (r, s) for _, r, s, _ in plans if s not in r._index}.values(),
        key=lambda rs: rs[1],
    )
    fetched = _fetch([(r, r.key(s), SuffixByteRequest(r.layout.index.size)) for r, s in missing])
    for (reader, shard), raw in zip(missing, fetched, strict=True):
        if not reader.layout.index.at_end:
            raise ValueError("the prototype reads indexes at the end of a shard only")
        reader._index[shard] = reader.layout.index.decode(raw)
    requests: list[_Fetch] = []
    members: list[tuple[int, LeanArray, int, int, list[int]]] = []
    for n, reader, shard, chunks in plans:
        table = reader._index[shard]
        for start, stop, entries in shard_runs(table, [c[0] for c in chunks], reader.max_gap):
            requests.append((reader, reader.key(shard), RangeByteRequest(start, stop)))
            members.append((n, reader, shard, start, entries))
    data = _fetch(requests)
    tasks: list[_Task] = []
    places: dict[tuple[int, int], dict[int, Any]] = {}
    for n, reader, shard, chunks in plans:
        lay, box, out = reader.layout, items[n][1], outs[n]
        base = shard * lay.shard[0]
        first = chunks[0]
        zs = _axis(*box[0], first[1], chunks[-1][1] - first[1] + 1, base, lay.chunk[0])
        ys = _axis(*box[1], first[2], chunks[-1][2] - first[2] + 1, 0, lay.chunk[1])
        xs = _axis(*box[2], first[3], chunks[-1][3] - first[3] + 1, 0, lay.chunk[2])
        places[(n, shard)] = {
            entry: (zs[zc - first[1]], ys[yc - first[2]], xs[xc - first[3]])
            for entry, zc, yc, xc in chunks
        }
    for (n, reader, shard, start, entries), run in zip(members, data, strict=True):
        table = reader._index[shard]
        where = places[(n, shard)]
        out = outs[n]
        view = np.frombuffer(run, dtype=np.uint8)
        for entry in entries:
            offset = int(table[entry, 0]) - start
            (dz, sz, wz), (dy, sy, wy), (dx, sx, wx) = where[entry]
            chunk = view[offset : offset + int(table[entry, 1])]
            tasks.append(_Task(chunk, out[dz, dy, dx], (sz, sy, sx), wz and wy and wx, reader))
    threads = max((r.threads for r, _, _ in items), default=1)
    _decode_all(tasks, threads)
    return outs


def _checksum_only(codec: ChunkCodec) -> bool:
    """Whether the codecs after Blosc are exactly one crc32c (the store's chunks)."""
    return codec.blosc_dtype is not None and len(codec.compressors) == 2


_local = threading.local()


def _scratch(nbytes: int) -> np.ndarray:
    buffers = getattr(_local, "buffers", None)
    if buffers is None:
        buffers = _local.buffers = {}
    buffer = buffers.get(nbytes)
    if buffer is None:
        buffer = buffers[nbytes] = np.empty(nbytes, dtype=np.uint8)
    return buffer


def _decode(tasks: Sequence[_Task]) -> None:
    for task in tasks:
        reader = task.reader
        lay = reader.layout
        data = task.data
        if reader._checksum:  # Blosc then crc32c: check the CRC, decode the rest
            inner: Any = data[:-4]
            if google_crc32c.value(inner) != int.from_bytes(data[-4:].tobytes(), "little"):
                raise ValueError(f"{reader.prefix}: an inner chunk fails its CRC32C checksum")
        elif lay.codec.blosc_dtype is not None:
            inner = data
            for _, check in reversed(lay.codec.compressors[1:]):  # the checksums
                inner = check(inner)
        else:
            values = lay.codec.decode(bytes(data), {}).reshape(lay.chunk)
            task.dest[...] = values[task.src]
            continue
        dest = task.dest
        if task.whole and dest.flags.c_contiguous:
            reader.decompress(inner, dest)  # decoded in place
            continue
        scratch = _scratch(lay.chunk_nbytes)
        reader.decompress(inner, scratch)
        dest[...] = scratch.view(lay.dtype).reshape(lay.chunk)[task.src]


def _decode_all(tasks: list[_Task], threads: int) -> None:
    """Decode the chunks on ``threads`` threads (the calling thread takes one share)."""
    if threads <= 1 or len(tasks) < 2:
        _decode(tasks)
        return
    shares: list[list[_Task]] = [[] for _ in range(min(threads, len(tasks)))]
    loads = [0] * len(shares)
    for task in sorted(tasks, key=lambda t: -len(t.data)):  # balance the shares by bytes
        k = loads.index(min(loads))
        shares[k].append(task)
        loads[k] += len(task.data)
    pool = _pool(threads - 1)
    futures = [pool.submit(_decode, share) for share in shares[1:]]
    _decode(shares[0])
    for future in futures:
        future.result()


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def create_like(
    group: zarr.Group,
    name: str,
    source: zarr.Array,
    chunk: tuple[int, int, int],
    shard_slices: int = 32,
    codecs: Sequence[dict[str, Any]] | None = None,
) -> zarr.Array:
    """A new array ``name`` in ``group`` with ``source``'s shape, dtype and inner codecs.

    Its inner chunks are ``chunk``; its shards hold ``shard_slices`` slices (fewer for a
    shorter array, rounded up to whole chunks) and the whole plane, rounded up to whole
    chunks. ``codecs`` (serializer first, as metadata dicts) replace the source's.
    """
    config = sharding_config(source)
    if config is None:
        raise ValueError(f"{source.store_path.path}: not a sharded array")
    if codecs is None:
        codecs = [c if isinstance(c, dict) else c.to_dict() for c in config["codecs"]]
    nz, ny, nx = (int(n) for n in source.shape)
    cz, cy, cx = chunk
    shard = (
        cz * math.ceil(max(1, min(shard_slices, nz)) / cz),
        cy * math.ceil(ny / cy),
        cx * math.ceil(nx / cx),
    )
    return group.create_array(
        name,
        shape=source.shape,
        dtype=source.dtype,
        chunks=chunk,
        shards=shard,
        serializer=codecs[0],
        compressors=codecs[1:],
        fill_value=source.metadata.fill_value,
        config={"write_empty_chunks": True},
        dimension_names=("z", "y", "x"),
        overwrite=True,
    )


def write_tiled(array: zarr.Array, data: np.ndarray, *, threads: int = 2) -> None:
    """Write ``data`` (the whole array) into ``array``, one object per shard, chunks in C order.

    Chunks at the array's edge are padded with the fill value before encoding, as zarr
    does; chunks wholly past the end of the array are left out of the last shard (marked
    empty in its index), as zarr does too.
    """
    lay = TileLayout.of(array)
    if tuple(data.shape) != lay.shape:
        raise ValueError(f"data of shape {data.shape} for an array of shape {lay.shape}")
    values = np.asarray(data, dtype=lay.dtype)
    cz, cy, cx = lay.chunk
    gz, gy, gx = lay.grid
    nz = lay.shape[0]
    store = array.store_path.store
    prefix = array.store_path.path
    meta: Any = array.metadata

    def encode(origin: tuple[int, int, int]) -> bytes:
        z, y, x = origin
        block = values[z : z + cz, y : y + cy, x : x + cx]
        if block.shape != lay.chunk:
            padded = np.full(lay.chunk, lay.fill_value, dtype=lay.dtype)
            padded[: block.shape[0], : block.shape[1], : block.shape[2]] = block
            block = padded
        return lay.codec.encode(block)

    mapper: Any = map if threads <= 1 else _pool(threads).map
    for shard in range(lay.n_shards):
        base = shard * lay.shard[0]
        origins = [
            (base + zc * cz, yc * cy, xc * cx)
            for zc in range(gz)
            if base + zc * cz < nz
            for yc in range(gy)
            for xc in range(gx)
        ]
        body = lay.index.assemble(list(mapper(encode, origins)))
        key = meta.encode_chunk_key((shard, 0, 0))
        buffer = default_buffer_prototype().buffer.from_bytes(body)
        sync(store.set(f"{prefix}/{key}" if prefix else key, buffer))
