"""The compact codec (lossless JPEG-LS): exact round trips, fallbacks, and plain zarr readers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr

import ctspine_zarr
from ctspine_zarr.info import describe
from ctspine_zarr.io.codecs import JPEGLS_NAME, JpegLsCodec, encode, supports
from ctspine_zarr.sampling import SliceSequence
from ctspine_zarr.schema import image_encoding
from ctspine_zarr.stats import compute_stats
from ctspine_zarr.testing.synthetic import make_raw_tree


def _extremes(dtype: np.dtype) -> np.ndarray:
    info = np.iinfo(dtype)
    rng = np.random.default_rng(3)
    values = rng.integers(info.min, int(info.max) + 1, size=(3, 24, 40), dtype=np.int64)
    values[0, 0, :4] = [info.min, info.max, 0, info.min + 1]
    values[1] = np.clip(values[1] // 64, info.min, info.max)  # smooth-ish: small residuals
    return values.astype(dtype)


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16", "uint16", ">i2"])
def test_every_supported_dtype_round_trips_exactly(dtype: str) -> None:
    volume = _extremes(np.dtype(dtype).newbyteorder("="))
    store = zarr.storage.MemoryStore()
    array = zarr.create_array(
        store,
        name="image",
        shape=volume.shape,
        dtype=volume.dtype,
        chunks=(1, 24, 40),
        shards=(3, 24, 40),
        serializer=JpegLsCodec(),
        compressors=[zarr.codecs.Crc32cCodec()],
    )
    array[:] = volume.astype(dtype)  # a big-endian input is coded by value
    again = zarr.open_array(store, path="image")
    np.testing.assert_array_equal(again[:], volume)
    np.testing.assert_array_equal(again[1], volume[1])
    inner = json.loads(json.dumps(again.metadata.to_dict()))["codecs"][0]["configuration"]
    assert [c["name"] for c in inner["codecs"]] == [JPEGLS_NAME, "crc32c"]


def test_an_array_of_a_big_endian_dtype_reads_back_its_values() -> None:
    volume = _extremes(np.dtype("int16"))
    array = zarr.create_array(
        zarr.storage.MemoryStore(),
        shape=volume.shape,
        dtype=">i2",
        chunks=(1, 24, 40),
        shards=(3, 24, 40),
        serializer=JpegLsCodec(),
    )
    array[...] = volume
    np.testing.assert_array_equal(array[...], volume)


def test_dtypes_jpeg_ls_cannot_code_keep_the_default_codec() -> None:
    for dtype in ("int32", "float32", "float64"):
        assert not supports(dtype)
        encoding = image_encoding("compact", sample=np.zeros((2, 4, 4), dtype=dtype))
        assert not isinstance(encoding["serializer"], JpegLsCodec)
    with pytest.raises(ValueError, match="int8, uint8, int16 and uint16"):
        zarr.create_array(
            zarr.storage.MemoryStore(), shape=(2, 4, 4), dtype="float32", serializer=JpegLsCodec()
        )
    with pytest.raises(ValueError, match="codec must be one of"):
        image_encoding("jpeg-xl")
    with pytest.raises(ValueError, match="int8, uint8, int16 and uint16 data, not int32"):
        encode(np.zeros((4, 4), dtype=np.int32))


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tree of 192x192 cases (big enough for JPEG-LS to win) ingested both ways."""
    root = tmp_path_factory.mktemp("compact")
    make_raw_tree(root / "raw", n_cases=4, shape=(192, 192), n_slices=(10, 40), seed=4)
    out = []
    for codec in ("compact", "default"):
        path = root / f"{codec}.zarr"
        report = ctspine_zarr.ingest(root / "raw", path, workers=2, codec=codec, progress=False)
        assert report.ok, report.summary()
        out.append(path)
    return out[0], out[1]


def _codec_name(image: zarr.Array) -> str:
    """The ``image_codec`` an array's metadata implies (read from its codecs, not our code)."""
    inner = image.metadata.codecs[0].codecs  # type: ignore[attr-defined]
    if isinstance(inner[0], JpegLsCodec):
        return JPEGLS_NAME
    blosc = next(c for c in inner if c.to_dict()["name"] == "blosc").to_dict()["configuration"]
    return f"blosc {blosc['cname']}-{blosc['clevel']} {blosc['shuffle']}"


