"""The codec chains compared: portable numcodecs/zarr codecs and imagecodecs' ones."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from zarr.codecs import (
    BloscCodec,
    GzipCodec,
    TransposeCodec,
    ZstdCodec,
)

SLICE_YX = (512, 512)
SHARD_SLICES = 32  # ctspine_zarr.schema.SLICES_PER_SHARD
ENCODE_BUDGET_S = 1.0  # repeat a volume write (best of 2) only if the first took less
UINT16_OFFSET = 32768  # HU + 32768 as uint16: lossless for every int16 value
REAL_FILES = ("693_UNCR", "693_UNCI")

Codecs = list[Any]


# --------------------------------------------------------------------------------------------
# Non-portable codecs: imagecodecs' numcodecs classes wrapped as zarr v3 codecs
# --------------------------------------------------------------------------------------------


def _imagecodecs_zarr_classes() -> dict[str, type]:
    """Return zarr v3 array->bytes codec classes for imagecodecs' numcodecs codecs.

    ``imagecodecs.numcodecs.register_codecs()`` puts them in the numcodecs registry (ids
    ``imagecodecs_*``); the zarr classes are named ``numcodecs.imagecodecs_*`` in the array
    metadata and registered with ``zarr.registry.register_codec`` so a store can be reopened.
    """
    import imagecodecs.numcodecs
    from zarr.codecs.numcodecs import _NumcodecsArrayBytesCodec
    from zarr.registry import register_codec

    imagecodecs.numcodecs.register_codecs(verbose=False)
    classes: dict[str, type] = {}
    for short in ("jpegls", "jpegxl", "jpeg2k", "htj2k", "png", "lerc", "ljpeg", "pcodec"):
        codec_name = f"imagecodecs_{short}"
        cls = type(
            f"Zarr{short.capitalize()}",
            (_NumcodecsArrayBytesCodec,),
            {},
            codec_name=codec_name,
        )
        register_codec(f"numcodecs.{codec_name}", cls)
        classes[short] = cls
    return classes


_IC: dict[str, type] = {}


def ic(short: str, **config: Any) -> Any:
    """Return a zarr v3 codec instance wrapping ``imagecodecs.numcodecs`` codec ``short``."""
    if not _IC:
        _IC.update(_imagecodecs_zarr_classes())
    return _IC[short](**config)


def nc(name: str, **config: Any) -> Any:
    """Return ``zarr.codecs.numcodecs.<name>(**config)`` (non-portable numcodecs codec)."""
    import zarr.codecs.numcodecs as zn

    return getattr(zn, name)(**config)


_SHAPED: list[type] = []


def _shaped_fixed_scale_offset() -> type:
    """Return a ``FixedScaleOffset`` subclass whose encoder keeps the chunk shape.

    zarr's numcodecs ``FixedScaleOffset`` returns the encoded chunk flattened to 1-D, so an
    image codec after it sees a 1 x 262144 "image" and loses all 2-D prediction. The subclass
    writes the same metadata (``numcodecs.fixedscaleoffset``); decoding needs no change.
    """
    if not _SHAPED:
        from zarr.codecs.numcodecs import FixedScaleOffset

        class ShapedFixedScaleOffset(FixedScaleOffset):
            async def _encode_single(self, chunk_data: Any, chunk_spec: Any) -> Any:
                out = await super()._encode_single(chunk_data, chunk_spec)
                flat = out.as_ndarray_like()
                return chunk_spec.prototype.nd_buffer.from_ndarray_like(
                    flat.reshape(chunk_spec.shape)
                )

        _SHAPED.append(ShapedFixedScaleOffset)
    return _SHAPED[0]


def to_uint16(*, shaped: bool = True) -> Any:
    """Array->array filter HU int16 -> uint16 (HU + 32768), needed by the image codecs."""
    from zarr.codecs.numcodecs import FixedScaleOffset

    cls = _shaped_fixed_scale_offset() if shaped else FixedScaleOffset
    return cls(offset=-UINT16_OFFSET, scale=1, dtype="<i2", astype="<u2")


# --------------------------------------------------------------------------------------------
# Configurations
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """One codec pipeline; crc32c is always appended after ``compressors``."""

    name: str
    portable: bool
    compressors: Callable[[], Codecs] = list
    filters: Callable[[], Codecs] = list
    serializer: Callable[[], Any] | None = None
    offset: int = 0  # added to HU by the package before storing (not a codec)
    store_dtype: str = ""  # dtype of the stored array; "" = dtype of the data
    tier: int = 1  # 0: in --quick, 1: in the default full run, 2: only with --all


def blosc(cname: str, clevel: int, shuffle: str, **kw: Any) -> Callable[[], Codecs]:
    """Return a factory for ``[BloscCodec(...)]``."""
    return lambda: [BloscCodec(cname=cname, clevel=clevel, shuffle=shuffle, **kw)]


def zstd(level: int) -> Callable[[], Codecs]:
    """Return a factory for ``[ZstdCodec(level)]``."""
    return lambda: [ZstdCodec(level=level)]


BS = 1 << 19  # blosc blocksize = one whole 512x512 int16 slice
U16: dict[str, Any] = {"offset": UINT16_OFFSET, "store_dtype": "uint16"}


def delta() -> Codecs:
    """Return ``[numcodecs Delta(int16)]`` (flattened 1-D differences within the chunk)."""
    return [nc("Delta", dtype="<i2")]


def u16() -> Codecs:
    """Return the shape-keeping HU -> uint16 filter for the image codecs."""
    return [to_uint16()]


def jxl(effort: int) -> Callable[[], Any]:
    """Return a factory for a lossless JPEG-XL serializer (single-threaded)."""
    return lambda: ic("jpegxl", lossless=True, effort=effort, numthreads=1)


QUICK, FULL, ALL = 0, 1, 2


def image_configs(level: int = FULL) -> list[Config]:
    """Return the image (int16 HU) configurations up to tier ``level``, portable ones first."""
    q, x = QUICK, ALL
    p: list[Config] = [
        Config("bytes only (no compression)", True, tier=q),
        Config("gzip 1", True, lambda: [GzipCodec(level=1)]),
        Config("gzip 6", True, lambda: [GzipCodec(level=6)], tier=q),
        Config("gzip 9", True, lambda: [GzipCodec(level=9)], tier=x),
    ]
    zstd_tiers = {1: 1, 3: q, 5: 1, 9: 1, 15: x, 19: 1, 22: x}
    p += [Config(f"zstd {lv}", True, zstd(lv), tier=t) for lv, t in zstd_tiers.items()]
    shuffle_tiers = {1: 1, 2: x, 3: q, 4: x, 5: q, 6: x, 7: 1, 8: x, 9: 1}
    p += [
        Config(f"blosc zstd {lv} shuffle", True, blosc("zstd", lv, "shuffle"), tier=t)
        for lv, t in shuffle_tiers.items()
    ]
    p += [
        Config(f"blosc zstd {lv} bitshuffle", True, blosc("zstd", lv, "bitshuffle"), tier=t)
        for lv, t in {1: 1, 3: x, 5: q, 7: 1, 9: 1}.items()
    ]
    shuffle5 = blosc("zstd", 5, "shuffle")
    p += [
        Config("blosc zstd 5 noshuffle", True, blosc("zstd", 5, "noshuffle")),
        Config(
            "blosc zstd 5 shuffle typesize=1 (pitfall)",
            True,
            blosc("zstd", 5, "shuffle", typesize=1),
            tier=q,
        ),
        Config(
            "blosc zstd 5 shuffle blocksize=512KiB", True, blosc("zstd", 5, "shuffle", blocksize=BS)
        ),
        Config(
            "blosc zstd 9 shuffle blocksize=512KiB",
            True,
            blosc("zstd", 9, "shuffle", blocksize=BS),
            tier=x,
        ),
        Config(
            "blosc zstd 7 shuffle blocksize=256KiB",
            True,
            blosc("zstd", 7, "shuffle", blocksize=BS // 2),
        ),
        Config("blosc lz4 5 shuffle", True, blosc("lz4", 5, "shuffle"), tier=q),
        Config("blosc lz4hc 5 shuffle", True, blosc("lz4hc", 5, "shuffle")),
        Config("blosc lz4hc 9 shuffle", True, blosc("lz4hc", 9, "shuffle"), tier=x),
        Config("blosc zlib 5 shuffle", True, blosc("zlib", 5, "shuffle")),
        Config("blosc zlib 9 shuffle", True, blosc("zlib", 9, "shuffle"), tier=x),
        Config("blosc blosclz 5 shuffle", True, blosc("blosclz", 5, "shuffle")),
        Config(
            "transpose(0,2,1) + blosc zstd 5 shuffle",
            True,
            shuffle5,
            filters=lambda: [TransposeCodec(order=(0, 2, 1))],
        ),
        Config("uint16 HU+32768, blosc zstd 5 shuffle", True, shuffle5, **U16, tier=q),
        Config(
            "uint16 HU+32768, blosc zstd 5 bitshuffle", True, blosc("zstd", 5, "bitshuffle"), **U16
        ),
        Config(
            "int16 HU+1024 (DICOM raw), blosc zstd 5 shuffle", True, shuffle5, offset=1024, tier=x
        ),
        Config("uint16 HU+32768, zstd 9", True, zstd(9), **U16, tier=x),
    ]
    n: list[Config] = [
        Config("Delta + zstd 5", False, zstd(5), filters=delta, tier=q),
        Config("Delta + zstd 9", False, zstd(9), filters=delta, tier=x),
        Config("Delta + blosc zstd 5 shuffle", False, shuffle5, filters=delta, tier=x),
        Config("Delta + blosc zstd 5 bitshuffle", False, blosc("zstd", 5, "bitshuffle"),
               filters=delta),
        Config("JPEG-LS lossless (uint16)", False, filters=u16,
               serializer=lambda: ic("jpegls", level=0), tier=q),
        Config("JPEG-LS after plain zarr FixedScaleOffset (pitfall: 1-row image)", False,
               filters=lambda: [to_uint16(shaped=False)],
               serializer=lambda: ic("jpegls", level=0)),
        Config("JPEG-XL lossless effort 3 (uint16)", False, filters=u16, serializer=jxl(3),
               tier=q),
        Config("JPEG-XL lossless effort 5 (uint16)", False, filters=u16, serializer=jxl(5)),
        Config("JPEG-XL lossless effort 7 (uint16)", False, filters=u16, serializer=jxl(7),
               tier=x),
        Config("JPEG 2000 lossless (int16)", False,
               serializer=lambda: ic("jpeg2k", level=0, reversible=True, numthreads=1)),
        Config("HTJ2K lossless (uint16)", False, filters=u16,
               serializer=lambda: ic("htj2k", level=0, reversible=True)),
        Config("PNG level 6 (uint16)", False, filters=u16, serializer=lambda: ic("png", level=6)),
        Config("lossless JPEG (LJPEG, uint16)", False, filters=u16,
               serializer=lambda: ic("ljpeg")),
        Config("LERC lossless + zstd", False,
               serializer=lambda: ic("lerc", level=0.0, compression="zstd")),
        Config("pcodec level 8", False,
               serializer=lambda: ic("pcodec", level=8, shape=(1, *SLICE_YX), dtype="<i2"),
               tier=q),
    ]  # fmt: skip
    return [c for c in p + n if c.tier <= level]


def label_configs(level: int = FULL) -> list[Config]:
    """Return the label (uint8) configurations up to tier ``level``."""
    q, x = QUICK, ALL
    configs = [
        Config("bytes only (no compression)", True, tier=x),
        Config("gzip 6", True, lambda: [GzipCodec(level=6)], tier=q),
        Config("zstd 1", True, zstd(1), tier=x),
        Config("zstd 3", True, zstd(3), tier=q),
        Config("zstd 9", True, zstd(9)),
        Config("zstd 19", True, zstd(19)),
        Config("blosc zstd 5 bitshuffle", True, blosc("zstd", 5, "bitshuffle"), tier=q),
        Config("blosc zstd 9 bitshuffle", True, blosc("zstd", 9, "bitshuffle")),
        Config("blosc zstd 5 shuffle (no-op, typesize 1)", True, blosc("zstd", 5, "shuffle"),
               tier=q),
        Config("blosc zstd 5 noshuffle", True, blosc("zstd", 5, "noshuffle"), tier=x),
        Config("blosc lz4 5 bitshuffle", True, blosc("lz4", 5, "bitshuffle")),
    ]  # fmt: skip
    return [c for c in configs if c.tier <= level]


CONTEXT_CONFIGS = ("blosc zstd 5 shuffle", "zstd 9", "blosc zstd 5 bitshuffle", "Delta + zstd 5")
