"""The byte layout of the store's shards, in one place: read, written and verified from here.

A ``(z, y, x)`` array of the store is one ``sharding_indexed`` codec (Zarr v3 sharding
spec) over ``(1, ty, tx)`` inner chunks (tiles of one axial slice; format 4 writes
``(1, 128, 128)``, formats 1-3 one whole slice ``(1, Y, X)``), in shards of ``shard_z``
slices and the whole plane rounded up to whole tiles, ``(shard_z, ceil(Y / ty) * ty,
ceil(X / tx) * tx)``. A shard object is its chunks' encoded bytes followed
(``index_location: "end"``) or preceded (``"start"``) by the index: one pair ``(offset,
nbytes)`` of uint64 per inner chunk in C order of the chunk grid (z, then tile row, then
tile column), coded by the index codecs (``bytes`` of an endian, then optionally
``crc32c``: 4 bytes little-endian). A chunk left out is the pair ``(2**64 - 1, 2**64 - 1)``.
The package's writer (:mod:`ctspine_zarr.io.shardwriter`) also puts the chunks themselves
in C order, so that the tiles of one slice are one contiguous byte range (zarr-python
writes Morton order; both are read).

Everything is read from the codecs' public metadata (``codec.to_dict()``: strings, the same
on every zarr 3), and the chunks of the codecs the store writes (``bytes``, ``blosc``,
``zstd``, ``gzip``, ``crc32c`` and this package's ``ctspine_zarr.jpegls``) are coded with
numcodecs, google-crc32c and imagecodecs, the libraries zarr itself calls, so the bytes are
zarr's (tests compare them); Blosc chunks are decoded with python-blosc2 (which reads the
Blosc1 frames numcodecs writes, 1.4-2x faster: docs/chunk-layout.md) when it imports, else
numcodecs. An array with any other layout or codec gets no :class:`ShardLayout`, and the
callers use the public ``zarr.Array`` path.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import google_crc32c
import numcodecs
import numpy as np
import zarr
from numcodecs.blosc import decompress as numcodecs_decompress
from zarr.abc.store import RangeByteRequest, Store, SuffixByteRequest
from zarr.storage import LocalStore

from . import codecs as ctspine_codecs

__all__ = [
    "EMPTY_ENTRY",
    "ChunkCodec",
    "IndexFormat",
    "ShardLayout",
    "codec_json",
    "sharding_config",
    "tiles_per_slice",
]

#: Offset and length of a chunk that a shard index marks as absent.
EMPTY_ENTRY: Final = 2**64 - 1
#: Bytes of the crc32c codec's checksum.
_CRC_SIZE: Final = 4


def _blosc2_decompress() -> Callable[[Any, np.ndarray], Any] | None:
    """python-blosc2's decompression into a buffer, or None when blosc2 does not import."""
    try:
        import blosc2
    except ImportError:  # pragma: no cover - a declared dependency; numcodecs then decodes
        return None

    def decompress(source: Any, dest: np.ndarray) -> None:
        blosc2.decompress(source, dst=dest)

    return decompress


#: Decompresses one Blosc chunk into a preallocated buffer (blosc2 when available: its
#: decoder is faster than numcodecs' on the store's small chunks; both raise on bad data).
blosc_decompress: Callable[[Any, np.ndarray], Any] = _blosc2_decompress() or numcodecs_decompress


def codec_json(codec: Any) -> tuple[str, dict[str, Any]]:
    """``(name, configuration)`` of a zarr codec (object or metadata dict), strings only."""
    data = codec if isinstance(codec, dict) else codec.to_dict()
    return str(data["name"]), dict(data.get("configuration") or {})


def sharding_config(array: zarr.Array) -> dict[str, Any] | None:
    """The ``sharding_indexed`` configuration of ``array`` when that is its only codec."""
    codecs = tuple(getattr(array.metadata, "codecs", ()))
    if len(codecs) != 1:
        return None
    name, config = codec_json(codecs[0])
    return config if name == "sharding_indexed" else None


