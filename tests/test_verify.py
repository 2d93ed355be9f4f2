"""verify(): checksums, missing shards and chunks, metadata, catalogue, raw sources."""

from __future__ import annotations

import gzip
import json
import shutil
import warnings
from pathlib import Path

import google_crc32c
import nibabel as nib
import numpy as np
import pytest
import zarr
from nibabel.orientations import apply_orientation, io_orientation

from ctspine_zarr.io.catalogue import consolidate
from ctspine_zarr.schema import (
    CASES_GROUP,
    COMPLETE_KEY,
    IMAGE,
    LABEL,
    LABEL_HEADER,
    SLICE_VERTEBRAE,
)
from ctspine_zarr.testing.synthetic import SyntheticCase
from ctspine_zarr.write.verify import verify
from ctspine_zarr.write.verifyreport import ERROR, WARNING, Problem, VerifyReport

MISSING = 2**64 - 1


@pytest.fixture
def damaged(store: Path, tmp_path: Path) -> Path:
    """A private copy of the session store, to damage."""
    dest = tmp_path / "copy.zarr"
    shutil.copytree(store, dest)
    return dest


def _case(store: Path, raw_tree: tuple[Path, list[SyntheticCase]]) -> SyntheticCase:
    """A case with at least two shards (33 slices or more)."""
    for case in raw_tree[1]:
        if zarr.open_array(store / CASES_GROUP / case.case_id / IMAGE, mode="r").shape[0] > 32:
            return case
    raise AssertionError("no fixture case with two shards")


def _shard(store: Path, case_id: str, array: str, shard: int = 0) -> Path:
    return store / CASES_GROUP / case_id / array / "c" / str(shard) / "0" / "0"


def _index(store: Path, case_id: str, array: str, data: bytes) -> np.ndarray:
    """The (offset, nbytes) entries of a shard's index (at the end, with a CRC32C)."""
    meta = zarr.open_array(store / CASES_GROUP / case_id / array, mode="r").metadata
    n = meta.chunk_grid.chunk_shape[0]
    return np.frombuffer(data[-(16 * n + 4) : -4], dtype="<u8").reshape(n, 2)


def _errors(report: VerifyReport) -> list[Problem]:
    return [p for p in report.problems if p.severity == ERROR]


def test_clean_store_verifies_ok(store: Path, raw_tree) -> None:
    report = verify(store)
    assert report.ok, report.summary()
    assert report.problems == []
    assert report.cases_checked == len(raw_tree[1])
    n_slices = [
        zarr.open_array(store / CASES_GROUP / c.case_id / IMAGE, mode="r").shape[0]
        for c in raw_tree[1]
    ]
    assert report.chunks_checked == 3 * sum(n_slices)  # image, label, the OME label image
    assert "OK" in report.summary()
    assert json.loads(json.dumps(report.to_json()))["ok"] is True


def test_flipped_byte_names_the_case_and_slice(damaged: Path, raw_tree) -> None:
    case = _case(damaged, raw_tree)
    path = _shard(damaged, case.case_id, IMAGE)
    data = bytearray(path.read_bytes())
    position = len(data) // 2
    entries = _index(damaged, case.case_id, IMAGE, bytes(data))
    (slices,) = np.nonzero((entries[:, 0] <= position) & (position < entries.sum(axis=1)))
    assert slices.size == 1
    data[position] ^= 0xFF
    path.write_bytes(bytes(data))

    report = verify(damaged)
    assert not report.ok
    assert [(p.case_id, p.array, p.slice, p.kind) for p in _errors(report)] == [
        (case.case_id, IMAGE, int(slices[0]), "checksum")
    ]
    assert "checksum" in _errors(report)[0].message
    assert f"{case.case_id}/image[z={int(slices[0])}]" in report.summary()


def test_deleted_shard_is_reported_missing(damaged: Path, raw_tree) -> None:
    case = _case(damaged, raw_tree)
    n_z = zarr.open_array(damaged / CASES_GROUP / case.case_id / LABEL, mode="r").shape[0]
    _shard(damaged, case.case_id, LABEL, shard=1).unlink()
    report = verify(damaged)
    assert not report.ok
    problems = _errors(report)
    assert [(p.case_id, p.array, p.slice, p.kind) for p in problems] == [
        (case.case_id, LABEL, 32, "missing")
    ]
    assert f"{n_z - 32} chunk(s), slices 32..{n_z - 1}" in problems[0].message


