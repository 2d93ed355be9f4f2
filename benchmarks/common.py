"""Shared helpers for the benchmarks: timing, summaries, markdown tables, machine info.

Nothing here depends on ctspine_zarr beyond its version, so every benchmark can use it.
"""

from __future__ import annotations

import gc
import importlib.metadata
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "NOISE_NOTE",
    "Summary",
    "Timer",
    "dir_bytes",
    "fmt_bytes",
    "fmt_ratio",
    "fmt_seconds",
    "gc_paused",
    "git_state",
    "machine_info",
    "machine_lines",
    "markdown_table",
    "percentile",
    "ratio",
    "summarize",
    "time_call",
    "time_calls",
    "work_directory",
    "write_json",
]

#: One line to print with every benchmark that runs on a shared machine.
NOISE_NOTE = (
    "Timings are noisy: the machine is shared with other jobs (see the load average); "
    "read medians and ratios, not single numbers."
)

#: Versions reported by :func:`machine_info` (distribution names).
DEFAULT_PACKAGES: tuple[str, ...] = (
    "ctspine_zarr",
    "numpy",
    "zarr",
    "numcodecs",
    "nibabel",
    "indexed_gzip",
    "dask",
    "xarray",
)


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """Summary statistics of a list of durations, in seconds.

    Attributes
    ----------
    n
        Number of samples.
    p50, p95
        Median and 95th percentile (linear interpolation).
    mean, min, max
        Mean, minimum and maximum.
    """

    n: int
    p50: float
    p95: float
    mean: float
    min: float
    max: float

    def to_json(self) -> dict[str, float]:
        """Return the summary as a JSON-able dict."""
        return asdict(self)


def percentile(values: Sequence[float], q: float) -> float:
    """Return the ``q``-th percentile (0-100) of ``values`` by linear interpolation.

    Parameters
    ----------
    values
        Samples (any order); must not be empty.
    q
        Percentile in ``[0, 100]``.

    Returns
    -------
    float
    """
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summarize(samples: Sequence[float]) -> Summary:
    """Summarise durations (seconds) into p50, p95, mean, min and max."""
    return Summary(
        n=len(samples),
        p50=statistics.median(samples),
        p95=percentile(samples, 95.0),
        mean=statistics.fmean(samples),
        min=min(samples),
        max=max(samples),
    )


def time_call(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Call ``fn()`` once and return ``(seconds, result)``."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def time_calls(
    fn: Callable[..., Any], args: Iterable[tuple[Any, ...]], *, warmup: int = 0
) -> list[float]:
    """Time ``fn(*a)`` for each ``a`` in ``args``; the first ``warmup`` calls are not kept.

    Parameters
    ----------
    fn
        The function to time.
    args
        Argument tuples, one call each.
    warmup
        Leading calls that run but are not recorded.

    Returns
    -------
    list of float
        Seconds per recorded call, in call order.
    """
    out: list[float] = []
    for i, a in enumerate(args):
        start = time.perf_counter()
        fn(*a)
        elapsed = time.perf_counter() - start
        if i >= warmup:
            out.append(elapsed)
    return out


class Timer:
    """Accumulate named wall times: ``with timer("step"): ...``; ``timer.seconds["step"]``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        """Time the ``with`` block and add it to ``name``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


@contextmanager
def gc_paused() -> Iterator[None]:
    """Collect garbage, then keep the cyclic collector off for the ``with`` block."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# --------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """Return ``numerator / denominator``, or None when either is missing or the divisor 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def fmt_ratio(value: float | None, digits: int = 2) -> str:
    """Format a ratio as ``1.23x`` (``n/a`` for None)."""
    return "n/a" if value is None else f"{value:.{digits}f}x"


def fmt_seconds(seconds: float | None) -> str:
    """Format a duration with a unit that keeps 3 significant digits (us, ms or s)."""
    if seconds is None:
        return "n/a"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} us"
    if seconds < 1.0:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s"


def fmt_bytes(n: float | None) -> str:
    """Format a byte count in binary units (``12.3 MiB``)."""
    if n is None:
        return "n/a"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - unreachable, GiB is the last unit


def markdown_table(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], *, align: str | None = None
) -> str:
    """Return a GitHub markdown table with padded columns.

    Parameters
    ----------
    headers
        Column titles.
    rows
        Cells (converted with ``str``).
    align
        One letter per column, ``l`` or ``r`` (default: first column left, others right).

    Returns
    -------
    str
        The table, without a trailing newline.
    """
    cells = [[str(c) for c in row] for row in rows]
    n = len(headers)
    for row in cells:
        if len(row) != n:
            raise ValueError(f"row has {len(row)} cells, expected {n}: {row}")
    align = align or "l" + "r" * (n - 1)
    widths = [max([len(headers[i]), 3, *(len(r[i]) for r in cells)]) for i in range(n)]

    def line(row: Sequence[str]) -> str:
        padded = [
            row[i].ljust(widths[i]) if align[i] == "l" else row[i].rjust(widths[i])
            for i in range(n)
        ]
        return "| " + " | ".join(padded) + " |"

    rule = [
        ":" + "-" * (widths[i] - 1) if align[i] == "l" else "-" * (widths[i] - 1) + ":"
        for i in range(n)
    ]
    return "\n".join([line(list(headers)), "| " + " | ".join(rule) + " |", *map(line, cells)])