def _check_crc(data: Any) -> np.ndarray:
    """``data`` without its trailing CRC32C, which must match (as zarr's crc32c codec)."""
    view = np.frombuffer(data, dtype=np.uint8)
    if len(view) < _CRC_SIZE:
        raise ValueError(f"{len(view)} bytes cannot hold a CRC32C checksum")
    inner, stored = view[:-_CRC_SIZE], view[-_CRC_SIZE:].tobytes()
    computed = google_crc32c.value(inner).to_bytes(_CRC_SIZE, "little")
    if computed != stored:
        raise ValueError(
            "Stored and computed checksum do not match. "
            f"Stored: {stored!r}. Computed: {computed!r}."
        )
    return inner


def _add_crc(data: bytes) -> bytes:
    return data + google_crc32c.value(data).to_bytes(_CRC_SIZE, "little")


# --------------------------------------------------------------------------------------------
# The shard index
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IndexFormat:
    """Where a shard's index lies and how it is coded."""

    n_entries: int
    at_end: bool
    big_endian: bool
    checksum: bool

    @classmethod
    def of(cls, config: dict[str, Any], n_entries: int) -> IndexFormat | None:
        """The index format of a ``sharding_indexed`` configuration; None if not supported."""
        location = str(config.get("index_location", "end"))
        codecs = [codec_json(c) for c in config.get("index_codecs", ())]
        if location not in ("start", "end") or not codecs or codecs[0][0] != "bytes":
            return None
        endian = codecs[0][1].get("endian", "little")
        rest = [name for name, _ in codecs[1:]]
        if endian not in ("little", "big") or rest not in ([], ["crc32c"]):
            return None
        return cls(n_entries, location == "end", endian == "big", rest == ["crc32c"])

    @property
    def size(self) -> int:
        """Bytes of the encoded index."""
        return 16 * self.n_entries + (_CRC_SIZE if self.checksum else 0)

    @property
    def dtype(self) -> np.dtype[Any]:
        """The dtype of the index's numbers as stored."""
        return np.dtype(">u8" if self.big_endian else "<u8")

    def byte_range(self) -> RangeByteRequest | SuffixByteRequest:
        """The request for the index in its shard object."""
        return SuffixByteRequest(self.size) if self.at_end else RangeByteRequest(0, self.size)

    def split(self, shard: bytes) -> bytes:
        """The encoded index within the bytes of a whole shard object."""
        return shard[-self.size :] if self.at_end else shard[: self.size]

    def data_bounds(self, shard_size: int) -> tuple[int, int]:
        """``[low, high)`` of the bytes where chunks may lie in a shard of ``shard_size``."""
        return (0, shard_size - self.size) if self.at_end else (self.size, shard_size)

    def decode(self, raw: bytes) -> np.ndarray:
        """The ``uint64 [n_entries, 2]`` table ``(offset, nbytes)`` of an encoded index.

        Raises ValueError if ``raw`` has the wrong size or fails its checksum.
        """
        if len(raw) != self.size:
            raise ValueError(f"a shard index of {len(raw)} bytes, expected {self.size}")
        body = _check_crc(raw) if self.checksum else raw
        table = np.frombuffer(body, dtype=self.dtype).reshape(self.n_entries, 2)
        return table.astype(np.uint64)  # native and writable

    def encode(self, table: np.ndarray) -> bytes:
        """The encoded index of a ``[n_entries, 2]`` table."""
        body = np.ascontiguousarray(table, dtype=self.dtype).tobytes()
        return _add_crc(body) if self.checksum else body

    def assemble(self, chunks: Sequence[bytes]) -> bytes:
        """A shard object holding ``chunks`` in order (the entries past them are empty)."""
        table = np.full((self.n_entries, 2), EMPTY_ENTRY, dtype=np.uint64)
        lengths = np.array([len(c) for c in chunks], dtype=np.uint64)
        start = self.size if not self.at_end else 0
        table[: len(chunks), 1] = lengths
        table[: len(chunks), 0] = np.cumsum(lengths) - lengths + np.uint64(start)
        index = self.encode(table)
        return b"".join([*chunks, index] if self.at_end else [index, *chunks])