def test_missing_inner_chunk_is_reported(damaged: Path, raw_tree) -> None:
    """zarr reads a chunk the shard index marks empty as fill values, without an error."""
    case = _case(damaged, raw_tree)
    path = _shard(damaged, case.case_id, IMAGE)
    data = path.read_bytes()
    entries = _index(damaged, case.case_id, IMAGE, data).copy()
    entries[5] = (MISSING, MISSING)
    body = entries.astype("<u8").tobytes()
    crc = google_crc32c.value(body).to_bytes(4, "little")
    path.write_bytes(data[: -(len(body) + 4)] + body + crc)
    group = zarr.open_group(damaged / CASES_GROUP / case.case_id, mode="r")
    assert not np.asarray(group[IMAGE][5]).any()  # zarr alone does not notice

    report = verify(damaged)
    assert [(p.case_id, p.array, p.slice, p.kind) for p in _errors(report)] == [
        (case.case_id, IMAGE, 5, "missing")
    ]


def test_corrupt_shard_index_is_reported(damaged: Path, raw_tree) -> None:
    case = _case(damaged, raw_tree)
    path = _shard(damaged, case.case_id, LABEL)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0x01
    path.write_bytes(bytes(data))
    report = verify(damaged)
    problems = _errors(report)
    assert [(p.case_id, p.array, p.slice, p.kind) for p in problems] == [
        (case.case_id, LABEL, 0, "checksum")
    ]
    assert "shard index" in problems[0].message


def test_unfinished_case_in_the_catalogue_fails(damaged: Path, raw_tree) -> None:
    case = raw_tree[1][2]
    group = zarr.open_group(
        damaged, path=f"{CASES_GROUP}/{case.case_id}", mode="r+", use_consolidated=False
    )
    group.attrs[COMPLETE_KEY] = False
    report = verify(damaged)
    assert not report.ok
    unfinished = [p for p in report.problems if p.kind == "unfinished"]
    assert [(p.case_id, p.severity) for p in unfinished] == [(case.case_id, ERROR)]
    assert "catalogue lists it" in unfinished[0].message
    assert report.cases_checked == len(raw_tree[1]) - 1


def test_unfinished_case_outside_the_catalogue_is_a_warning(damaged: Path) -> None:
    """An ingest killed mid-case leaves a group without complete: true, not catalogued."""
    cases = zarr.open_group(damaged, path=CASES_GROUP, mode="r+", use_consolidated=False)
    half = cases.create_group("half-written", attributes={COMPLETE_KEY: False})
    half.create_array(IMAGE, shape=(4, 3, 2), dtype="int16", chunks=(1, 3, 2), shards=(4, 3, 2))
    report = verify(damaged)
    assert report.ok, report.summary()
    unfinished = [p for p in report.problems if p.kind == "unfinished"]
    assert [(p.case_id, p.severity) for p in unfinished] == [("half-written", WARNING)]


def test_stale_consolidated_metadata_is_reported(damaged: Path, raw_tree) -> None:
    case = raw_tree[1][0]
    array = zarr.open_array(damaged / CASES_GROUP / case.case_id / LABEL, mode="r+")
    array.attrs["long_name"] = "changed after consolidation"
    report = verify(damaged)
    problems = _errors(report)
    assert [(p.case_id, p.array, p.kind) for p in problems] == [(case.case_id, LABEL, "metadata")]
    assert "stale" in problems[0].message


def test_missing_root_consolidated_metadata_is_reported(damaged: Path) -> None:
    path = damaged / "zarr.json"
    document = json.loads(path.read_text())
    del document["consolidated_metadata"]
    path.write_text(json.dumps(document))
    report = verify(damaged)
    assert any("no consolidated metadata at the root" in p.message for p in _errors(report))


def test_catalogue_that_disagrees_with_a_case_is_reported(damaged: Path) -> None:
    cases = zarr.open_array(damaged / "case", mode="r")[...]
    n_slices = zarr.open_array(damaged / "n_slices", mode="r+")
    n_slices[1] = 999
    report = verify(damaged)
    problems = _errors(report)
    assert [(p.case_id, p.array, p.kind) for p in problems] == [
        (str(cases[1]), "n_slices", "catalogue")
    ]
    assert "999" in problems[0].message


def test_not_a_store_is_reported(tmp_path: Path) -> None:
    report = verify(tmp_path / "nothing.zarr")
    assert not report.ok
    zarr.open_group(tmp_path / "other.zarr", mode="w")
    report = verify(tmp_path / "other.zarr")
    assert [(p.kind, p.severity) for p in report.problems] == [("metadata", ERROR)]
    assert "not a ctspine store" in report.problems[0].message


def test_against_raw_passes_for_the_fixture_store(store: Path, raw_tree) -> None:
    report = verify(store, against=raw_tree[0])
    assert report.ok, report.summary()
    assert report.raw_cases_checked == len(raw_tree[1])
    assert report.problems == []