# --------------------------------------------------------------------------------------------
# Machine, files, JSON
# --------------------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for text in fh:
                if text.lower().startswith("model name"):
                    return text.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info(packages: Sequence[str] = DEFAULT_PACKAGES) -> dict[str, Any]:
    """Describe the machine and the package versions a benchmark ran with.

    Parameters
    ----------
    packages
        Distribution names whose versions to report (None when not installed).

    Returns
    -------
    dict
        ``cpu_count``, ``cpu_affinity`` (CPUs this process may use), ``processor``
        (``platform.processor()``), ``cpu_model`` (``/proc/cpuinfo``), ``platform``,
        ``python``, ``load_average`` (1, 5, 15 min) and ``versions``.
    """
    try:
        affinity: int | None = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    try:
        load: list[float] | None = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "processor": platform.processor(),
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "load_average": load,
        "versions": {name: _version(name) for name in packages},
    }


def machine_lines(info: Mapping[str, Any]) -> list[str]:
    """Return :func:`machine_info` as a few human-readable lines."""
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v is not None)
    load = info.get("load_average")
    return [
        f"machine: {info['cpu_count']} CPUs ({info['cpu_affinity']} usable), "
        f"{info['cpu_model']} (platform.processor(): {info['processor'] or 'n/a'}), "
        f"{info['platform']}",
        f"python {info['python']}; {versions}",
        f"load average (1/5/15 min) at start: {load if load is not None else 'n/a'}",
    ]


def git_state(path: str | os.PathLike[str] = ".") -> dict[str, Any]:
    """Return the git commit and the changed or new files under ``path`` (None if no git).

    Benchmarks run on a working tree that others edit; this says which code was measured.
    """

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", os.fspath(path), *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout

    try:
        head = git("rev-parse", "HEAD").strip()
        status = git("status", "--porcelain", "--", ".")
        changed = [line[3:] for line in status.splitlines() if line]
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "changed": None}
    return {"commit": head, "changed": changed}


def dir_bytes(path: str | os.PathLike[str]) -> int:
    """Return the total size of every file under ``path`` (symlinks not followed)."""
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            full = os.path.join(dirpath, name)
            if not os.path.islink(full):
                total += os.path.getsize(full)
    return total


def evict_from_page_cache(path: str | os.PathLike[str]) -> int:
    """Drop every file under ``path`` from the page cache; return how many files.

    Each file is flushed (``fsync``) and then dropped with ``posix_fadvise(DONTNEED)``, so
    the next read comes from the disk, as when a dataset does not fit in memory. No root
    needed; a no-op (returning 0) where ``posix_fadvise`` does not exist.
    """
    if not hasattr(os, "posix_fadvise"):
        return 0
    count = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                count += 1
            finally:
                os.close(fd)
    return count


def resident_fraction(path: str | os.PathLike[str]) -> float | None:
    """Fraction of the pages of the files under ``path`` that are in the page cache.

    Linux only (``mincore`` on a private, untouched mapping of each file); None elsewhere
    or when the call fails. Shows whether :func:`evict_from_page_cache` worked (it cannot
    on tmpfs, nor for pages another process has mapped).
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    import ctypes.util
    import mmap

    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    total = resident = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            full = os.path.join(dirpath, name)
            size = os.path.getsize(full)
            if size == 0 or os.path.islink(full):
                continue
            pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
            vec = (ctypes.c_ubyte * pages)()
            with open(full, "rb") as fh:
                mapped = mmap.mmap(fh.fileno(), size, access=mmap.ACCESS_COPY)
                try:
                    view = (ctypes.c_char * size).from_buffer(mapped)
                    failed = libc.mincore(
                        ctypes.c_void_p(ctypes.addressof(view)), ctypes.c_size_t(size), vec
                    )
                    del view
                finally:
                    mapped.close()
            if failed:
                return None
            resident += sum(byte & 1 for byte in bytes(vec))
            total += pages
    return resident / total if total else None


@contextmanager
def work_directory(
    path: str | os.PathLike[str] | None, prefix: str = "ctspine-bench-"
) -> Iterator[Path]:
    """Yield ``path`` (created, then kept) or a temporary directory removed at the end."""
    if path is not None:
        kept = Path(path).resolve()
        kept.mkdir(parents=True, exist_ok=True)
        yield kept
        return
    temporary = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield temporary
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def write_json(path: str | os.PathLike[str], payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` as indented JSON (numpy scalars and paths as plain values)."""

    def default(obj: Any) -> Any:
        if hasattr(obj, "item"):
            return obj.item()
        if hasattr(obj, "tolist"):
            return obj.tolist()
        if isinstance(obj, os.PathLike):
            return os.fspath(obj)
        raise TypeError(f"not JSON-able: {type(obj).__name__}")

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2, default=default) + "\n", encoding="utf-8")
    return out


#: The file a benchmark leaves in a raw tree it wrote, so that a rerun may delete that tree.
BENCH_MARK = ".ctspine-benchmark"


def fresh_tree(path: Path) -> Path:
    """An empty folder at ``path`` for a benchmark's raw tree; never deletes what it did not write.

    A folder there is removed only when it holds :data:`BENCH_MARK` (a tree a benchmark
    wrote); any other folder stops the benchmark with one line naming it.
    """
    if path.exists():
        if not (path / BENCH_MARK).is_file():
            raise SystemExit(f"{path}: exists and no benchmark wrote it; choose another --workdir")
        shutil.rmtree(path)
    path.mkdir(parents=True)
    (path / BENCH_MARK).write_text("written by a ctspine_zarr benchmark; a rerun deletes it\n")
    return path


def remove_store(path: Path) -> None:
    """Delete ``path`` if it is a ctspine store (the benchmarks' own); refuse anything else."""
    if not path.exists():
        return
    root = path / "zarr.json"
    try:
        ours = "ctspine_zarr_format" in json.loads(root.read_text()).get("attributes", {})
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours:
        raise SystemExit(f"{path}: exists and is not a ctspine store; choose another --workdir")
    shutil.rmtree(path)
