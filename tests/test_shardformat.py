"""shardformat reads every shard layout zarr writes, and refuses what it does not know."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, GzipCodec, ZstdCodec

from ctspine_zarr.io.shardformat import EMPTY_ENTRY, IndexFormat, ShardLayout
from ctspine_zarr.io.slicereader import ZReader, read_blocks


def _array(shape: tuple[int, int, int], dtype: str, **kwargs: object) -> zarr.Array:
    return zarr.create_array(
        zarr.storage.MemoryStore(),
        name="a",
        shape=shape,
        dtype=dtype,
        chunks=(1, *shape[1:]),
        shards=(8, *shape[1:]),
        fill_value=0,
        config={"write_empty_chunks": True},
        **kwargs,  # type: ignore[arg-type]
    )


LAYOUTS = {
    "default": {},
    "big-endian chunks": {"serializer": BytesCodec(endian="big")},
    "zstd": {"compressors": [ZstdCodec(level=3), Crc32cCodec()]},
    "gzip, no checksum": {"compressors": [GzipCodec(level=1)]},
    "blosc shuffle": {"compressors": [BloscCodec(cname="lz4", clevel=1, shuffle="shuffle")]},
}


@pytest.mark.parametrize("at_start", [False, True])
@pytest.mark.parametrize("kind", list(LAYOUTS))
def test_the_lean_reader_reads_what_zarr_writes(kind: str, at_start: bool) -> None:
    volume = np.random.default_rng(1).integers(-900, 900, size=(19, 6, 5)).astype("int16")
    if at_start:
        from zarr.codecs import ShardingCodec

        inner = _array(volume.shape, "int16", **LAYOUTS[kind]).metadata.codecs[0]
        sharding = ShardingCodec(
            chunk_shape=(1, 6, 5),
            codecs=inner.codecs,  # type: ignore[attr-defined]
            index_location="start",
        )
        array = zarr.create_array(
            zarr.storage.MemoryStore(),
            name="a",
            shape=volume.shape,
            dtype="int16",
            chunks=(8, 6, 5),
            serializer=sharding,
            compressors=None,
            fill_value=0,
        )
    else:
        array = _array(volume.shape, "int16", **LAYOUTS[kind])
    array[...] = volume
    layout = ShardLayout.of(array)
    assert layout is not None and layout.index_at_end is not at_start
    reader = ZReader(array)
    whole, part, one = read_blocks(
        [(reader, 0, 19, None), (reader, 3, 11, None), (reader, 18, 19, None)]
    )
    np.testing.assert_array_equal(whole, volume)
    np.testing.assert_array_equal(part, volume[3:11])
    np.testing.assert_array_equal(one, volume[18:19])
    if not at_start:  # write_array writes indexes at the end only
        z = 4
        assert layout.encode_chunk(volume[z : z + 1])
        np.testing.assert_array_equal(
            layout.decode_chunk(layout.encode_chunk(volume[z]), {}), volume[z]
        )


def test_an_index_round_trips_and_fails_its_checksum_when_damaged() -> None:
    index = IndexFormat(n_entries=4, at_end=True, big_endian=False, checksum=True)
    raw = index.assemble([b"ab", b"cde"])
    table = index.decode(index.split(raw))
    assert table.tolist() == [[0, 2], [2, 3], [EMPTY_ENTRY, EMPTY_ENTRY], [EMPTY_ENTRY] * 2]
    assert raw[:5] == b"abcde" and len(raw) == 5 + index.size
    damaged = bytearray(index.split(raw))
    damaged[3] ^= 1
    with pytest.raises(ValueError, match="checksum"):
        index.decode(bytes(damaged))
    with pytest.raises(ValueError, match="expected"):
        index.decode(b"short")
    start = IndexFormat(n_entries=2, at_end=False, big_endian=True, checksum=False)
    raw = start.assemble([b"xyz"])
    assert start.decode(start.split(raw)).tolist() == [[32, 3], [EMPTY_ENTRY, EMPTY_ENTRY]]
    assert raw[32:] == b"xyz"


def test_layouts_the_lean_path_does_not_know_are_left_to_zarr() -> None:
    flat = zarr.create_array(zarr.storage.MemoryStore(), shape=(4, 3, 2), dtype="int16")
    assert ShardLayout.of(flat) is None  # not sharded

    def array(chunks: tuple[int, ...], shards: tuple[int, ...]) -> zarr.Array:
        return zarr.create_array(
            zarr.storage.MemoryStore(), shape=(4, 6, 2), dtype="int16", chunks=chunks, shards=shards
        )

    assert ShardLayout.of(array((1, 3, 2), (2, 3, 2))) is None  # a shard holds half a slice
    assert ShardLayout.of(array((2, 3, 2), (2, 6, 2))) is None  # inner chunks of two slices
    layout = ShardLayout.of(array((1, 3, 2), (2, 6, 2)))  # tiles of whole slices (format 4)
    assert layout is not None and layout.tile == (3, 2) and layout.per_slice == 2
    assert IndexFormat.of({"index_codecs": [{"name": "bytes"}, {"name": "zstd"}]}, 4) is None
