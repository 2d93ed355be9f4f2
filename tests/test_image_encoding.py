"""The default image codec: the Blosc shuffle and level chosen per case by measurement."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from ctspine_zarr import schema
from ctspine_zarr.schema import BLOSC_CHOICES, encoding_name, image_encoding
from ctspine_zarr.testing.synthetic import make_volume


def _stored_bytes(volume: np.ndarray, compressors: list) -> int:
    """Bytes of the chunks zarr stores for the sample slices of ``volume``."""
    picks = volume[[len(volume) // 4, len(volume) // 2, (3 * len(volume)) // 4]]
    keys: dict = {}
    array = zarr.create_array(
        zarr.storage.MemoryStore(store_dict=keys),
        shape=picks.shape,
        chunks=(1, *picks.shape[1:]),
        dtype=picks.dtype,
        compressors=compressors,
        config={"write_empty_chunks": True},
    )
    array[...] = picks
    return sum(len(value) for key, value in keys.items() if key.startswith("c/"))


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    hu, _ = make_volume(shape_zyx=(12, 160, 160), spacing_zyx=(3.0, 2.0, 2.0), seed=5)
    return hu


@pytest.mark.parametrize("tolerance", [0.0, 0.01, 0.5])
def test_the_cheapest_choice_within_the_tolerance_of_the_smallest_wins(
    volume: np.ndarray, tolerance: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(schema, "BLOSC_TOLERANCE", tolerance)
    from zarr.codecs import BloscCodec

    sizes = {
        (shuffle, clevel): _stored_bytes(
            volume, [BloscCodec(cname="zstd", clevel=clevel, shuffle=shuffle)]
        )
        for shuffle, clevel in BLOSC_CHOICES
    }
    bound = min(sizes.values()) * (1 + tolerance)
    expected = next(choice for choice in BLOSC_CHOICES if sizes[choice] <= bound)
    name = encoding_name(image_encoding("default", sample=volume))
    assert name == f"blosc zstd-{expected[1]} {expected[0]}"
    if tolerance == 0.0:
        assert sizes[expected] == min(sizes.values())
    if tolerance == 0.5:
        assert expected == BLOSC_CHOICES[0]


def test_without_a_sample_the_default_is_byte_shuffle_at_level_5() -> None:
    assert encoding_name(image_encoding("default")) == "blosc zstd-5 shuffle"


def test_a_volume_whose_level_matters_keeps_the_higher_level() -> None:
    # a repeated 4 kB random pattern: zstd at level 9 (blosc clevel 5) finds the repeats
    # across the slice, level 3 (clevel 2) finds fewer; the difference is far over 1%
    rng = np.random.default_rng(0)
    tile = rng.integers(-1000, 1000, size=(4, 512), dtype=np.int16)
    volume = np.tile(tile, (3, 64, 1)).reshape(3, 256, 512)
    volume += rng.integers(0, 2, size=volume.shape, dtype=np.int16)
    from zarr.codecs import BloscCodec

    sizes = {
        (shuffle, clevel): _stored_bytes(
            volume, [BloscCodec(cname="zstd", clevel=clevel, shuffle=shuffle)]
        )
        for shuffle, clevel in BLOSC_CHOICES
    }
    name = encoding_name(image_encoding("default", sample=volume))
    chosen = next(c for c in BLOSC_CHOICES if name == f"blosc zstd-{c[1]} {c[0]}")
    assert sizes[chosen] <= min(sizes.values()) * 1.01
    assert name.split()[1] == "zstd-5", sizes
    assert min(sizes[c] for c in BLOSC_CHOICES if c[1] == 2) > 1.01 * min(sizes.values())
