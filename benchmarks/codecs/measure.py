"""Bytes and timings of one codec chain, through real zarr arrays in a ``MemoryStore``."""

from __future__ import annotations

import gzip
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import zarr
from zarr.codecs import (
    Crc32cCodec,
)
from zarr.storage import MemoryStore

from benchmarks.codecs.configs import (
    ENCODE_BUDGET_S,
    SHARD_SLICES,
    Config,
)
from benchmarks.codecs.data import (
    RealSlice,
    Synth,
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
