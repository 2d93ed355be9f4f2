"""The lean shard writer: the same bytes as zarr, for every layout the ingest writes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import zarr
from zarr.codecs import Crc32cCodec

from ctspine_zarr.io.codecs import JpegLsCodec
from ctspine_zarr.io.shardwriter import write_array
from ctspine_zarr.io.slicereader import ZReader, read_blocks
from ctspine_zarr.schema import image_encoding, label_compressors


def _volume(n_z: int, dtype: str) -> np.ndarray:
    rng = np.random.default_rng(n_z)
    base = rng.normal(0, 40, size=(n_z, 24, 40)).cumsum(axis=2)
    return np.clip(base, np.iinfo(dtype).min, np.iinfo(dtype).max).astype(dtype)


ENCODINGS = {
    "image, blosc": lambda v: image_encoding("default", sample=v),
    "image, jpeg-ls": lambda v: {"serializer": JpegLsCodec(), "compressors": [Crc32cCodec()]},
    "label": lambda v: {"compressors": label_compressors()},
}


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("n_z", [1, 7, 32, 33, 70])
@pytest.mark.parametrize("kind", list(ENCODINGS))
def test_shards_are_the_bytes_zarr_writes(n_z: int, kind: str, threads: int) -> None:
    volume = _volume(n_z, "uint8" if kind == "label" else "int16")
    stores = {"zarr": zarr.storage.MemoryStore(), "lean": zarr.storage.MemoryStore()}
    arrays = {
        name: zarr.create_array(
            store,
            name="a",
            shape=volume.shape,
            dtype=volume.dtype,
            chunks=(1, 24, 40),
            shards=(min(32, n_z), 24, 40),
            fill_value=0,
            config={"write_empty_chunks": True},
            **ENCODINGS[kind](volume),
        )
        for name, store in stores.items()
    }
    arrays["zarr"][...] = volume
    write_array(arrays["lean"], volume, threads=threads)
    keys = sorted(k for k in stores["zarr"]._store_dict if "/c/" in k)
    assert keys == sorted(k for k in stores["lean"]._store_dict if "/c/" in k)
    assert len(keys) == -(-n_z // 32)
    for key in keys:
        lean, theirs = stores["lean"]._store_dict[key], stores["zarr"]._store_dict[key]
        assert lean.to_bytes() == theirs.to_bytes(), key
    np.testing.assert_array_equal(zarr.open_array(stores["lean"], path="a")[...], volume)


def test_other_layouts_go_through_zarr() -> None:
    volume = _volume(5, "int16")
    array = zarr.create_array(
        zarr.storage.MemoryStore(), shape=volume.shape, dtype=volume.dtype, chunks=(2, 24, 40)
    )
    write_array(array, volume)
    np.testing.assert_array_equal(array[...], volume)
    with pytest.raises(ValueError, match="shape"):
        write_array(array, volume[:3])


def test_an_array_at_the_store_root_is_written_inside_the_store(tmp_path: Path) -> None:
    volume = _volume(40, "int16")
    store = zarr.storage.LocalStore(tmp_path / "root.zarr")
    array = zarr.create_array(
        store,
        shape=volume.shape,
        dtype=volume.dtype,
        chunks=(1, 24, 40),
        shards=(32, 24, 40),
        config={"write_empty_chunks": True},
    )
    write_array(array, volume)
    assert sorted(p.name for p in (tmp_path / "root.zarr" / "c").iterdir()) == ["0", "1"]
    np.testing.assert_array_equal(zarr.open_array(store)[...], volume)
    (read,) = read_blocks([(ZReader(array), 0, 40, None)])
    np.testing.assert_array_equal(read, volume)


def test_arrays_that_skip_empty_chunks_are_left_to_zarr() -> None:
    volume = _volume(12, "int16")
    volume[2] = 0
    volume[4:8] = 0
    stores = {"zarr": zarr.storage.MemoryStore(), "lean": zarr.storage.MemoryStore()}
    arrays = {
        name: zarr.create_array(
            store, shape=volume.shape, dtype=volume.dtype, chunks=(1, 24, 40), shards=(4, 24, 40)
        )
        for name, store in stores.items()
    }
    arrays["zarr"][...] = volume
    write_array(arrays["lean"], volume)
    assert sorted(stores["lean"]._store_dict) == sorted(stores["zarr"]._store_dict)
    assert "c/1/0/0" not in stores["lean"]._store_dict  # an all-fill shard is not written
    np.testing.assert_array_equal(arrays["lean"][...], volume)


@pytest.mark.skipif(not hasattr(os, "register_at_fork"), reason="no fork on this platform")
def test_the_encoding_pool_is_shared_and_works_in_a_forked_child() -> None:
    import multiprocessing

    from ctspine_zarr.io.shardwriter import encode_pool

    pool = encode_pool(2)
    assert encode_pool(2) is pool and encode_pool(3) is not pool
    assert pool.submit(sum, [1, 2]).result(timeout=10) == 3  # its threads exist now
    with multiprocessing.get_context("fork").Pool(1) as child:
        # the parent's pool threads do not exist in the child: it must start a new pool
        assert child.apply_async(_sum_on_pool).get(timeout=20) == 6


def _sum_on_pool() -> int:
    from ctspine_zarr.io.shardwriter import encode_pool

    return int(encode_pool(2).submit(sum, [1, 2, 3]).result(timeout=10))
