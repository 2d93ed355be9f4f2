"""Benchmark Zarr v3 codecs for ctspine_zarr CT images (int16 HU) and vertebra labels (uint8).

Every configuration is measured through real zarr-python 3 arrays in a ``MemoryStore``: one
axial slice per inner chunk, inside a ``sharding_indexed`` codec, with ``crc32c`` after the
compressor, so the stored bytes include the checksums and the shard index. Sizes are compared
with ``gzip.compress(raw_int16_bytes, 6)`` (the ``.nii.gz`` payload) of the same data: per
slice for the real CT slices (pydicom-data), per volume for the synthetic volumes
(``ctspine_zarr.synthetic.make_volume``, or a stand-in when that module is missing).

Run from the repository root::

    python -m benchmarks.codecs [--quick | --all] [--only NAME,...]

Timings are single-threaded (``threading.max_workers=1``, codec threads 1). Encode MB/s is raw
int16 megabytes per second of writing the synthetic volumes (best of 2 writes when fast);
decode time is the median time of reading one random slice with ``array[k]`` from a freshly
opened array (zarr overhead included: see the "bytes only" row), as wall clock
(``perf_counter``) and as CPU time of this process (``process_time``, robust to other load).
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import (
    BloscCodec,
    Crc32cCodec,
    GzipCodec,
    TransposeCodec,
    ZstdCodec,
)
from zarr.storage import MemoryStore

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


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def data_store_dir() -> Path:
    """Return the ``data`` folder of the installed ``pydicom-data`` package (``data_store``)."""
    spec = importlib.util.find_spec("data_store")
    if spec is None or spec.origin is None:
        raise RuntimeError("pydicom-data (module data_store) is not installed")
    return Path(spec.origin).parent / "data"


@dataclass
class RealSlice:
    """A real CT slice in HU plus notes about its origin and padding."""

    name: str
    hu: np.ndarray  # (1, 512, 512) int16
    notes: list[str] = field(default_factory=list)


def load_real_slices() -> list[RealSlice]:
    """Read the pydicom-data CT slices as HU int16 (pixel * RescaleSlope + RescaleIntercept)."""
    import pydicom

    out = []
    for name in REAL_FILES:
        ds = pydicom.dcmread(data_store_dir() / f"{name}.dcm")
        slope, inter = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        hu64 = np.rint(ds.pixel_array.astype(np.float64) * slope + inter)
        if hu64.min() < -32768 or hu64.max() > 32767:
            raise ValueError(f"{name}: HU out of int16 range")
        hu = hu64.astype(np.int16)
        yy, xx = np.mgrid[: hu.shape[0], : hu.shape[1]]
        cy, cx = (hu.shape[0] - 1) / 2, (hu.shape[1] - 1) / 2
        outside = np.hypot(yy - cy, xx - cx) > min(hu.shape) / 2
        notes = [
            f"ImageType {'/'.join(v.strip() for v in ds.ImageType)}, "
            f"DerivationDescription {ds.get('DerivationDescription', '-')!r}, "
            f"LossyImageCompression {ds.get('LossyImageCompression', '-')!r}",
            f"HU range {hu.min()}..{hu.max()}, {np.unique(hu).size} distinct values",
        ]
        pad = ds.get("PixelPaddingValue")
        if pad is not None:
            pad_hu = round(pad * slope + inter)
            notes.append(
                f"PixelPaddingValue {pad} (= {pad_hu} HU): "
                f"{np.mean(hu == pad_hu):.1%} of the pixels"
            )
        out_vals = hu[outside]
        notes.append(
            f"outside the inscribed reconstruction circle ({outside.mean():.1%} of the pixels): "
            f"{np.unique(out_vals).size} distinct values, {out_vals.min()}..{out_vals.max()} HU, "
            f"median {int(np.median(out_vals))}"
        )
        out.append(RealSlice(name, hu[None], notes))
    return out


def _standin_volume(shape_zyx: tuple[int, int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stand-in CT: -1024 air outside an ellipse, tissue 40 +- 15 noise, bone disk 300..1000."""
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape_zyx
    yy, xx = np.mgrid[:ny, :nx].astype(np.float32)
    body = ((yy - ny / 2) / (0.40 * ny)) ** 2 + ((xx - nx / 2) / (0.46 * nx)) ** 2 <= 1
    hu = np.full(shape_zyx, -1024, np.int16)
    label = np.zeros(shape_zyx, np.uint8)
    per_vertebra = 24  # slices: 20 of vertebra, 4 of disc
    for z in range(nz):
        cy = 0.62 * ny + 3 * np.sin(z / 15)
        cx = nx / 2 + 2 * np.cos(z / 11)
        r = np.hypot(yy - cy, xx - cx) / (0.07 * nx)
        tissue = 40 + rng.normal(0, 15, (ny, nx))
        bone = (r <= 1) & (z % per_vertebra < 20)
        img = np.where(body, tissue, -1024.0)
        img = np.where(bone, 300 + 700 * (1 - r) + rng.normal(0, 30, (ny, nx)), img)
        hu[z] = np.rint(img).astype(np.int16)
        label[z][bone] = 8 + z // per_vertebra
    return hu, label