def _bump_first_voxel(path: Path) -> tuple[int, int, int]:
    """Add 1 to the raw value of voxel (0, 0, 0); return its canonical (z, y, x) index."""
    img = nib.load(path)
    offset, dtype = img.dataobj.offset, img.get_data_dtype()
    raw = bytearray(gzip.decompress(path.read_bytes()))
    value = np.frombuffer(bytes(raw[offset : offset + dtype.itemsize]), dtype=dtype)
    raw[offset : offset + dtype.itemsize] = (value + 1).astype(dtype).tobytes()
    path.write_bytes(gzip.compress(bytes(raw), mtime=0))
    marker = np.zeros(img.shape[:3], dtype=bool)
    marker[0, 0, 0] = True
    x, y, z = np.argwhere(apply_orientation(marker, io_orientation(img.affine)))[0]
    return int(z), int(y), int(x)


def test_against_raw_fails_when_a_source_changed(store: Path, raw_tree, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    shutil.copytree(raw_tree[0], raw)
    case = raw_tree[1][3]
    changed = raw / case.image_path.relative_to(raw_tree[0])
    z, _, _ = _bump_first_voxel(changed)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = verify(store, against=raw)
    assert not report.ok
    assert [(p.case_id, p.array, p.slice, p.kind) for p in _errors(report)] == [
        (case.case_id, IMAGE, z, "source")
    ]
    assert "1 voxel(s) on 1 slice(s)" in _errors(report)[0].message


def test_against_raw_reports_missing_and_extra_cases(store: Path, raw_tree, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    shutil.copytree(raw_tree[0], raw)
    case = raw_tree[1][0]
    for path in (case.image_path, case.label_path):
        moved = raw / path.relative_to(raw_tree[0])
        moved.rename(moved.with_name(moved.name.replace(case.case_id, "renamed-case")))
    report = verify(store, against=raw)
    assert not report.ok
    assert [(p.case_id, p.kind) for p in _errors(report)] == [("renamed-case", "missing")]
    assert (case.case_id, "source", WARNING) in [
        (p.case_id, p.kind, p.severity) for p in report.warnings
    ]


def test_case_without_consolidated_metadata_is_reported(damaged: Path, raw_tree) -> None:
    """Readers open a case through its own consolidated metadata: without it, no case."""
    case = raw_tree[1][1]
    path = damaged / CASES_GROUP / case.case_id / "zarr.json"
    document = json.loads(path.read_text())
    del document["consolidated_metadata"]
    path.write_text(json.dumps(document))
    report = verify(damaged)
    problems = _errors(report)
    assert [(p.case_id, p.array, p.kind) for p in problems] == [(case.case_id, None, "metadata")]
    assert "no consolidated metadata in case group" in problems[0].message


def test_deleted_array_is_reported(damaged: Path, raw_tree) -> None:
    case = raw_tree[1][4]
    shutil.rmtree(damaged / CASES_GROUP / case.case_id / SLICE_VERTEBRAE)
    report = verify(damaged)
    assert sorted((p.case_id, p.array, p.kind) for p in _errors(report)) == [
        (case.case_id, SLICE_VERTEBRAE, "metadata"),  # the consolidated metadata lists it
        (case.case_id, SLICE_VERTEBRAE, "missing"),
    ]


def test_header_that_is_not_the_bytes_before_the_voxels_is_reported(
    damaged: Path, raw_tree
) -> None:
    case = raw_tree[1][0]
    group = zarr.open_group(
        damaged, path=f"{CASES_GROUP}/{case.case_id}", mode="r+", use_consolidated=False
    )
    header = group[LABEL_HEADER]
    assert isinstance(header, zarr.Array)
    data, attrs = header[...], dict(header.attrs)
    del group[LABEL_HEADER]
    group.create_array(LABEL_HEADER, data=data[:348], dimension_names=("byte",), attributes=attrs)
    consolidate(group, attributes=dict(group.attrs))  # as an ingest would have written it
    report = verify(damaged)
    problems = _errors(report)
    assert [(p.case_id, p.array, p.kind) for p in problems] == [
        (case.case_id, LABEL_HEADER, "header")
    ]
    assert "348 header bytes, but vox_offset is" in problems[0].message


def test_store_on_s3_verifies_ok(store: Path, raw_tree, s3) -> None:
    import s3fs

    bucket, options, _ = s3
    url = f"{bucket}/s.zarr"
    s3fs.S3FileSystem(**options).put(str(store), url, recursive=True)
    report = verify(url, storage_options=options)
    assert report.ok, report.summary()
    assert report.problems == []
    assert report.cases_checked == len(raw_tree[1])


def test_against_raw_goes_on_past_a_corrupt_case(damaged: Path, raw_tree) -> None:
    case = _case(damaged, raw_tree)
    path = _shard(damaged, case.case_id, IMAGE)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    report = verify(damaged, against=raw_tree[0])
    assert report.raw_cases_checked == len(raw_tree[1])
    assert sorted({(p.case_id, p.kind) for p in _errors(report)}) == [
        (case.case_id, "checksum"),
        (case.case_id, "unreadable"),  # its voxels cannot be compared with the source
    ]
