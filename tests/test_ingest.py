"""Ingest of generated trees: exact voxels, geometry, chunks, splits, label index, resume."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import zarr

import ctspine_zarr
from ctspine_zarr.errors import StoreError
from ctspine_zarr.testing.synthetic import SyntheticCase, make_raw_tree
from ctspine_zarr.vertebrae import VERTEBRA_LABELS

SECTION_TO_SPLIT = {
    "trainset": "train",
    "test_public": "validation",
    "test_private": "test",
    "": "unassigned",
}


def _canonical(path: Path) -> tuple[np.ndarray, np.ndarray]:
    img = nib.as_closest_canonical(nib.load(path))
    return np.asanyarray(img.dataobj).transpose(2, 1, 0), img.affine


def test_every_voxel_equals_the_canonical_source(store: Path, raw_tree) -> None:
    ds = ctspine_zarr.open(store)
    for case in raw_tree[1]:
        vol = ds.ctspine.volume(case.case_id)
        image, _ = _canonical(case.image_path)
        label, _ = _canonical(case.label_path)
        assert vol.image.dtype == np.int16, case.variant
        assert vol.label.dtype == np.uint8, case.variant
        np.testing.assert_array_equal(vol.image.values, image, err_msg=case.variant)
        np.testing.assert_array_equal(vol.label.values, label, err_msg=case.variant)


def test_affine_maps_each_voxel_to_the_source_point(store: Path, raw_tree) -> None:
    ds = ctspine_zarr.open(store)
    rng = np.random.default_rng(0)
    for case in raw_tree[1]:
        src = nib.load(case.image_path)
        src_data = np.asanyarray(src.dataobj)
        vol = ds.ctspine.volume(case.case_id)
        affine = vol.attrs["affine"]
        _, canonical_affine = _canonical(case.image_path)
        np.testing.assert_allclose(affine, canonical_affine, atol=1e-6)
        stored = vol.image.values
        for ijk in rng.integers(0, src.shape, size=(25, 3)):
            world = src.affine @ np.r_[ijk, 1.0]
            x, y, z = np.rint(np.linalg.solve(affine, world)[:3]).astype(int)
            np.testing.assert_allclose(affine @ np.r_[x, y, z, 1.0], world, atol=1e-4)
            assert stored[z, y, x] == src_data[tuple(ijk)], case.variant
            # the coordinates are the world position along each (axis-aligned) axis
            np.testing.assert_allclose(
                [vol.x.values[x], vol.y.values[y], vol.z.values[z]], world[:3], atol=1e-4
            )


def test_chunks_are_one_axial_slice(store: Path, raw_tree) -> None:
    for case in raw_tree[1]:
        # each case group carries its own consolidated metadata
        group = zarr.open_group(store, path=f"cases/{case.case_id}", mode="r")
        assert group.metadata.consolidated_metadata is not None
        for name in ("image", "label"):
            array = group[name]
            n_z, n_y, n_x = array.shape
            assert array.chunks == (1, n_y, n_x)
            assert array.metadata.dimension_names == ("z", "y", "x")
            assert array.shards is not None and array.shards[1:] == (n_y, n_x)
            codecs = json.dumps(array.metadata.to_dict()["codecs"])
            assert "crc32c" in codecs


def test_catalogue_matches_the_split_file(store: Path, raw_tree) -> None:
    ds = ctspine_zarr.open(store)
    cases = raw_tree[1]
    assert sorted(ds.case.values.astype(object)) == sorted(c.case_id for c in cases)
    for case in cases:
        row = ds.sel(case=case.case_id)
        assert str(row.split.values) == SECTION_TO_SPLIT[case.split]
        assert str(row.source.values) == case.source
    for split in ("train", "validation", "test", "unassigned"):
        expected = sorted(c.case_id for c in cases if SECTION_TO_SPLIT[c.split] == split)
        assert sorted(ds.ctspine.case_ids(split=split)) == expected


def test_catalogue_columns_describe_each_case(store: Path, raw_tree) -> None:
    ds = ctspine_zarr.open(store)
    for case in raw_tree[1]:
        label, affine = _canonical(case.label_path)
        row = ds.sel(case=case.case_id)
        assert (int(row.n_slices), int(row.n_y), int(row.n_x)) == label.shape
        spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))[::-1]
        np.testing.assert_allclose(
            [float(row.spacing_z), float(row.spacing_y), float(row.spacing_x)], spacing, rtol=1e-6
        )
        present = sorted(set(np.unique(label).tolist()) - {0})
        held = row.vertebra.values[row.has_vertebra.values].tolist()
        assert held == present
        counts = np.bincount(label.ravel().astype(np.int64), minlength=29)[list(VERTEBRA_LABELS)]
        np.testing.assert_array_equal(row.voxel_count.values, counts)
    assert ds.attrs["vertebra_names"]["22"] == "L3"
    assert ds.attrs["ctspine_zarr_format"] == 4


def test_slice_index_and_boxes_match_the_masks(store: Path, raw_tree) -> None:
    ds = ctspine_zarr.open(store)
    for case in raw_tree[1]:
        label, _ = _canonical(case.label_path)
        vol = ds.ctspine.volume(case.case_id)
        index = vol.slice_vertebrae.values
        row = ds.sel(case=case.case_id)
        for j, value in enumerate(VERTEBRA_LABELS):
            mask = label == value
            np.testing.assert_array_equal(index[:, j], mask.any(axis=(1, 2)))
            start, stop = row.bbox_start.values[j], row.bbox_stop.values[j]
            np.testing.assert_array_equal(vol.bbox_start.values[j], start)
            if not mask.any():
                assert (start == -1).all() and (stop == -1).all()
                continue
            where = np.nonzero(mask)
            np.testing.assert_array_equal(start, [w.min() for w in where])
            np.testing.assert_array_equal(stop, [w.max() + 1 for w in where])


def test_rerun_skips_unchanged_and_redoes_changed_cases(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    cases = make_raw_tree(raw, n_cases=3, shape=(24, 24), n_slices=(12, 16), seed=3)
    store = tmp_path / "s.zarr"
    first = ctspine_zarr.ingest(raw, store, workers=1, progress=False)
    assert first.count("ingested") == 3
    second = ctspine_zarr.ingest(raw, store, workers=1, progress=False)
    assert second.count("skipped") == 3 and second.count("ingested") == 0
    changed: SyntheticCase = cases[1]
    img = nib.load(changed.label_path)
    data = np.asanyarray(img.dataobj).astype(np.uint8)
    data[data == data.max()] = 0
    nib.save(nib.Nifti1Image(data, img.affine, img.header), changed.label_path)
    third = ctspine_zarr.ingest(raw, store, workers=1, progress=False)
    assert [o.case_id for o in third.outcomes if o.status == "ingested"] == [changed.case_id]
    vol = ctspine_zarr.open(store).ctspine.label(changed.case_id)
    np.testing.assert_array_equal(vol.values, _canonical(changed.label_path)[0])
    report = json.loads(Path(f"{store}.ingest-report.json").read_text())
    assert {o["status"] for o in report["outcomes"]} == {"ingested", "skipped"}


def test_processes_scheduler_gives_the_same_store(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    make_raw_tree(raw, n_cases=2, shape=(24, 24), n_slices=(10, 12), seed=5)
    a = ctspine_zarr.ingest(
        raw, tmp_path / "p.zarr", workers=2, scheduler="processes", progress=False
    )
    b = ctspine_zarr.ingest(raw, tmp_path / "t.zarr", workers=1, progress=False)
    assert a.ok and b.ok
    pa, pb = ctspine_zarr.open(tmp_path / "p.zarr"), ctspine_zarr.open(tmp_path / "t.zarr")
    for case in pa.ctspine.case_ids():
        np.testing.assert_array_equal(pa.ctspine.image(case).values, pb.ctspine.image(case).values)


def test_bad_pair_is_refused_and_others_land(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    cases = make_raw_tree(raw, n_cases=3, shape=(24, 24), n_slices=(10, 12), seed=9)
    bad = cases[0]
    bad.label_path.write_bytes(bad.label_path.read_bytes()[:200])  # truncated gzip
    report = ctspine_zarr.ingest(raw, tmp_path / "s.zarr", workers=1, progress=False)
    assert not report.ok
    (refused,) = report.problems
    assert refused.case_id == bad.case_id and refused.status == "refused"
    assert str(bad.label_path) in refused.problem
    ds = ctspine_zarr.open(tmp_path / "s.zarr")
    assert sorted(ds.ctspine.case_ids()) == sorted(c.case_id for c in cases[1:])


def test_refuses_to_clobber_a_foreign_store(tmp_path: Path, raw_tree) -> None:
    foreign = tmp_path / "other.zarr"
    zarr.create_array(foreign, shape=(3,), dtype="int8")
    with pytest.raises(StoreError, match="not a ctspine store"):
        ctspine_zarr.ingest(raw_tree[0], foreign, workers=1, progress=False)
    afile = tmp_path / "file.zarr"
    afile.write_text("keep me")
    with pytest.raises(StoreError, match="a file"):
        ctspine_zarr.ingest(raw_tree[0], afile, workers=1, progress=False)
    assert afile.read_text() == "keep me"


def test_overwrite_refuses_a_foreign_store_that_force_clear_replaces(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    make_raw_tree(raw, n_cases=1, shape=(16, 16), n_slices=(8, 9), seed=2)
    foreign = tmp_path / "other.zarr"
    zarr.create_array(foreign, shape=(3,), dtype="int8")
    before = (foreign / "zarr.json").read_bytes()
    # the library names its keywords (the command line its flags: test_cli_errors)
    with pytest.raises(StoreError, match="overwrite=True replaces only a ctspine store.*force_"):
        ctspine_zarr.ingest(raw, foreign, workers=1, overwrite=True, progress=False)
    assert (foreign / "zarr.json").read_bytes() == before
    said: list[str] = []
    report = ctspine_zarr.ingest(
        raw, foreign, workers=1, force_clear=True, progress=False, announce=said.append
    )
    assert report.ok and report.catalogue_cases == 1
    assert report.cleared == ["zarr.json"] and "zarr.json" in said[0]
    shutil.rmtree(foreign)


def test_the_largest_cases_start_first(raw_tree, tmp_path: Path) -> None:
    """Largest first, so that the workers run out of cases at about the same time."""
    from dask.callbacks import Callback

    started: list[str] = []

    class _Starts(Callback):
        def _pretask(self, key, dsk, state) -> None:  # type: ignore[no-untyped-def]
            if isinstance(key, str) and key.startswith("ingest-"):
                started.append(key.split("-", 2)[2])

    with _Starts():
        report = ctspine_zarr.ingest(raw_tree[0], tmp_path / "s.zarr", workers=2, progress=False)
    assert report.ok
    sizes = {
        p.name.removesuffix(".nii.gz"): p.stat().st_size
        for p in (raw_tree[0] / "rawdata" / "volumes").glob("*/*.nii.gz")
    }
    assert sorted(started) == sorted(sizes)
    assert started == sorted(sizes, key=lambda c: -sizes[c])


@pytest.mark.parametrize(("workers", "n_cases", "threads"), [(1, 3, 1), (2, 3, 2), (3, 2, 3)])
def test_workers_are_a_thread_budget(
    workers: int, n_cases: int, threads: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cases in parallel, their slices encoded on one shared pool of ``workers`` threads."""
    import importlib

    # the per-case writer calls write_array: patch it where that module looks it up
    case_module = importlib.import_module("ctspine_zarr.write.case")
    shardwriter = importlib.import_module("ctspine_zarr.io.shardwriter")

    raw = tmp_path / "raw"
    make_raw_tree(raw, n_cases=n_cases, shape=(24, 24), n_slices=(4, 6), seed=3)
    used: list[int] = []
    write_array = case_module.write_array
    case_of_thread = threading.local()

    def recording(array, data, *, threads: int = 1, **options):  # type: ignore[no-untyped-def]
        used.append(threads)
        case_of_thread.case = array.path.split("/")[1]
        return write_array(array, data, threads=threads, **options)

    def no_pool(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("one encoding thread needs no pool")

    monkeypatch.setattr(case_module, "write_array", recording)
    if threads == 1:
        monkeypatch.setattr(shardwriter, "ThreadPoolExecutor", no_pool)
    sizes: list[int] = []
    running = {"now": 0, "peak": 0}
    encoders: dict[str, set[str]] = {}
    lock = threading.Lock()
    encode_pool = shardwriter.encode_pool

    class WatchedPool:
        def __init__(self, pool):  # type: ignore[no-untyped-def]
            self.pool = pool

        def map(self, fn, items):  # type: ignore[no-untyped-def]
            case = case_of_thread.case

            def watched(item):  # type: ignore[no-untyped-def]
                with lock:
                    running["now"] += 1
                    running["peak"] = max(running["peak"], running["now"])
                    encoders.setdefault(case, set()).add(threading.current_thread().name)
                time.sleep(0.004)  # long enough for the cases' encodes to overlap
                try:
                    return fn(item)
                finally:
                    with lock:
                        running["now"] -= 1

            return self.pool.map(watched, items)

    def watched_pool(size: int):  # type: ignore[no-untyped-def]
        sizes.append(size)
        return WatchedPool(encode_pool(size))

    monkeypatch.setattr(shardwriter, "encode_pool", watched_pool)
    report = ctspine_zarr.ingest(raw, tmp_path / "s.zarr", workers=workers, progress=False)
    assert report.ok and report.catalogue_cases == n_cases
    assert used == [threads] * (3 * n_cases)  # image, label and its OME copy of every case
    # every case encodes on the one pool of that size: never more encoders than workers
    assert set(sizes) == ({threads} if threads > 1 else set())
    if threads > 1:
        assert 1 < running["peak"] <= threads
        first, *others = encoders.values()
        assert all(first & other for other in others)  # the cases share the pool's threads


@pytest.mark.parametrize(
    ("scheduler", "workers", "n_cases", "threads"),
    [
        ("threads", 4, 10, 4),  # one pool shared by the cases in flight
        ("sync", 3, 10, 3),  # one case at a time, on every thread
        ("processes", 1, 10, 1),  # workers=1 runs sync: one core
        ("processes", 4, 10, 1),  # four processes, a case each: one thread each
        ("processes", 4, 2, 2),  # two cases in two processes share out the four threads
        ("processes", 4, 0, 4),
        ("tcp://127.0.0.1:8786", 4, 10, 1),  # a cluster's workers keep to their own threads
    ],
)
def test_encoding_threads_per_scheduler(
    scheduler: str, workers: int, n_cases: int, threads: int
) -> None:
    import importlib

    ingest_module = importlib.import_module("ctspine_zarr.write.ingest")
    assert ingest_module._encode_threads(scheduler, workers, n_cases) == threads