def test_a_compact_store_holds_the_same_values_in_fewer_bytes(stores: tuple[Path, Path]) -> None:
    compact_store, store = stores
    ds = ctspine_zarr.open(compact_store)
    ids = ds.ctspine.case_ids()
    assert ids == ctspine_zarr.open(store).ctspine.case_ids()
    compact_bytes = default_bytes = 0
    serializers = set()
    for case in ids:
        a = zarr.open_group(compact_store, path=f"cases/{case}", mode="r")["image"]
        b = zarr.open_group(store, path=f"cases/{case}", mode="r")["image"]
        assert isinstance(a, zarr.Array) and isinstance(b, zarr.Array)
        np.testing.assert_array_equal(a[:], b[:])
        serializers.add(type(a.metadata.codecs[0].codecs[0]).__name__)  # type: ignore[attr-defined]
        compact_bytes += a.nbytes_stored()
        default_bytes += b.nbytes_stored()
    assert "JpegLsCodec" in serializers  # kept where it is smaller, Blosc elsewhere
    assert compact_bytes < default_bytes
    # the catalogue says which case uses which codec, and info says what reading needs
    names = {c: str(v) for c, v in zip(ids, ds["image_codec"].values, strict=True)}
    for case in ids:
        group = zarr.open_group(compact_store, path=f"cases/{case}", mode="r")
        assert names[case] == _codec_name(group["image"]), case  # type: ignore[arg-type]
    default_names = ctspine_zarr.open(store)["image_codec"].values
    for case, name in zip(ids, default_names, strict=True):
        image = zarr.open_group(store, path=f"cases/{case}", mode="r")["image"]
        assert str(name) == _codec_name(image) and str(name).startswith("blosc zstd-")  # type: ignore[arg-type]
    assert "ctspine-zarr[compact]" in describe(ds)
    assert "ctspine-zarr[compact]" not in describe(ctspine_zarr.open(store))
    assert ctspine_zarr.verify(compact_store).ok


def test_loaders_and_accessor_read_a_compact_store_like_the_default(
    stores: tuple[Path, Path],
) -> None:
    compact_store, store = stores
    compact, default = SliceSequence(compact_store, None), SliceSequence(store, None)
    picks = [0, len(default) // 2, len(default) - 1]
    for a, b in zip(compact.getitems(picks), default.getitems(picks), strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["segmentation"], b["segmentation"])
    case = ctspine_zarr.open(store).ctspine.case_ids()[0]
    a = ctspine_zarr.open(compact_store).ctspine.slice(case, 3)
    b = ctspine_zarr.open(store).ctspine.slice(case, 3)
    np.testing.assert_array_equal(a.image.values, b.image.values)


def test_plain_zarr_in_a_fresh_interpreter_finds_the_codec_by_its_entry_point(
    stores: tuple[Path, Path],
) -> None:
    compact_store, store = stores
    case = next(
        c
        for c in ctspine_zarr.open(store).ctspine.case_ids()
        if "jpegls" in (compact_store / "cases" / c / "image" / "zarr.json").read_text()
    )
    code = (
        "import sys, zarr, numpy as np\n"
        "assert 'ctspine_zarr' not in sys.modules\n"
        f"a = zarr.open_array({str(compact_store)!r}, path='cases/{case}/image', mode='r')\n"
        "np.save(sys.stdout.buffer, a[:])\n"
    )
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, check=True
    ).stdout
    import io

    got = np.load(io.BytesIO(out))
    expected = zarr.open_group(store, path=f"cases/{case}", mode="r")["image"]
    np.testing.assert_array_equal(got, expected[:])  # type: ignore[index]


def test_the_cli_offers_the_codecs_by_name(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from ctspine_zarr.cli import main

    raw = tmp_path / "raw"
    make_raw_tree(raw, n_cases=1, shape=(160, 160), n_slices=(8, 9), seed=2)
    with pytest.raises(SystemExit) as info:
        main(["ingest", str(raw), str(tmp_path / "x.zarr"), "--codec", "jpeg-xl"])
    assert info.value.code == 2
    assert "invalid choice: 'jpeg-xl'" in capsys.readouterr().err
    store = tmp_path / "compact.zarr"
    assert main(["ingest", str(raw), str(store), "--codec", "compact", "--quiet"]) == 0
    (case,) = ctspine_zarr.open(store).ctspine.case_ids()
    assert JPEGLS_NAME in (store / "cases" / case / "image" / "zarr.json").read_text()


def test_statistics_of_a_compact_store_equal_the_default_store(stores: tuple[Path, Path]) -> None:
    compact, default = (
        compute_stats(s, fingerprint_samples=None, progress=False, scheduler="sync") for s in stores
    )
    pd.testing.assert_frame_equal(compact.vertebrae, default.vertebrae)
    pd.testing.assert_frame_equal(compact.cases, default.cases)
    assert compact.fingerprint == default.fingerprint