def _decompress(source: Any, dest: np.ndarray) -> None:
    """Decompress a Blosc chunk into ``dest``, which its header must say it fills exactly.

    (Both decoders accept a larger destination and leave its tail as it was: a chunk of the
    wrong size must fail, not return stale values.)
    """
    header = memoryview(source).cast("B")[4:8]
    if len(header) < 4 or int.from_bytes(header, "little") != dest.nbytes:
        raise ValueError(f"a Blosc chunk does not hold the {dest.nbytes} bytes of a chunk")
    try:
        blosc_decompress(source, dest)
    except Exception as err:  # blosc2 raises RuntimeError, numcodecs RuntimeError/ValueError
        raise ValueError(f"a Blosc chunk does not decompress ({err})") from err


# --------------------------------------------------------------------------------------------
# Inner chunks
# --------------------------------------------------------------------------------------------

_Bytes = Callable[[Any], Any]


def _bytes_codec(name: str, config: dict[str, Any]) -> tuple[_Bytes, _Bytes] | None:
    """``(encode, decode)`` of a bytes-to-bytes codec zarr implements with numcodecs."""
    if name == "crc32c":
        return _add_crc, _check_crc
    codec: Any
    if name == "blosc":
        shuffle = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}.get(str(config.get("shuffle")))
        if shuffle is None:
            return None
        codec = numcodecs.Blosc.from_config(
            {
                "cname": str(config["cname"]),
                "clevel": int(config["clevel"]),
                "shuffle": shuffle,
                "blocksize": int(config.get("blocksize", 0)),
                "typesize": int(config.get("typesize", 1)),
            }
        )
    elif name == "zstd":
        codec = numcodecs.Zstd(
            level=int(config.get("level", 0)), checksum=bool(config.get("checksum", False))
        )
    elif name == "gzip":
        codec = numcodecs.GZip(level=int(config.get("level", 5)))
    else:
        return None

    def encode(data: bytes) -> bytes:
        return bytes(codec.encode(np.frombuffer(data, dtype=np.uint8)))

    def decode(data: Any) -> Any:
        return codec.decode(data)

    return encode, decode


