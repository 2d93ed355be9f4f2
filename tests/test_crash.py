"""Crash safety: SIGKILL an ingest part-way, then resume; readers never see a half case."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import zarr
from clirun import ingest_command

import ctspine_zarr
from ctspine_zarr.errors import StoreError
from ctspine_zarr.testing.synthetic import make_raw_tree

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")


def _complete(store: Path) -> set[str]:
    done = set()
    for meta in (store / "cases").glob("*/zarr.json"):
        try:
            group = zarr.open_group(meta.parent, mode="r")
        except Exception:  # a group whose metadata is being written
            continue
        if group.attrs.get("complete") is True:
            done.add(meta.parent.name)
    return done


def _ingest_and_kill(raw: Path, store: Path, *extra: str, after: int) -> set[str]:
    """Run ``ctspine-zarr ingest`` in a child, SIGKILL it once ``after`` cases are complete."""
    child = subprocess.Popen(
        ingest_command(raw, store, *extra),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and child.poll() is None:
        if (store / "cases").is_dir() and len(_complete(store)) >= after:
            break
        time.sleep(0.005)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL, "the ingest finished before it could be killed"
    return _complete(store)


def _assert_exact(store: Path, raw_cases) -> None:
    ds = ctspine_zarr.open(store)
    for case in raw_cases:
        vol = ds.ctspine.volume(case.case_id)
        for path, values in ((case.image_path, vol.image), (case.label_path, vol.label)):
            canonical = nib.as_closest_canonical(nib.load(path))
            expected = np.asanyarray(canonical.dataobj).transpose(2, 1, 0)
            np.testing.assert_array_equal(values.values, expected)


def test_sigkill_then_rerun_finishes_exactly(tmp_path: Path) -> None:
    raw, store = tmp_path / "raw", tmp_path / "s.zarr"
    cases = make_raw_tree(raw, n_cases=6, shape=(96, 96), n_slices=(40, 60), seed=11)
    done_before = _ingest_and_kill(raw, store, after=2)
    assert 2 <= len(done_before) < len(cases)
    # the first ingest never consolidated: the store says how to finish it
    with pytest.raises(StoreError, match="run the ingest again"):
        ctspine_zarr.open(store)
    report = ctspine_zarr.ingest(raw, store, workers=1, progress=False)
    assert report.ok
    skipped = {o.case_id for o in report.outcomes if o.status == "skipped"}
    assert skipped == done_before, "completed cases must not be rewritten"
    assert not list(store.rglob("*.partial"))
    _assert_exact(store, cases)


def test_a_reader_during_an_interrupted_second_ingest_sees_the_old_catalogue(
    tmp_path: Path,
) -> None:
    first, second, store = tmp_path / "first", tmp_path / "second", tmp_path / "s.zarr"
    first_cases = make_raw_tree(first, n_cases=2, shape=(32, 32), n_slices=(10, 12), seed=1)
    assert ctspine_zarr.ingest(first, store, workers=1, progress=False).ok
    # another raw tree (say VerSe) added to the same store, killed part-way
    second_cases = make_raw_tree(second, n_cases=6, shape=(96, 96), n_slices=(40, 60), seed=2)
    second_cases = [c for c in second_cases if c.case_id not in {f.case_id for f in first_cases}]
    _ingest_and_kill(second, store, "--add", after=len(first_cases) + 1)
    ds = ctspine_zarr.open(store)
    assert sorted(ds.ctspine.case_ids()) == sorted(c.case_id for c in first_cases)
    _assert_exact(store, first_cases)
    # the killed ingest published nothing: the store still records the first tree alone
    report = ctspine_zarr.ingest(second, store, workers=1, progress=False, add=True)
    assert report.ok
    ds = ctspine_zarr.open(store)
    every = first_cases + second_cases
    assert sorted(ds.ctspine.case_ids()) == sorted(c.case_id for c in every)
    _assert_exact(store, every)
