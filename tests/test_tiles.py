"""Format 4's tiled inner chunks: zarr's chunk bytes in C order, boxes read tile by tile.

Every reader is compared with zarr's own reading of the same array, on planes that are not
whole tiles (partial edge tiles), and a store of whole-slice chunks (formats 1-3, ``ingest
--tile 0``) is read the same way as a tiled one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr
from zarr.codecs import Crc32cCodec

import ctspine_zarr
from ctspine_zarr.io import shardformat
from ctspine_zarr.io.codecs import JpegLsCodec
from ctspine_zarr.io.shardformat import ShardLayout
from ctspine_zarr.io.shardwriter import write_array
from ctspine_zarr.io.slicereader import ZReader, read_blocks
from ctspine_zarr.io.volume import open_volume
from ctspine_zarr.sampling import PatchSequence, SliceSequence
from ctspine_zarr.schema import image_encoding, label_compressors, volume_chunking
from ctspine_zarr.write.verify import verify

SHAPE = (37, 40, 50)  # 3 x 4 tiles of 16: the last row and column partial
ENCODINGS = {
    "image, blosc": lambda v: image_encoding("default", sample=v),
    "image, jpeg-ls": lambda v: {"serializer": JpegLsCodec(), "compressors": [Crc32cCodec()]},
    "label": lambda v: {"compressors": label_compressors()},
}


def _volume(kind: str) -> np.ndarray:
    rng = np.random.default_rng(18)
    base = rng.normal(0, 40, size=SHAPE).cumsum(axis=2)
    dtype = "uint8" if kind == "label" else "int16"
    return np.clip(base, np.iinfo(dtype).min, np.iinfo(dtype).max).astype(dtype)


def _array(store: zarr.abc.store.Store, volume: np.ndarray, kind: str, tile: int) -> zarr.Array:
    chunks, shards = volume_chunking(volume.shape, 32, tile)
    return zarr.create_array(
        store,
        name="a",
        shape=volume.shape,
        dtype=volume.dtype,
        chunks=chunks,
        shards=shards,
        fill_value=0,
        config={"write_empty_chunks": True},
        **ENCODINGS[kind](volume),
    )


def _table(store: zarr.storage.MemoryStore, key: str, layout: ShardLayout) -> np.ndarray:
    return layout.decode_index(layout.index.split(store._store_dict[key].to_bytes()))


@pytest.mark.parametrize("kind", list(ENCODINGS))
def test_tiles_are_zarrs_chunks_in_c_order(kind: str) -> None:
    volume = _volume(kind)
    stores = {"zarr": zarr.storage.MemoryStore(), "lean": zarr.storage.MemoryStore()}
    arrays = {name: _array(store, volume, kind, 16) for name, store in stores.items()}
    arrays["zarr"][...] = volume
    write_array(arrays["lean"], volume, threads=2)
    layout = ShardLayout.of(arrays["lean"])
    assert layout is not None and layout.tile == (16, 16) and layout.grid == (3, 4)
    keys = sorted(k for k in stores["zarr"]._store_dict if "/c/" in k)
    assert (
        keys
        == sorted(k for k in stores["lean"]._store_dict if "/c/" in k)
        == [
            "a/c/0/0/0",
            "a/c/1/0/0",
        ]
    )
    for key in keys:
        raw = {name: store._store_dict[key].to_bytes() for name, store in stores.items()}
        tables = {name: _table(store, key, layout) for name, store in stores.items()}
        for entry in range(layout.index.n_entries):
            chunks = []
            for name in stores:
                offset, length = (int(v) for v in tables[name][entry])
                chunks.append(
                    None
                    if offset == shardformat.EMPTY_ENTRY
                    else raw[name][offset : offset + length]
                )
            assert chunks[0] == chunks[1], (key, entry)  # zarr pads edge tiles as we do
        # ours in C order, one contiguous run: each slice's tiles are one byte range
        written = tables["lean"][tables["lean"][:, 0] != shardformat.EMPTY_ENTRY]
        assert (written[1:, 0] == written[:-1, 0] + written[:-1, 1]).all()
    np.testing.assert_array_equal(zarr.open_array(stores["lean"], path="a")[...], volume)


@pytest.mark.parametrize("tile", [0, 16, 64])
def test_any_box_reads_what_zarr_reads(tile: int, tmp_path: Path) -> None:
    volume = _volume("image, blosc")
    local = zarr.storage.LocalStore(tmp_path / "a.zarr")
    memory = zarr.storage.MemoryStore()  # a store without files: the remote path
    arrays = [_array(s, volume, "image, blosc", tile) for s in (local, memory)]
    for array in arrays:
        write_array(array, volume)
    rng = np.random.default_rng(tile)
    for array in arrays:
        reader = ZReader(array)
        assert reader.layout is not None
        for _ in range(25):
            lo = [int(rng.integers(0, n)) for n in SHAPE]
            hi = [int(rng.integers(a + 1, n + 1)) for a, n in zip(lo, SHAPE, strict=True)]
            box = (lo[1], hi[1], lo[2], hi[2])
            as_float, stored = read_blocks(
                [(reader, lo[0], hi[0], np.float32, box), (reader, lo[0], hi[0], None, box)]
            )
            expected = array[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
            np.testing.assert_array_equal(stored, expected)
            np.testing.assert_array_equal(as_float, expected.astype(np.float32))
        whole, empty = read_blocks([(reader, 0, SHAPE[0], None), (reader, 3, 3, None)])
        np.testing.assert_array_equal(whole, volume)
        assert empty.shape == (0, *SHAPE[1:])
        with pytest.raises(IndexError, match="outside the array"):
            read_blocks([(reader, 0, 2, None, (0, 41, 0, 5))])


@pytest.mark.parametrize("kind", ["image, jpeg-ls", "label"])
def test_boxes_of_every_codec_read_what_zarr_reads(kind: str) -> None:
    volume = _volume(kind)
    array = _array(zarr.storage.MemoryStore(), volume, kind, 16)
    write_array(array, volume)
    reader = ZReader(array)
    assert reader.layout is not None
    for z0, z1, box in [
        (0, 37, (0, 40, 0, 50)),
        (30, 35, (15, 33, 17, 49)),
        (5, 6, (39, 40, 0, 1)),
    ]:
        (got,) = read_blocks([(reader, z0, z1, None, box)])
        np.testing.assert_array_equal(got, volume[z0:z1, box[0] : box[1], box[2] : box[3]])


def test_a_chunk_of_the_wrong_size_fails_instead_of_returning_stale_values() -> None:
    volume = _volume("label")
    array = _array(zarr.storage.MemoryStore(), volume, "label", 16)
    layout = ShardLayout.of(array)
    assert layout is not None
    tile = layout.encode_chunk(volume[0, :16, :16])
    smaller = layout.encode_chunk(volume[0, :8, :16].reshape(8, 16))  # a valid, shorter chunk
    scratch: dict[int, np.ndarray] = {}
    np.testing.assert_array_equal(layout.decode_chunk(tile, scratch), volume[0, :16, :16])
    with pytest.raises(ValueError, match="does not hold"):
        layout.decode_chunk(smaller, scratch)


def test_numcodecs_decodes_what_blosc2_decodes(monkeypatch: pytest.MonkeyPatch) -> None:
    volume = _volume("image, blosc")
    array = _array(zarr.storage.MemoryStore(), volume, "image, blosc", 16)
    write_array(array, volume)
    assert shardformat.blosc_decompress is not shardformat.numcodecs_decompress  # blosc2
    (fast,) = read_blocks([(ZReader(array), 0, SHAPE[0], None, (5, 39, 7, 44))])
    monkeypatch.setattr(shardformat, "blosc_decompress", shardformat.numcodecs_decompress)
    (fallback,) = read_blocks([(ZReader(array), 0, SHAPE[0], None, (5, 39, 7, 44))])
    np.testing.assert_array_equal(fast, fallback)
    np.testing.assert_array_equal(fast, volume[:, 5:39, 7:44])


def test_a_volume_box_decodes_only_its_tiles(
    tiled_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conftest import STORE_TILE

    ds = ctspine_zarr.open(tiled_store)
    case = ds.ctspine.case_ids()[0]
    vol = open_volume(tiled_store, case)
    truth = zarr.open_group(tiled_store / "cases" / case, mode="r")["image"][...]
    decoded: list[int] = []
    original = ShardLayout.decode_chunk
    monkeypatch.setattr(
        ShardLayout,
        "decode_chunk",
        lambda layout, data, scratch: decoded.append(1) or original(layout, data, scratch),
    )
    box = {"z": slice(2, 7), "y": slice(17, 30), "x": slice(20, 40)}  # 1 x 2 tiles a slice
    assert STORE_TILE == 32
    view = vol.image.isel(box)
    np.testing.assert_array_equal(view.values, truth[2:7, 17:30, 20:40])  # the direct read
    assert len(decoded) == 5 * 1 * 2
    decoded.clear()
    np.testing.assert_array_equal(view.compute().values, truth[2:7, 17:30, 20:40])  # dask
    assert len(decoded) == 5 * 1 * 2
    decoded.clear()
    np.testing.assert_array_equal(vol.image.isel(z=3, x=40).values, truth[3, :, 40])
    assert len(decoded) == 2  # one tile column of one slice


def test_a_whole_slice_store_reads_as_the_tiled_one(store: Path, tiled_store: Path) -> None:
    """The default store (whole slices) and ``--tile 32`` give every reader the same."""
    case = ctspine_zarr.open(store).ctspine.case_ids()[1]
    flat = zarr.open_group(store / "cases" / case, mode="r")["image"]
    assert flat.chunks == (1, *flat.shape[1:])
    assert zarr.open_group(tiled_store / "cases" / case, mode="r")["image"].chunks == (1, 32, 32)
    for a, b in zip(
        PatchSequence(store, patch_size=(5, 24, 20), samples_per_epoch=8, seed=3),
        PatchSequence(tiled_store, patch_size=(5, 24, 20), samples_per_epoch=8, seed=3),
        strict=True,
    ):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["segmentation"], b["segmentation"])
        np.testing.assert_array_equal(a["patch_start"], b["patch_start"])
    slices = SliceSequence(store), SliceSequence(tiled_store)
    for i in (0, 33, len(slices[0]) - 1):
        np.testing.assert_array_equal(slices[0][i]["image"], slices[1][i]["image"])
    vols = open_volume(store, case), open_volume(tiled_store, case)
    np.testing.assert_array_equal(vols[0].label.values, vols[1].label.values)
    np.testing.assert_array_equal(
        vols[0].image[4:9, 3:33, 7:45].values, vols[1].image[4:9, 3:33, 7:45].values
    )
    generic = [xr.open_zarr(s, group=f"cases/{case}").image.values for s in (store, tiled_store)]
    np.testing.assert_array_equal(*generic)
    assert verify(tiled_store).ok


def test_a_tiled_store_over_s3_reads_a_slice_in_one_range_and_a_patch_by_its_tiles(
    tiled_store: Path, s3
) -> None:
    import s3fs

    url, options, log = s3
    s3fs.S3FileSystem(**options).put(str(tiled_store), f"{url}/t.zarr", recursive=True)
    remote = f"{url}/t.zarr"
    ds = ctspine_zarr.open(remote, storage_options=options)
    case = ds.ctspine.case_ids()[2]
    truth = zarr.open_group(tiled_store / "cases" / case, mode="r")
    counts = []
    for z in (3, 4):  # the first slice fetches the shard index, the next none
        log.requests.clear()
        plane = ds.ctspine.slice(case, z)
        np.testing.assert_array_equal(plane.image.values, truth["image"][z])
        np.testing.assert_array_equal(plane.label.values, truth["label"][z])
        paths = [p for m, p, _ in log.requests if m == "GET" and "/c/" in p]
        counts.append({a: sum(f"/{a}/c/" in p for p in paths) for a in ("image", "label")})
    assert counts == [{"image": 2, "label": 2}, {"image": 1, "label": 1}]
    seq = PatchSequence(
        remote, patch_size=(4, 20, 20), samples_per_epoch=6, seed=5, storage_options=options
    )
    local = PatchSequence(tiled_store, patch_size=(4, 20, 20), samples_per_epoch=6, seed=5)
    for i in range(6):
        np.testing.assert_array_equal(seq[i]["image"], local[i]["image"])
        np.testing.assert_array_equal(seq[i]["segmentation"], local[i]["segmentation"])


def test_verify_warns_when_a_shards_tiles_are_not_in_c_order() -> None:
    from ctspine_zarr.compat import sync
    from ctspine_zarr.io.shardformat import IndexFormat, sharding_config
    from ctspine_zarr.write.verifystore import _check_shard

    volume = _volume("label")
    found = {}
    for writer in ("zarr", "lean"):
        store = zarr.storage.MemoryStore()
        array = _array(store, volume, "label", 16)
        if writer == "zarr":
            array[...] = volume  # zarr-python: Morton order
        else:
            write_array(array, volume)
        index = IndexFormat.of(sharding_config(array), 32 * 12)
        found[writer] = sync(_check_shard(store, array, index, 0, 32, 12))
    assert found["lean"] == ([], False)
    problems, whole = found["zarr"]
    assert not whole and [kind for _, kind, _ in problems] == ["order"]
    assert "not in C order" in problems[0][2]


def test_the_command_ingests_tiles_and_refuses_a_bad_tile(
    raw_tree: tuple[Path, list], tmp_path: Path
) -> None:
    from clirun import cli_each, error_lines

    out = tmp_path / "tiled.zarr"
    # one child Python runs the three command lines in turn (the real main each)
    bad, done, checked = cli_each(
        ["ingest", raw_tree[0], out, "--tile", "-3", "--quiet"],
        ["ingest", raw_tree[0], out, "--tile", "24", "--quiet"],
        ["verify", out],
    )
    assert error_lines(bad, "ingest")[0] == (
        "ctspine-zarr ingest: error: argument --tile: must be 0 (whole slices) or a tile "
        "size of at least 1, but is -3"
    )
    assert done.returncode == 0, done.stderr
    case = raw_tree[1][0].case_id
    image = zarr.open_group(out / "cases" / case, mode="r")["image"]
    assert image.chunks == (1, 24, 24) and image.shards[1:] == (48, 48)  # 40 x 48 planes
    assert ctspine_zarr.open(out).attrs["ctspine_zarr_format"] == 4
    assert checked.returncode == 0 and "OK: 0 error(s), 0 warning(s)" in checked.stdout