@dataclass(frozen=True)
class ChunkCodec:
    """Codes one ``(1, Y, X)`` inner chunk as the array's codecs do."""

    dtype: np.dtype[Any]
    shape: tuple[int, int]
    #: ``"bytes"`` or the JPEG-LS codec's name
    serializer: str
    #: byte order of the ``bytes`` serializer (``<``, ``>`` or ``|``)
    order: Literal["<", ">", "|"]
    #: ``(encode, decode)`` of each bytes-to-bytes codec, in the metadata's order
    compressors: tuple[tuple[_Bytes, _Bytes], ...]
    #: the dtype of a chunk when only Blosc (and checksums) lie between it and the bytes
    blosc_dtype: np.dtype[Any] | None

    @classmethod
    def of(
        cls, codecs: Sequence[Any], dtype: np.dtype[Any], shape: tuple[int, int]
    ) -> ChunkCodec | None:
        """The chunk codec of the inner ``codecs`` (metadata dicts); None if not supported."""
        parsed = [codec_json(c) for c in codecs]
        if not parsed:
            return None
        serializer, config = parsed[0]
        order: Literal["<", ">", "|"] = "|"
        if serializer == "bytes":
            endian = config.get("endian", "little")
            if dtype.itemsize > 1:
                if endian not in ("little", "big"):
                    return None
                order = "<" if endian == "little" else ">"
        elif serializer != ctspine_codecs.JPEGLS_NAME or not ctspine_codecs.supports(dtype):
            return None
        compressors = []
        for name, conf in parsed[1:]:
            pair = _bytes_codec(name, conf)
            if pair is None:
                return None
            compressors.append(pair)
        names = [name for name, _ in parsed[1:]]
        blosc = (
            serializer == "bytes"
            and names[:1] == ["blosc"]
            and set(names[1:]) <= {"crc32c"}
            and order in ("|", "<" if sys.byteorder == "little" else ">")
        )
        return cls(dtype, shape, serializer, order, tuple(compressors), dtype if blosc else None)

    def encode(self, values: np.ndarray) -> bytes:
        """The encoded bytes of one chunk's ``values`` (shape ``(1, Y, X)`` or ``(Y, X)``)."""
        if self.serializer == "bytes":
            target = self.dtype.newbyteorder(self.order) if self.order != "|" else self.dtype
            data = np.ascontiguousarray(values, dtype=target).tobytes()
        else:
            plane = np.asarray(values, dtype=self.dtype).reshape(1, *self.shape)
            data = ctspine_codecs.encode(plane)
        for encode, _ in self.compressors:
            data = encode(data)
        return data

    def decode(self, data: bytes, scratch: dict[int, np.ndarray]) -> np.ndarray:
        """Decode one encoded chunk to a ``[Y, X]`` array.

        A Blosc chunk is decompressed into a buffer from ``scratch`` (reused by the caller
        for the chunks of one batch: fresh memory costs more than the decompression); the
        result is then a view of that buffer, valid until the next call.
        """
        if self.blosc_dtype is not None:
            buffer: Any = data
            for _, decode in reversed(self.compressors[1:]):  # the checksums
                buffer = decode(buffer)
            nbytes = self.shape[0] * self.shape[1] * self.blosc_dtype.itemsize
            dest = scratch.get(nbytes)
            if dest is None:
                dest = scratch[nbytes] = np.empty(nbytes, dtype=np.uint8)
            _decompress(buffer, dest)
            return dest.view(self.blosc_dtype).reshape(self.shape)
        buffer = data
        for _, decode in reversed(self.compressors):
            buffer = decode(buffer)
        if self.serializer != "bytes":
            return ctspine_codecs.decode(bytes(buffer), self.dtype, (1, *self.shape))[0]
        stored = self.dtype.newbyteorder(self.order) if self.order != "|" else self.dtype
        return np.frombuffer(buffer, dtype=stored).reshape(self.shape)


# --------------------------------------------------------------------------------------------
# The layout of one array
# --------------------------------------------------------------------------------------------