@dataclass
class Synth:
    """A synthetic volume: name, HU int16 [z, y, x], labels uint8 and where it came from."""

    name: str
    hu: np.ndarray
    label: np.ndarray
    source: str


def synthetic_volume(n_slices: int, seed: int = 0) -> Synth:
    """Return a synthetic volume from ``ctspine_zarr.synthetic.make_volume`` if available."""
    shape = (n_slices, *SLICE_YX)
    spacing = (1.0, 0.8, 0.8)
    try:
        from ctspine_zarr.synthetic import make_volume
    except ImportError as exc:
        hu, label = _standin_volume(shape, seed)
        return Synth(f"seed {seed}", hu, label, f"benchmark stand-in ({exc})")
    hu, label = make_volume(shape_zyx=shape, spacing_zyx=spacing, seed=seed)
    return Synth(
        f"seed {seed}",
        np.asarray(hu, np.int16),
        np.asarray(label, np.uint8),
        f"ctspine_zarr.synthetic.make_volume(spacing_zyx={spacing}, seed={seed})",
    )


# --------------------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------------------


@dataclass
class Measure:
    """Stored bytes, encode seconds and median decode ms per slice (wall clock and CPU)."""

    nbytes: int
    encode_s: float
    decode_ms: float
    encode_cpu_s: float
    decode_cpu_ms: float


class _Clock:
    """Wall (``perf_counter``) and process CPU (``process_time``) time of a ``with`` block."""

    wall = cpu = 0.0

    def __enter__(self) -> _Clock:
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._w
        self.cpu = time.process_time() - self._c


def stored_bytes(store: MemoryStore) -> int:
    """Return the bytes of all chunk/shard objects in ``store`` (metadata excluded)."""
    return sum(len(v) for k, v in store._store_dict.items() if not k.endswith("zarr.json"))


