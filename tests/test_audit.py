"""The label audit (issue #19): the checks, what they read, exactly the injected defects found
in every orientation, the record beside the catalogue and what an ingest does to it."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import xarray as xr
import zarr.storage
from conftest import CountingStore

import ctspine_zarr
from ctspine_zarr.audit import (
    CHECKS,
    COLUMNS,
    ERROR,
    WARNING,
    audit_store,
    flagged_cases,
    read_findings,
)
from ctspine_zarr.audit.checks import (
    Pieces,
    check_fragments,
    check_gap,
    check_order,
    check_overlap,
)
from ctspine_zarr.audit.size import check_size
from ctspine_zarr.audit.voxels import label_pieces
from ctspine_zarr.errors import CaseNotFoundError, StoreError
from ctspine_zarr.io.auditrecord import RECORD_KEY, read_record
from ctspine_zarr.io.store import forget
from ctspine_zarr.testing.synthetic import VARIANTS, SyntheticCase
from ctspine_zarr.vertebrae import VERTEBRA_LABELS
from ctspine_zarr.write.verify import verify


def _expected(cases: list[SyntheticCase]) -> set[tuple[str, str, tuple[int, ...]]]:
    return {(c.case_id, d.kind, d.labels) for c in cases for d in c.defects}


def _found(findings) -> set[tuple[str, str, tuple[int, ...]]]:  # type: ignore[no-untyped-def]
    return {(f.case, f.check, tuple(f.labels)) for f in findings}


# --------------------------------------------------------------------------------------------
# The checks, on made-up inputs
# --------------------------------------------------------------------------------------------


def test_gap_handles_t13_and_l6_as_the_dataset_defines_them() -> None:
    assert check_gap("c", [19, 20, 21]) == []
    assert check_gap("c", [19, 28, 20]) == []  # T13 labelled between T12 and L1
    assert check_gap("c", [23, 24, 26]) == []  # no L6: no gap
    assert check_gap("c", [23, 24, 25, 26]) == []  # L6 labelled below L5
    (gap,) = check_gap("c", [21, 23])
    assert (gap.check, gap.labels, gap.severity) == ("gap", (22,), ERROR)
    assert "L3 (22) is missing between L2 (21) and L4 (23)" in gap.detail
    (gap,) = check_gap("c", [18, 28, 21])  # T13 present; T12 and L1 missing around it
    assert gap.labels == (19, 20)
    (gap,) = check_gap("c", [23, 25, 26])  # L6 labelled, L5 missing above it
    assert gap.labels == (24,)
    (gap,) = check_gap("c", [7, 9])  # across the regions: T1 between C7 and T2
    assert gap.labels == (8,)
    assert [f.labels for f in check_gap("c", [1, 3, 5])] == [(2,), (4,)]


def test_order_compares_world_centres_with_a_tolerance_for_tilt() -> None:
    extents = {21: 30.0, 22: 30.0, 28: 20.0, 20: 30.0}
    assert check_order("c", {21: 100.0, 22: 70.0}, extents) == []
    # a tilted spine: L3's centre a little above L2's, within a quarter of 30 mm
    assert check_order("c", {21: 100.0, 22: 107.0}, extents) == []
    (found,) = check_order("c", {21: 70.0, 22: 100.0}, extents)
    assert (found.labels, found.severity) == ((21, 22), ERROR)
    assert "L2 (21) lies below L3 (22)" in found.detail and "30.0 mm lower" in found.detail
    # T13 sits between T12 and L1: T13 above L1 is in order, below it is not
    assert check_order("c", {28: 120.0, 20: 100.0}, extents) == []
    assert [f.labels for f in check_order("c", {28: 90.0, 20: 100.0}, extents)] == [(28, 20)]


def test_overlap_nested_slices_and_crowded_slices() -> None:
    assert check_overlap("c", {20: (30, 50), 21: (10, 31)}, None) == []
    (nested,) = check_overlap("c", {20: (10, 50), 21: (20, 30)}, None)
    assert (nested.labels, nested.severity) == ((20, 21), ERROR)
    assert "L2 (21) lies within the slices of L1 (20): slices 20-29 inside 10-49" in nested.detail
    assert check_overlap("c", {1: (20, 30), 2: (5, 35)}, None) == []  # C1 rings the dens of C2
    index = np.zeros((8, len(VERTEBRA_LABELS)), dtype=bool)
    column = {v: i for i, v in enumerate(VERTEBRA_LABELS)}
    index[0:5, column[19]] = True
    index[2:8, column[20]] = True
    index[3:5, column[28]] = True  # slices 3 and 4 hold T12, T13 and L1
    (crowded,) = check_overlap("c", {}, index)
    assert (crowded.labels, crowded.severity) == ((19, 28, 20), WARNING)
    assert crowded.detail.startswith("slices 3-4 each hold three or more vertebrae")


def test_fragments_report_pieces_over_the_threshold_with_their_distance() -> None:
    label = np.zeros((10, 40, 40), dtype=np.uint8)
    label[2:8, 5:15, 5:15] = 22  # the vertebra: 600 voxels
    label[3:5, 30:35, 30:35] = 22  # an island of 50 voxels
    label[2, 2, 30] = 22  # a stray voxel
    label[8, 15, 15] = 22  # touches the vertebra by a corner: the same piece
    boxes = {22: (2, 2, 5, 9, 35, 35)}
    pieces = label_pieces(label[1:10], (1, 0, 0), boxes, (2.0, 1.0, 1.0), min_voxels=20)
    found = pieces[22]
    assert found.sizes == (601, 50, 1)
    main = label == 22
    main[3:5, 30:35, 30:35] = main[2, 2, 30] = False
    assert found.centroid == pytest.approx(tuple(np.argwhere(main).mean(axis=0)))
    # the shortest distance from the island to the vertebra, in mm (slices 2 mm apart)
    island = np.argwhere(label[3:5, 30:35, 30:35] == 22) + (3, 30, 30)
    apart = (island[:, None, :] - np.argwhere(main)[None, :, :]) * (2.0, 1.0, 1.0)
    assert found.gaps_mm == pytest.approx((float(np.sqrt((apart**2).sum(axis=2)).min()),))
    (finding,) = check_fragments("c", pieces, 20)
    assert (finding.labels, finding.severity) == ((22,), WARNING)
    assert "2 disconnected pieces of 601 and 50 voxels" in finding.detail
    assert "(and 1 piece(s) of at most 20 voxels)" in finding.detail
    assert check_fragments("c", pieces, 50) == []  # "more than" the threshold
    two = {20: Pieces((1000, 400), (0.0, 0.0, 0.0), (12.0,))}
    assert check_fragments("c", two, 100)[0].severity == ERROR  # two vertebrae, one number


def _catalogue(volumes: list[float], cut: int | None = None) -> xr.Dataset:
    """A catalogue of one label (L3) with these volumes in ml, 1 mm voxels."""
    n = len(volumes)
    counts = np.zeros((n, len(VERTEBRA_LABELS)), dtype=np.int64)
    counts[:, VERTEBRA_LABELS.index(22)] = np.round(np.asarray(volumes) * 1000)
    start = np.full((n, len(VERTEBRA_LABELS), 3), 1, dtype=np.int32)
    stop = np.full((n, len(VERTEBRA_LABELS), 3), 9, dtype=np.int32)
    if cut is not None:
        start[cut, :, 0] = 0  # touches the first slice: cut off by the volume
    ones, tens = np.ones(n), np.full(n, 10)
    return xr.Dataset(
        {
            "voxel_count": (("case", "vertebra"), counts),
            "bbox_start": (("case", "vertebra", "axis"), start),
            "bbox_stop": (("case", "vertebra", "axis"), stop),
            **{f"spacing_{a}": ("case", ones) for a in "zyx"},
            **{name: ("case", tens) for name in ("n_slices", "n_y", "n_x")},
        },
        coords={"case": [f"c{i}" for i in range(n)], "vertebra": list(VERTEBRA_LABELS)},
    )


def test_size_uses_a_robust_z_over_the_whole_vertebrae_of_the_store() -> None:
    volumes = [30.0, 28.0, 33.0, 31.0, 29.0, 35.0, 26.0, 30.0, 32.0, 3.0]
    ds = _catalogue(volumes)
    ids = [str(c) for c in ds.case.values]
    (found,) = check_size(ds, ids)
    assert (found.case, found.labels, found.severity) == ("c9", (22,), WARNING)
    assert "L3 (22) holds 3 ml, 0.1 times the median of 30 ml" in found.detail
    assert check_size(ds, ids[:9]) == []  # only the cases asked about are reported
    assert check_size(_catalogue(volumes, cut=9), ids) == []  # a cut vertebra says nothing
    assert check_size(_catalogue(volumes[3:]), ids) == []  # fewer than 8 whole: not checked
    # a tight distribution does not flag an ordinary difference (the MAD floor: 10 %)
    tight = _catalogue([30.0] * 9 + [40.0])
    assert check_size(tight, [str(c) for c in tight.case.values]) == []


# --------------------------------------------------------------------------------------------
# Synthetic trees: exactly the injected defects, in every orientation
# --------------------------------------------------------------------------------------------


def test_a_clean_tree_has_no_finding(store: Path) -> None:
    result = audit_store(store, workers=2)
    assert result.findings == [] and result.checks == CHECKS
    assert len(result.cases) == ctspine_zarr.open(store).sizes["case"]
    # every vertebra of the synthetic spine is one piece: no fragment at any threshold
    assert audit_store(store, checks="fragments", min_fragment_voxels=0).findings == []


def test_the_audit_finds_exactly_the_injected_defects(defect_tree) -> None:  # type: ignore[no-untyped-def]
    _, path, cases = defect_tree
    result = audit_store(path, workers=2)
    assert {d.kind for c in cases for d in c.defects} == set(CHECKS)
    assert _found(result.findings) == _expected(cases)
    assert result.counts()["order"] == 5
    severity = {(f.case, f.check): f.severity for f in result.findings}
    for case in cases:
        for defect in case.defects:
            assert severity[case.case_id, defect.kind] == (
                WARNING if defect.kind == "size" else severity[case.case_id, defect.kind]
            )
            if defect.kind in ("order", "gap", "overlap"):
                assert severity[case.case_id, defect.kind] == ERROR


def test_order_never_fires_on_a_correctly_labelled_source_of_any_orientation(defect_tree) -> None:  # type: ignore[no-untyped-def]
    _, path, cases = defect_tree
    clean = [c for c in cases if not c.defects]
    assert {c.variant for c in clean} == set(VARIANTS)  # LPS, descending z, sagittal, ...
    result = audit_store(path, checks="order", cases=[c.case_id for c in clean])
    assert result.findings == []
    swapped = [c for c in cases if any(d.kind == "order" for d in c.defects)]
    assert {"lps-uint16-inter", "descending-z", "sagittal"} <= {c.variant for c in swapped}
    found = audit_store(path, checks="order", cases=[c.case_id for c in swapped])
    assert _found(found.findings) == _expected(swapped)


def test_checks_read_only_what_they_need(defect_tree) -> None:  # type: ignore[no-untyped-def]
    _, path, _ = defect_tree
    counting = CountingStore(zarr.storage.LocalStore(path, read_only=True))
    try:
        audit_store(counting, checks=("gap", "size", "overlap"), scheduler="sync")
        keys = [key for key, *_ in counting.reads]
        assert not [k for k in keys if "/image/" in k or "/label/" in k]
        assert any("/slice_vertebrae/c/" in k for k in keys)  # the per-slice index
        catalogue = [k for k in keys if not k.startswith("cases/")]
        assert len(catalogue) == len(set(catalogue))  # each catalogue column read once
        counting.reads.clear()
        audit_store(counting, checks=("order", "fragments"), scheduler="sync")
        keys = [key for key, *_ in counting.reads]
        assert any("/label/" in k for k in keys)
        assert not [k for k in keys if "/image/" in k or "slice_vertebrae/c" in k]
    finally:
        forget(counting)


def test_selection_and_bad_arguments(defect_tree) -> None:  # type: ignore[no-untyped-def]
    _, path, cases = defect_tree
    train = audit_store(path, split="train", checks="gap")
    splits = dict(zip(*(ctspine_zarr.open(path)[k].values for k in ("case", "split")), strict=True))
    assert set(train.cases) == {c for c, s in splits.items() if s == "train"}
    with pytest.raises(ValueError, match="check must be one of order, gap"):
        audit_store(path, checks="shape")
    with pytest.raises(ValueError, match="unknown split .*; the splits are train"):
        audit_store(path, split="training")
    with pytest.raises(CaseNotFoundError):
        audit_store(path, cases=["no-such-case"])


def test_a_local_cluster_finds_the_same(defect_tree) -> None:  # type: ignore[no-untyped-def]
    _, path, cases = defect_tree
    result = audit_store(path, scheduler="distributed", workers=2)
    assert _found(result.findings) == _expected(cases)


# --------------------------------------------------------------------------------------------
# The record beside the catalogue
# --------------------------------------------------------------------------------------------


@pytest.fixture
def copy(defect_tree, tmp_path: Path) -> tuple[Path, Path, list[SyntheticCase]]:  # type: ignore[no-untyped-def]
    """A writable copy of the defect tree and its store."""
    raw, path, cases = defect_tree
    shutil.copytree(raw, tmp_path / "raw")  # keeps the files' mtimes: nothing changed
    shutil.copytree(path, tmp_path / "s.zarr")
    moved = [
        dataclasses.replace(
            c,
            image_path=tmp_path / "raw" / c.image_path.relative_to(raw),
            label_path=tmp_path / "raw" / c.label_path.relative_to(raw),
        )
        for c in cases
    ]
    return tmp_path / "raw", tmp_path / "s.zarr", moved


def test_the_record_persists_and_flags_cases(copy) -> None:  # type: ignore[no-untyped-def]
    _, path, cases = copy
    ds = ctspine_zarr.open(path)
    with pytest.raises(StoreError, match="no audit recorded"):
        ds.ctspine.case_ids(exclude_flagged=True)
    frame = ds.ctspine.audit(record=True)
    assert list(frame.columns) == list(COLUMNS)
    assert frame.attrs["audit"]["version"] == 1 and frame.attrs["audit"]["time"]
    flagged = {c.case_id for c in cases if c.defects}
    assert set(frame["case"]) == flagged
    assert flagged_cases(path) == flagged == flagged_cases(ds)
    ids = ds.ctspine.case_ids()
    assert ds.ctspine.case_ids(exclude_flagged=True) == [c for c in ids if c not in flagged]
    gap_case = next(c.case_id for c in cases for d in c.defects if d.kind == "gap")
    assert flagged_cases(ds, ["gap"]) == {gap_case}
    assert gap_case not in ds.ctspine.case_ids(exclude_flagged="gap")
    assert len(ds.ctspine.case_ids(exclude_flagged=["gap"])) == len(ids) - 1
    # the loaders leave out the same cases (the one selection, then the record)
    from ctspine_zarr.sampling import PatchSequence, SliceSequence, VolumeSequence

    kept = [c for c in ids if c not in flagged]
    assert list(VolumeSequence(path, exclude_flagged=True).case_ids) == kept
    assert list(SliceSequence(path, exclude_flagged=True).case_ids) == kept
    patches = PatchSequence(path, patch_size=(8, 16, 16), exclude_flagged="gap")
    assert gap_case not in patches.case_ids and len(patches.case_ids) == len(ids) - 1
    assert list(VolumeSequence(path).case_ids) == ids  # without it: every case
    back = read_findings(path)
    assert back.equals(frame) and back.attrs["audit"]["version"] == 1
    record = read_record(path)
    assert record is not None and set(record["cases"]) == set(ids)
    # the catalogue still opens in two reads, and verify passes
    counting = CountingStore(zarr.storage.LocalStore(path, read_only=True))
    try:
        ctspine_zarr.open(counting)
        assert len(counting.reads) == 2 and RECORD_KEY not in [k for k, *_ in counting.reads]
    finally:
        forget(counting)
    report = verify(path)
    assert report.ok, report.summary()
    assert not (path / ".ctspine").exists()  # the writer's folder is gone after the write


def test_an_audit_of_some_cases_or_checks_merges_into_the_record(copy) -> None:  # type: ignore[no-untyped-def]
    _, path, cases = copy
    audit_store(path, record=True)
    everything = read_findings(path)
    order_cases = [c.case_id for c in cases if c.defects and c.defects[0].kind == "order"]
    audit_store(path, cases=order_cases[:1], checks="gap", record=True)  # changes nothing
    assert read_findings(path).equals(everything)
    audit_store(path, cases=order_cases[:1], checks="order", min_fragment_voxels=5, record=True)
    assert read_findings(path).equals(everything)


def test_an_ingest_of_changed_sources_drops_the_stale_findings(copy) -> None:  # type: ignore[no-untyped-def]
    raw, path, cases = copy
    audit_store(path, record=True)
    changed = next(c for c in cases if c.defects and c.defects[0].kind == "gap")
    kept = {c.case_id for c in cases if c.defects} - {changed.case_id}
    # an unchanged rerun keeps every finding
    assert ctspine_zarr.ingest(raw, path, progress=False).ok
    assert flagged_cases(path) == kept | {changed.case_id}
    # a new label file (same voxels, another header text: other bytes, another SHA-256)
    image = nib.load(changed.label_path)
    image.header["descrip"] = b"relabelled"
    relabelled = nib.Nifti1Image(np.asanyarray(image.dataobj), image.affine, image.header)
    nib.save(relabelled, changed.label_path)
    report = ctspine_zarr.ingest(raw, path, progress=False)
    assert [o.case_id for o in report.outcomes if o.status == "ingested"] == [changed.case_id]
    assert flagged_cases(path) == kept
    record = read_record(path)
    assert record is not None and changed.case_id not in record["cases"]
    # audited again, it is flagged again (the voxels did not change)
    audit_store(path, cases=[changed.case_id], record=True)
    assert flagged_cases(path) == kept | {changed.case_id}


def test_an_overwrite_that_drops_a_case_drops_its_findings(copy) -> None:  # type: ignore[no-untyped-def]
    raw, path, cases = copy
    audit_store(path, record=True)
    gone = next(c for c in cases if c.defects and c.defects[0].kind == "overlap")
    gone.image_path.unlink()
    gone.label_path.unlink()
    report = ctspine_zarr.ingest(raw, path, overwrite=True, progress=False)
    assert report.removed == [gone.case_id]
    assert gone.case_id not in flagged_cases(path)
    record = read_record(path)
    assert record is not None and gone.case_id not in record["cases"]