def tiles_per_slice(shape: Sequence[int], inner: Sequence[int], shard: Sequence[int]) -> int | None:
    """Inner chunks of one slice when a ``(z, y, x)`` array is sharded as the format asks.

    That is: inner chunks one slice thick, and shards of the whole plane rounded up to whole
    inner chunks (so each slice lies in one shard). None for any other layout.
    """
    if len(inner) != 3 or len(shard) != 3 or inner[0] != 1 or min(inner) < 1:
        return None
    grid = [-(-int(n) // int(c)) for n, c in zip(shape[1:], inner[1:], strict=True)]
    if any(int(s) != g * int(c) for s, g, c in zip(shard[1:], grid, inner[1:], strict=True)):
        return None
    return grid[0] * grid[1]


@dataclass
class ShardLayout:
    """How to read and write a ``(z, y, x)`` array sharded along z in tiles of whole slices.

    Inner chunks are ``(1, ty, tx)`` (a whole slice when ``tile == plane``), and a shard holds
    ``shard_z`` slices of the whole plane rounded up to whole tiles.
    """

    store: Store
    local_root: Path | None
    prefix: str
    metadata: Any
    shard_z: int
    index: IndexFormat
    chunk: ChunkCodec
    fill_value: Any
    #: ``(Y, X)``: the array's plane
    plane: tuple[int, int]
    #: ``(ty, tx)``: an inner chunk's plane
    tile: tuple[int, int]

    @classmethod
    def of(cls, array: zarr.Array) -> ShardLayout | None:
        """Return the layout of ``array``, or None when its layout or codecs are others."""
        config = sharding_config(array)
        if array.ndim != 3 or config is None:
            return None
        meta: Any = array.metadata
        shard = tuple(int(n) for n in meta.chunk_grid.chunk_shape)
        inner = tuple(int(n) for n in config.get("chunk_shape", ()))
        per_slice = tiles_per_slice(array.shape, inner, shard)
        if per_slice is None:
            return None
        plane = (int(array.shape[1]), int(array.shape[2]))
        tile = (inner[1], inner[2])
        index = IndexFormat.of(config, shard[0] * per_slice)
        dtype = np.dtype(array.dtype)
        chunk = ChunkCodec.of(config.get("codecs", ()), dtype, tile)
        if index is None or chunk is None:
            return None
        store = array.store_path.store
        return cls(
            store=store,
            local_root=Path(store.root) if isinstance(store, LocalStore) else None,
            prefix=array.store_path.path,
            metadata=meta,
            shard_z=shard[0],
            index=index,
            chunk=chunk,
            fill_value=meta.fill_value,
            plane=plane,
            tile=tile,
        )

    @property
    def index_size(self) -> int:
        """Bytes of a shard's encoded index."""
        return self.index.size

    @property
    def index_at_end(self) -> bool:
        """Whether the index follows the chunks (else it precedes them)."""
        return self.index.at_end

    @property
    def grid(self) -> tuple[int, int]:
        """Tiles of one slice along y and x."""
        return (-(-self.plane[0] // self.tile[0]), -(-self.plane[1] // self.tile[1]))

    @property
    def per_slice(self) -> int:
        """Inner chunks (index entries) of one slice."""
        return self.grid[0] * self.grid[1]

    def entry(self, z_in_shard: int, row: int, column: int) -> int:
        """Index entry of tile ``(row, column)`` of the shard's slice ``z_in_shard``."""
        n_rows, n_columns = self.grid
        return (z_in_shard * n_rows + row) * n_columns + column

    def tiles(self, y0: int, y1: int, x0: int, x1: int) -> tuple[range, range]:
        """The tile rows and columns that ``[y0, y1) x [x0, x1)`` touches."""
        ty, tx = self.tile
        return range(y0 // ty, -(-y1 // ty)), range(x0 // tx, -(-x1 // tx))

    def key(self, shard: int) -> str:
        """Store key of shard number ``shard`` along z."""
        chunk_key = self.metadata.encode_chunk_key((shard, 0, 0))
        return f"{self.prefix}/{chunk_key}" if self.prefix else chunk_key  # "": store root

    def decode_index(self, data: bytes) -> np.ndarray:
        """Return the ``uint64 [entries, 2]`` (offset, length) table of an encoded shard index."""
        return self.index.decode(data)

    def decode_chunk(self, data: bytes, scratch: dict[int, np.ndarray]) -> np.ndarray:
        """Decode one inner chunk to a ``[ty, tx]`` array (see :meth:`ChunkCodec.decode`)."""
        return self.chunk.decode(data, scratch)

    def encode_chunk(self, values: np.ndarray) -> bytes:
        """The encoded bytes of one inner chunk (``[ty, tx]`` values)."""
        return self.chunk.encode(values)

    def encode_slice(self, values: np.ndarray) -> list[bytes]:
        """The encoded tiles of one ``[Y, X]`` slice in C order, edge tiles padded with the fill.

        (zarr pads a partial chunk with the fill value before encoding it: the bytes are its.)
        """
        ty, tx = self.tile
        n_rows, n_columns = self.grid
        padded = values
        if (n_rows * ty, n_columns * tx) != self.plane:
            padded = np.full((n_rows * ty, n_columns * tx), self.fill_value, dtype=values.dtype)
            padded[: self.plane[0], : self.plane[1]] = values
        return [
            self.chunk.encode(padded[r * ty : (r + 1) * ty, c * tx : (c + 1) * tx])
            for r in range(n_rows)
            for c in range(n_columns)
        ]