def measure(
    data: np.ndarray,
    cfg: Config,
    *,
    repeats: int,
    chunk_slices: int = 1,
    shard_slices: int = SHARD_SLICES,
    encode_repeats: int = 1,
    seed: int = 0,
) -> Measure:
    """Write ``data`` with ``cfg`` to a sharded zarr v3 array, count bytes, time a slice read."""
    stored = data
    if cfg.offset or cfg.store_dtype:
        dtype = np.dtype(cfg.store_dtype or data.dtype)
        wide = data.astype(np.int32) + cfg.offset
        stored = wide.astype(dtype)
        if not np.array_equal(stored.astype(np.int32), wide):
            raise ValueError(f"{cfg.name}: offset does not fit {dtype}")
    nz = data.shape[0]
    shard = max(chunk_slices, min(shard_slices, nz) // chunk_slices * chunk_slices)
    store = MemoryStore()
    arr = zarr.create_array(
        store,
        shape=data.shape,
        dtype=stored.dtype,
        chunks=(chunk_slices, *data.shape[1:]),
        shards=(shard, *data.shape[1:]),
        filters=cfg.filters(),
        serializer=cfg.serializer() if cfg.serializer else "auto",
        compressors=[*cfg.compressors(), Crc32cCodec()],
        fill_value=0,
    )
    with _Clock() as c:
        arr[:] = stored
    encode_s, encode_cpu_s, spent = c.wall, c.cpu, c.wall
    for _ in range(encode_repeats - 1):  # best of a few writes (shared 2-core machine)
        if spent > ENCODE_BUDGET_S:
            break
        with _Clock() as c:
            arr[:] = stored
        encode_s, encode_cpu_s = min(encode_s, c.wall), min(encode_cpu_s, c.cpu)
        spent += c.wall
    reader = zarr.open_array(store, mode="r")  # reopened from metadata: codecs must resolve
    back = reader[:]
    if not np.array_equal(back, stored):
        raise AssertionError(f"{cfg.name}: not lossless")
    rng = np.random.default_rng(seed)
    wall, cpu = [], []
    for k in rng.integers(0, nz, repeats):
        with _Clock() as c:
            reader[int(k)]
        wall.append(c.wall)
        cpu.append(c.cpu)
    return Measure(
        stored_bytes(store),
        encode_s,
        1e3 * statistics.median(wall),
        encode_cpu_s,
        1e3 * statistics.median(cpu),
    )


@dataclass
class Row:
    """Results of one configuration."""

    cfg: Config
    real: dict[str, float] = field(default_factory=dict)  # slice name -> ratio vs gzip-6
    real_decode_ms: float = float("nan")
    real_decode_cpu_ms: float = float("nan")
    synth: dict[str, float] = field(default_factory=dict)  # volume name -> ratio vs gzip-6
    synth_bytes: dict[str, int] = field(default_factory=dict)
    encode_mbs: float = float("nan")
    encode_cpu_mbs: float = float("nan")
    synth_decode_ms: float = float("nan")
    synth_decode_cpu_ms: float = float("nan")
    error: str = ""


def gzip6(arr: np.ndarray) -> int:
    """Return ``len(gzip.compress(arr.tobytes(), 6))``: the .nii.gz payload baseline."""
    return len(gzip.compress(arr.tobytes(), 6))


def _measure_volumes(
    row: Row, cfg: Config, vols: Sequence[tuple[str, np.ndarray]], repeats: int
) -> None:
    """Fill the synthetic fields of ``row``: ratios per volume, encode MB/s, decode ms."""
    enc_s, enc_cpu, dec, dec_cpu, raw = 0.0, 0.0, [], [], 0
    for name, data in vols:
        m = measure(data, cfg, repeats=repeats, encode_repeats=2)
        row.synth[name] = m.nbytes / gzip6(data)
        row.synth_bytes[name] = m.nbytes
        enc_s, enc_cpu, raw = enc_s + m.encode_s, enc_cpu + m.encode_cpu_s, raw + data.nbytes
        dec.append(m.decode_ms)
        dec_cpu.append(m.decode_cpu_ms)
    row.encode_mbs = raw / enc_s / 1e6
    row.encode_cpu_mbs = raw / max(enc_cpu, 1e-9) / 1e6
    row.synth_decode_ms = statistics.median(dec)
    row.synth_decode_cpu_ms = statistics.median(dec_cpu)


def run_image(
    cfgs: Sequence[Config], real: Sequence[RealSlice], synth: Sequence[Synth], repeats: int
) -> list[Row]:
    """Measure every image configuration on the real slices and the synthetic volumes."""
    real_gz = {s.name: gzip6(s.hu) for s in real}
    rows = []
    for cfg in cfgs:
        row = Row(cfg)
        t_start = time.perf_counter()
        try:
            dec = []
            for s in real:
                m = measure(s.hu, cfg, repeats=repeats)
                row.real[s.name] = m.nbytes / real_gz[s.name]
                dec.append((m.decode_ms, m.decode_cpu_ms))
            # the original (non-lossy) slice comes first
            row.real_decode_ms, row.real_decode_cpu_ms = dec[0]
            _measure_volumes(row, cfg, [(v.name, v.hu) for v in synth], repeats)
        except Exception as exc:  # report and continue with the other codecs
            row.error = f"{type(exc).__name__}: {exc}"[:120]
        rows.append(row)
        print(f"  {cfg.name}: {time.perf_counter() - t_start:.1f} s", file=sys.stderr)
    return rows


def run_labels(cfgs: Sequence[Config], synth: Sequence[Synth], repeats: int) -> list[Row]:
    """Measure every label configuration on the synthetic label volumes."""
    rows = []
    for cfg in cfgs:
        row = Row(cfg)
        _measure_volumes(row, cfg, [(v.name, v.label) for v in synth], repeats)
        rows.append(row)
    return rows


def run_context(
    cfgs: Sequence[Config], synth: Synth, sizes: Sequence[int], repeats: int
) -> list[tuple[str, int, float, float]]:
    """Return (codec, slices per chunk, ratio vs gzip-6, decode ms per slice) on one volume."""
    gz = gzip6(synth.hu)
    out = []
    for cfg in cfgs:
        for n in sizes:
            m = measure(synth.hu, cfg, repeats=repeats, chunk_slices=n)
            out.append((cfg.name, n, m.nbytes / gz, m.decode_ms))
    return out


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def _f(x: float, fmt: str = ".3f") -> str:
    return "-" if x != x else format(x, fmt)


def _ratios(values: dict[str, float]) -> str:
    return " / ".join(_f(v) for v in values.values())


def image_table(rows: Sequence[Row], real_names: Sequence[str], synth_names: Sequence[str]) -> str:
    """Return the markdown table of the image rows."""
    head = (
        f"| codec | real CT ratio vs gzip-6 ({' / '.join(real_names)}) "
        f"| synthetic ratio vs gzip-6 ({' / '.join(synth_names)}) "
        "| encode MB/s (wall; CPU) | decode ms/slice (real / synth) "
        "| decode CPU ms/slice (real / synth) | portable |\n"
        "|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        if r.error:
            lines.append(f"| {r.cfg.name} | error: {r.error} | | | | | |")
            continue
        lines.append(
            f"| {r.cfg.name} | {_ratios(r.real)} | {_ratios(r.synth)} "
            f"| {_f(r.encode_mbs, '.0f')}; {_f(r.encode_cpu_mbs, '.0f')} "
            f"| {_f(r.real_decode_ms, '.2f')} / {_f(r.synth_decode_ms, '.2f')} "
            f"| {_f(r.real_decode_cpu_ms, '.2f')} / {_f(r.synth_decode_cpu_ms, '.2f')} "
            f"| {'yes' if r.cfg.portable else 'no'} |"
        )
    return head + "\n".join(lines)


def label_table(rows: Sequence[Row], synth_names: Sequence[str]) -> str:
    """Return the markdown table of the label rows."""
    head = (
        f"| label codec | ratio vs gzip-6 of the uint8 labels ({' / '.join(synth_names)}) "
        "| stored bytes | encode MB/s | decode ms/slice | portable |\n|---|---|---|---|---|---|\n"
    )
    return head + "\n".join(
        f"| {r.cfg.name} | {_ratios(r.synth)} | {sum(r.synth_bytes.values())} "
        f"| {_f(r.encode_mbs, '.0f')} | {_f(r.synth_decode_ms, '.2f')} "
        f"| {'yes' if r.cfg.portable else 'no'} |"
        for r in rows
    )


def nibabel_nii_gz_bytes(hu: np.ndarray) -> int:
    """Return the size of ``hu`` saved by nibabel as .nii.gz with its default settings."""
    import nibabel as nib

    img = nib.Nifti1Image(np.ascontiguousarray(hu.transpose(2, 1, 0)), np.eye(4))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "v.nii.gz")
        nib.save(img, path)
        return os.path.getsize(path)


def versions() -> str:
    """Return the machine and library versions line."""
    import imagecodecs
    import nibabel
    import numcodecs
    import pydicom

    return (
        f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs; "
        f"zarr {zarr.__version__}, numcodecs {numcodecs.__version__}, "
        f"imagecodecs {imagecodecs.__version__}, numpy {np.__version__}, "
        f"pydicom {pydicom.__version__}, nibabel {nibabel.__version__}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print markdown tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer configs/slices/repeats (<60 s)")
    ap.add_argument("--all", action="store_true", help="also the extra configs (~2x longer)")
    ap.add_argument("--only", help="comma-separated substrings: run matching image codecs only")
    ap.add_argument("--slices", type=int, help="slices per synthetic volume (48; 16 quick)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="synthetic seeds")
    ap.add_argument("--repeats", type=int, help="decode repeats (15; 5 quick)")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", message="Numcodecs codecs are not in the Zarr version 3")
    zarr.config.set({"threading.max_workers": 1})  # before zarr creates its thread pool
    n_slices = args.slices or (16 if args.quick else 48)
    level = QUICK if args.quick else ALL if args.all else FULL
    repeats = args.repeats or (5 if args.quick else 15)
    t_all = time.perf_counter()

    real = load_real_slices()
    synth = [synthetic_volume(n_slices, seed) for seed in args.seeds]
    real_names, synth_names = [s.name for s in real], [v.name for v in synth]

    def say(text: str = "") -> None:
        print(text, flush=True)

    say(f"## Codec benchmark ({['--quick', 'full', '--all'][level]})\n")
    say(f"- {versions()}")
    say(f"- shards of {SHARD_SLICES} slices, inner chunk (1, 512, 512), crc32c after compressor")
    for s in real:
        say(f"- real `{s.name}` ({gzip6(s.hu)} B gzip-6): " + "; ".join(s.notes))
    for v in synth:
        labels = np.unique(v.label).tolist()
        say(
            f"- synthetic {v.name}: {v.hu.shape} from {v.source}; image gzip-6 {gzip6(v.hu)} B, "
            f"HU {v.hu.min()}..{v.hu.max()}, {np.mean(v.hu == -1024):.1%} at -1024; "
            f"labels {labels}, {np.mean(v.label > 0):.2%} nonzero, gzip-6 {gzip6(v.label)} B"
        )
        if not args.quick:
            say(f"  - nibabel default `.nii.gz` of this image: {nibabel_nii_gz_bytes(v.hu)} B")
    say()

    cfgs = image_configs(level)
    if args.only:
        keys = [k.strip() for k in args.only.split(",") if k.strip()]
        cfgs = [c for c in image_configs(ALL) if any(k in c.name for k in keys)]
    rows = run_image(cfgs, real, synth, repeats)
    say("### Image (int16 HU)\n")
    say(image_table(rows, real_names, synth_names))
    say()

    if args.only:  # a re-run of selected image codecs: skip labels and context
        say(f"_total benchmark time {time.perf_counter() - t_all:.0f} s_")
        return 0

    lrows = run_labels(label_configs(level), synth, repeats)
    say("### Labels (uint8, synthetic)\n")
    say(label_table(lrows, synth_names))
    say()

    best = min(lrows, key=lambda r: sum(r.synth_bytes.values()))
    gz_both = {v.name: gzip6(v.hu) + gzip6(v.label) for v in synth}
    say(f"### Image + label vs gzip-6 of both (synthetic; labels with `{best.cfg.name}`)\n")
    say(f"| image codec | (image + label) / gzip-6 (image + label) ({' / '.join(synth_names)}) |")
    say("|---|---|")
    for r in rows:
        if not r.error:
            both = {n: (r.synth_bytes[n] + best.synth_bytes[n]) / gz_both[n] for n in synth_names}
            say(f"| {r.cfg.name} | {_ratios(both)} |")
    say()

    sizes = (1, 8) if args.quick else (1, 4, 16)
    by_name = {c.name: c for c in image_configs(ALL)}
    ctx_cfgs = [by_name[n] for n in CONTEXT_CONFIGS[: 2 if args.quick else None]]
    say(f"### Compression context: slices per chunk (synthetic {synth[0].name}; the store keeps 1)")
    say(
        "\n| codec | slices/chunk | ratio vs gzip-6 | decode ms per slice read |\n|---|---|---|---|"
    )
    for name, n, ratio, ms in run_context(ctx_cfgs, synth[0], sizes, repeats):
        say(f"| {name} | {n} | {ratio:.3f} | {ms:.2f} |")
    say()
    say(f"_total benchmark time {time.perf_counter() - t_all:.0f} s_")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
