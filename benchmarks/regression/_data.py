"""The small generated tree and store the regression benchmarks read, built once per process."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from functools import cache
from pathlib import Path

#: Cases, in-plane shape and slice range of the tree: small enough to build in seconds.
N_CASES = 2
SHAPE = (256, 256)
SLICES = (40, 60)


@cache
def workdir() -> Path:
    """A temporary directory removed when the process exits."""
    path = Path(tempfile.mkdtemp(prefix="ctspine-regression-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


@cache
def raw_tree() -> Path:
    """A CTSpine1K-like raw tree of :data:`N_CASES` cases."""
    from ctspine_zarr.testing.synthetic import make_raw_tree

    raw = workdir() / "raw"
    make_raw_tree(raw, n_cases=N_CASES, shape=SHAPE, n_slices=SLICES, seed=0)
    return raw


@cache
def store() -> Path:
    """The store of :func:`raw_tree`, ingested with the default settings."""
    import ctspine_zarr

    path = workdir() / "store.zarr"
    report = ctspine_zarr.ingest(raw_tree(), path, workers=1, progress=False)
    if not report.ok:
        raise RuntimeError(report.summary())
    return path
