"""Object storage: the same bodies on local, in-memory and S3 stores; HTTP; request counts."""

from __future__ import annotations

import multiprocessing
import uuid
from pathlib import Path
from typing import Any

import fsspec
import nibabel as nib
import numpy as np
import pytest
import xarray as xr
from clirun import ingest_command

import ctspine_zarr
from ctspine_zarr.io.serve import serve_directory
from ctspine_zarr.testing.synthetic import make_raw_tree


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("remote-raw")
    return root, make_raw_tree(root, n_cases=3, shape=(32, 32), n_slices=(12, 40), seed=21)


@pytest.fixture(params=["local", "memory", "s3"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path):
    """``(url, storage options, request log or None)`` of an empty store of each kind."""
    if request.param == "local":
        yield str(tmp_path / "s.zarr"), None, None
    elif request.param == "memory":
        url = f"memory://ctspine-{uuid.uuid4().hex}/s.zarr"
        yield url, None, None
        fsspec.filesystem("memory").rm(url.removeprefix("memory://").split("/")[0], recursive=True)
    else:
        bucket, options, log = request.getfixturevalue("s3")
        yield f"{bucket}/s.zarr", options, log


def _expected(path: Path) -> np.ndarray:
    return np.asanyarray(nib.as_closest_canonical(nib.load(path)).dataobj).transpose(2, 1, 0)


def _ingested_on_s3(s3, small_tree, **kwargs: Any) -> tuple[str, dict, Any, list]:
    """Ingest ``small_tree`` into the ``s3`` bucket: ``(url, options, request log, cases)``."""
    bucket, options, log = s3
    url = f"{bucket}/s.zarr"
    raw, cases = small_tree
    report = ctspine_zarr.ingest(
        raw, url, workers=1, storage_options=options, progress=False, **kwargs
    )
    assert report.ok, report.summary()
    return url, options, log, cases


def test_ingest_and_read_back(store_url, small_tree) -> None:
    url, options, _ = store_url
    raw, cases = small_tree
    report = ctspine_zarr.ingest(
        raw, url, workers=2, scheduler="threads", storage_options=options, progress=False
    )
    assert report.ok, report.summary()
    ds = ctspine_zarr.open(url, storage_options=options)
    assert sorted(ds.ctspine.case_ids()) == sorted(c.case_id for c in cases)
    for case in cases:
        vol = ds.ctspine.volume(case.case_id)
        np.testing.assert_array_equal(vol.image.values, _expected(case.image_path))
        np.testing.assert_array_equal(vol.label.values, _expected(case.label_path))
    # a rerun skips everything; the report lies beside the store
    again = ctspine_zarr.ingest(raw, url, workers=1, storage_options=options, progress=False)
    assert again.count("skipped") == len(cases)
    with fsspec.open(url + ".ingest-report.json", "r", **(options or {})) as fh:
        assert '"skipped"' in fh.read()


def test_xr_open_zarr_with_storage_options_reaches_the_cases(s3, small_tree) -> None:
    url, options, _, cases = _ingested_on_s3(s3, small_tree)
    ds = xr.open_zarr(url, storage_options=options)
    case = cases[0]
    np.testing.assert_array_equal(ds.ctspine.label(case.case_id).values, _expected(case.label_path))


def test_request_counts_on_s3(s3, small_tree) -> None:
    url, options, log, cases = _ingested_on_s3(s3, small_tree)
    log.requests.clear()
    ds = ctspine_zarr.open(url, storage_options=options)
    gets = [r for r in log.requests if r[0] == "GET"]
    assert len(gets) <= 2, gets
    case = cases[0].case_id
    log.requests.clear()
    vol = ds.ctspine.volume(case)
    # no data request: the case's metadata document only (zarr checks it exists first)
    key = f"/{url.removeprefix('s3://')}/cases/{case}/zarr.json"
    assert {p for _, p, _ in log.requests} == {key}
    assert [m for m, _, _ in log.requests].count("GET") == 1
    log.requests.clear()
    vol[["image", "label"]].isel(z=vol.sizes["z"] // 2).load()
    per_array: dict[str, int] = {}
    for _, path, _ in log.requests:
        per_array[path.split("/")[-5]] = per_array.get(path.split("/")[-5], 0) + 1
    assert per_array and all(n <= 2 for n in per_array.values()), log.requests
    assert set(per_array) == {"image", "label"}


def test_http_store_reads_through_range_requests(store: Path, raw_tree) -> None:
    with serve_directory(store.parent) as server:
        url = f"{server.url}/{store.name}"
        ds = ctspine_zarr.open(url)
        case = raw_tree[1][0]
        z = 3
        got = ds.ctspine.slice(case.case_id, z).compute()
        np.testing.assert_array_equal(got.image.values, _expected(case.image_path)[z])
        ranged = [r for r in server.requests if r[2] is not None]
        assert ranged, "slice reads must be range requests"
        plain = xr.open_zarr(url)
        np.testing.assert_array_equal(
            plain.ctspine.label(case.case_id).values, _expected(case.label_path)
        )


def _read_slices(url: str, options: dict | None, case: str) -> list[int]:
    ds = ctspine_zarr.open(url, storage_options=options)
    vol = ds.ctspine.volume(case)
    return [int(vol.image.isel(z=z).values.sum()) for z in range(3)]


@pytest.mark.parametrize("kind", ["s3", "http"])
def test_forked_workers_read_after_the_parent_did(kind, s3, small_tree, tmp_path) -> None:
    raw, cases = small_tree
    case = cases[0].case_id
    local = tmp_path / "s.zarr"
    assert ctspine_zarr.ingest(raw, local, workers=1, progress=False).ok
    expected = _read_slices(str(local), None, case)
    context = multiprocessing.get_context("fork")
    if kind == "s3":
        url, options, _, _ = _ingested_on_s3(s3, small_tree)
        assert _read_slices(url, options, case) == expected  # the parent uses the store first
        with context.Pool(2) as pool:
            results = pool.starmap(_read_slices, [(url, options, case)] * 4, chunksize=1)
    else:
        with serve_directory(tmp_path) as server:
            url = f"{server.url}/s.zarr"
            assert _read_slices(url, None, case) == expected
            with context.Pool(2) as pool:
                results = pool.starmap(_read_slices, [(url, None, case)] * 4, chunksize=1)
    assert results == [expected] * 4


def test_ingest_on_a_distributed_cluster_bucket_to_bucket(s3, small_tree) -> None:
    distributed = pytest.importorskip("distributed")
    bucket, options, _ = s3
    raw, cases = small_tree
    fs = fsspec.filesystem("s3", **options)
    fs.put(str(raw) + "/", f"{bucket}/raw/", recursive=True)
    raw_url = f"{bucket}/raw"
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        report = ctspine_zarr.ingest(
            raw_url,
            f"{bucket}/s.zarr",
            scheduler=client,
            storage_options=options,
            raw_storage_options=options,
            progress=False,
        )
    assert report.ok, report.summary()
    ds = ctspine_zarr.open(f"{bucket}/s.zarr", storage_options=options)
    assert sorted(ds.ctspine.case_ids()) == sorted(c.case_id for c in cases)
    for case in cases:
        np.testing.assert_array_equal(
            ds.ctspine.image(case.case_id).values, _expected(case.image_path)
        )


def test_a_whole_volume_is_read_with_concurrent_requests(s3, small_tree) -> None:
    url, options, log, cases = _ingested_on_s3(s3, small_tree, slices_per_shard=4)
    case = max(cases, key=lambda c: nib.load(c.image_path).shape[2])
    vol = ctspine_zarr.open(url, storage_options=options).ctspine.volume(case.case_id)
    log.delay, log.max_in_flight = 0.05, 0
    try:
        values = vol.image.values
    finally:
        log.delay = 0.0
    np.testing.assert_array_equal(values, _expected(case.image_path))
    assert vol.sizes["z"] > 8 and log.max_in_flight >= 2, log.max_in_flight


def test_an_interrupted_ingest_into_a_bucket_resumes(s3, tmp_path) -> None:
    import json
    import signal
    import subprocess
    import time

    bucket, options, _ = s3
    url = f"{bucket}/s.zarr"
    raw = tmp_path / "raw"
    cases = make_raw_tree(raw, n_cases=5, shape=(64, 64), n_slices=(30, 40), seed=4)
    fs = fsspec.filesystem("s3", **options)

    def complete() -> set[str]:
        fs.invalidate_cache()
        done = set()
        for key in fs.glob(f"{url}/cases/*/zarr.json"):
            if json.loads(fs.cat_file(key)).get("attributes", {}).get("complete") is True:
                done.add(key.split("/")[-2])
        return done

    command = ingest_command(raw, url, "--storage-options", json.dumps(options))
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and child.poll() is None and not complete():
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL, "the ingest finished before it was killed"
    before = complete()
    assert 1 <= len(before) < len(cases)
    report = ctspine_zarr.ingest(raw, url, workers=1, storage_options=options, progress=False)
    assert report.ok
    assert {o.case_id for o in report.outcomes if o.status == "skipped"} == before
    ds = ctspine_zarr.open(url, storage_options=options)
    for case in cases:
        np.testing.assert_array_equal(
            ds.ctspine.label(case.case_id).values, _expected(case.label_path)
        )
