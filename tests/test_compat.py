"""compat's fallbacks give what the private APIs give: bytes written, values read, verdict."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import xarray as xr

import ctspine_zarr
from ctspine_zarr import compat
from ctspine_zarr.io.store import forget, storage_options_of
from ctspine_zarr.testing.synthetic import SyntheticCase
from ctspine_zarr.write.verify import verify


def _chunk_files(store: Path) -> dict[str, bytes]:
    """Every shard object of the store's arrays, by path."""
    return {
        str(p.relative_to(store)): p.read_bytes()
        for p in sorted(store.rglob("*"))
        if p.is_file() and "/c/" in f"/{p.relative_to(store).as_posix()}"
    }


def _verdict(store: Path) -> list[tuple[object, ...]]:
    report = verify(store)
    return sorted((p.case_id, p.array, p.slice, p.kind, p.severity) for p in report.problems)


def _values(store: Path) -> dict[str, tuple[np.ndarray, ...]]:
    ds = ctspine_zarr.open(store)
    out = {}
    for case in ds.ctspine.case_ids():
        vol = ds.ctspine.volume(case)
        plane = ds.ctspine.slice(case, 1)
        out[case] = (
            vol.image.values,
            vol.label.values,
            vol.image.isel(z=2).values,
            plane.image.values,
            plane.label.values,
        )
    return out


def test_every_touchpoint_is_inventoried() -> None:
    assert compat.TOUCHPOINTS  # one line per private API, with what replaces it
    for name in ("_encode_sync", "_shard_index_size", "sync", "_construct_direct", "dask"):
        assert any(name in key for key in compat.TOUCHPOINTS), name
    assert not compat.using_fallbacks()
    with compat.forced_fallbacks():
        assert compat.using_fallbacks()
    assert not compat.using_fallbacks()


def test_the_fallbacks_write_the_same_bytes_read_the_same_values_and_verify_alike(
    raw_tree: tuple[Path, list[SyntheticCase]], store: Path, tmp_path: Path
) -> None:
    raw, _ = raw_tree
    fallback = tmp_path / "fallback.zarr"
    with compat.forced_fallbacks():
        report = ctspine_zarr.ingest(raw, fallback, workers=2, scheduler="threads", progress=False)
        assert report.ok, report.summary()
    private = _chunk_files(store)
    assert private and _chunk_files(fallback) == private

    expected = _values(store)
    forget(fallback)
    with compat.forced_fallbacks():
        got = _values(fallback)
    assert got.keys() == expected.keys()
    for case, arrays in expected.items():
        for a, b in zip(arrays, got[case], strict=True):
            np.testing.assert_array_equal(a, b)

    assert _verdict(store) == []
    with compat.forced_fallbacks():
        assert _verdict(fallback) == []

    # a damaged shard: the same problems found either way
    files = sorted(p for p in fallback.rglob("*") if p.is_file())
    shard = next(p for p in files if "/image/c/" in p.as_posix())
    data = bytearray(shard.read_bytes())
    data[len(data) // 3] ^= 0xFF
    shard.write_bytes(bytes(data))
    forget(fallback)
    damaged = _verdict(fallback)
    assert damaged
    with compat.forced_fallbacks():
        assert _verdict(fallback) == damaged
    shutil.rmtree(fallback)


def test_the_public_dataset_constructor_gives_an_identical_slice(store: Path) -> None:
    ds = ctspine_zarr.open(store)
    case = ds.ctspine.case_ids()[0]
    fast = ds.ctspine.slice(case, 3)
    with compat.forced_fallbacks():
        public = ds.ctspine.slice(case, 3)
    xr.testing.assert_identical(fast, public)


def test_the_dask_graph_walk_and_its_fallback(store: Path) -> None:
    ds = xr.open_zarr(store)
    assert compat.zarr_array_behind(ds) is not None
    assert storage_options_of(ds) == {}  # a local store: no fsspec options
    with compat.forced_fallbacks():
        assert compat.zarr_array_behind(ds) is None
        assert storage_options_of(ds) is None  # the accessor then uses no options


def test_sync_runs_a_coroutine_with_and_without_zarr_loop() -> None:
    assert compat.sync(_answer()) == 42
    with compat.forced_fallbacks():
        assert compat.sync(_answer()) == 42


async def _answer() -> int:
    return 42
