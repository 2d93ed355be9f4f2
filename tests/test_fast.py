"""The ``fast`` extra (zarrs): the same values read and verdicts with and without it."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest
import zarr
from zarr.codecs import Crc32cCodec

import ctspine_zarr
from ctspine_zarr import fast
from ctspine_zarr.codecs import JpegLsCodec
from ctspine_zarr.schema import image_encoding
from ctspine_zarr.shardwriter import write_array
from ctspine_zarr.store import forget
from ctspine_zarr.synthetic import SyntheticCase
from ctspine_zarr.verify import verify
from ctspine_zarr.volume import LeanSlices

pytestmark = pytest.mark.skipif(
    not fast.enabled(), reason="zarrs is not installed: pip install 'ctspine-zarr[fast]'"
)


def _shards(store: Path) -> dict[str, bytes]:
    return {
        p.relative_to(store).as_posix(): p.read_bytes()
        for p in sorted(store.rglob("*"))
        if p.is_file() and "/c/" in p.relative_to(store).as_posix()
    }


def _values(store: Path) -> dict[str, tuple[np.ndarray, ...]]:
    forget(store)
    ds = ctspine_zarr.open(store)
    out = {}
    for case in ds.ctspine.case_ids():
        vol = ds.ctspine.volume(case)
        out[case] = (vol.image.values, vol.label.values, vol.image.isel(z=slice(3, 40)).values)
    return out


def test_a_store_reads_the_same_with_and_without_zarrs(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CTSPINE_ZARR_FAST", "1")
    with_zarrs = _values(store)
    verdict = verify(store).problems
    monkeypatch.setenv("CTSPINE_ZARR_FAST", "0")
    without = _values(store)
    assert with_zarrs.keys() == without.keys()
    for case, arrays in with_zarrs.items():
        for a, b in zip(arrays, without[case], strict=True):
            np.testing.assert_array_equal(a, b)
    assert verify(store).problems == verdict == []
    monkeypatch.setenv("CTSPINE_ZARR_FAST", "1")
    case = next(iter(with_zarrs))
    blocks = LeanSlices(zarr.open_group(store, path=f"cases/{case}", mode="r")["image"])
    whole = blocks.read_whole()
    assert whole is not None and blocks._twin  # read through the zarrs twin
    np.testing.assert_array_equal(whole, with_zarrs[case][0])
    monkeypatch.setenv("CTSPINE_ZARR_FAST", "0")
    assert LeanSlices(blocks.array).read_whole() is None


def test_the_store_is_written_alike_with_zarrs_installed(
    raw_tree: tuple[Path, list[SyntheticCase]], store: Path, tmp_path: Path
) -> None:
    again = tmp_path / "again.zarr"
    assert ctspine_zarr.ingest(raw_tree[0], again, workers=2, progress=False).ok
    assert _shards(again) == _shards(store)  # the lean writer: zarr-python's bytes


def test_the_twin_is_zarrs_and_only_for_codecs_zarrs_knows(tmp_path: Path) -> None:
    volume = np.arange(40 * 8 * 6, dtype="int16").reshape(40, 8, 6)

    def make(**codecs: object) -> zarr.Array:
        return zarr.create_array(
            zarr.storage.LocalStore(tmp_path / f"{len(codecs)}-{id(codecs)}.zarr"),
            shape=volume.shape,
            dtype=volume.dtype,
            chunks=(1, 8, 6),
            shards=(32, 8, 6),
            fill_value=0,
            config={"write_empty_chunks": True},
            **codecs,  # type: ignore[arg-type]
        )

    plain = make(**image_encoding("default", sample=volume))
    write_array(plain, volume, threads=2)
    twin = fast.twin(plain)
    assert twin is not None
    assert type(twin.async_array.codec_pipeline).__name__ == "ZarrsCodecPipeline"
    np.testing.assert_array_equal(twin[...], volume)
    compact = make(serializer=JpegLsCodec(), compressors=[Crc32cCodec()])
    assert fast.twin(compact) is None  # zarrs does not know the JPEG-LS codec
    in_memory = zarr.create_array(zarr.storage.MemoryStore(), shape=(4, 8, 6), dtype="int16")
    assert fast.twin(in_memory) is None  # not sharded as the store is, and not a local store


def _child_reads(store: Path, case: str) -> tuple[bool, int]:
    vol = ctspine_zarr.open(store).ctspine.volume(case)
    return fast.enabled(), int(vol.image.values.astype("int64").sum())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_workers_read_after_the_parent_used_zarrs(store: Path) -> None:
    ds = ctspine_zarr.open(store)
    case = ds.ctspine.case_ids()[0]
    expected = int(ds.ctspine.volume(case).image.values.astype("int64").sum())  # zarrs here
    with multiprocessing.get_context("fork").Pool(2) as pool:
        results = pool.starmap_async(_child_reads, [(store, case)] * 2).get(timeout=60)
    assert results == [(False, expected)] * 2  # the children read without zarrs' threads
