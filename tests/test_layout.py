"""Finding pairs and splits in raw trees, and the real CTSpine1K split file."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctspine_zarr.io.layout import case_id_from_name, find_cases, parse_split_file


def test_case_ids_keep_inner_dots() -> None:
    assert case_id_from_name("1.3.6.1.4.1.9328.50.4.0001.nii.gz") == "1.3.6.1.4.1.9328.50.4.0001"
    assert case_id_from_name("liver_83.nii") == "liver_83"
    assert case_id_from_name("volume-covid19-A-0202_0_ct.nii.gz") == "volume-covid19-A-0202_0_ct"
    assert case_id_from_name("notes.txt") is None


def test_real_split_file(shared_split_file: Path) -> None:
    raw = shared_split_file.read_bytes()
    assert b"\r\n" in raw, "the real file has CRLF line ends"
    splits = parse_split_file(raw.decode())
    names = [
        line.strip()
        for line in raw.decode().splitlines()
        if line.strip() and not line.strip().endswith(":")
    ]
    # the file as published: 610 + 197 + 198 names, no name twice
    assert len(names) == len(set(names)) == len(splits) == 1005
    counts = {split: list(splits.values()).count(split) for split in set(splits.values())}
    assert counts == {"train": 610, "validation": 197, "test": 198}
    assert splits["1.3.6.1.4.1.9328.50.4.0001"] == "train"
    assert set(splits.values()) == {"train", "validation", "test"}
    assert not any(key.endswith((".nii", ".gz", "\r")) for key in splits)
    # sections in file order: trainset, test_public, test_private
    order = [splits[n.removesuffix(".nii.gz")] for n in names]
    assert order == sorted(order, key=["train", "validation", "test"].index)


def test_split_file_lf_and_crlf_agree() -> None:
    text = "trainset:\na.nii.gz\n\ntest_public:\nb.nii.gz\ntest_private:\nc.nii\n"
    assert parse_split_file(text) == parse_split_file(text.replace("\n", "\r\n"))
    assert parse_split_file(text) == {"a": "train", "b": "validation", "c": "test"}


def test_split_file_errors_name_the_line() -> None:
    with pytest.raises(ValueError, match="line 1"):
        parse_split_file("a.nii.gz\ntrainset:\n")
    with pytest.raises(ValueError, match="unknown section"):
        parse_split_file("validation:\na.nii.gz\n")


def test_find_cases_pairs_and_problems(tmp_path: Path) -> None:
    vols, labs = tmp_path / "rawdata/volumes", tmp_path / "rawdata/labels"
    for folder in (vols / "A", vols / "B", labs / "A", labs / "B"):
        folder.mkdir(parents=True)
    for name in ("x.1.nii.gz", "lonely.nii.gz", "dup.nii.gz"):
        (vols / "A" / name).write_bytes(b"")
    (vols / "B" / "dup.nii").write_bytes(b"")
    for name in ("x.1_seg.nii.gz", "dup_seg.nii.gz", "orphan_seg.nii.gz"):
        (labs / "A" / name).write_bytes(b"")
    (labs / "B" / "dup_seg.nii").write_bytes(b"")
    tree = find_cases(str(tmp_path))
    assert [c.case_id for c in tree.cases] == ["x.1"]
    assert tree.cases[0].split == "unassigned"
    problems = {c.case_id: p for c, p in tree.problems}
    assert "without a label" in problems["lonely"]
    assert "without an image" in problems["orphan"]
    assert "several sources" in problems["dup"]
    assert not tree.has_split_file


def test_find_cases_refuses_a_folder_that_is_no_raw_tree(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="rawdata/volumes"):
        find_cases(str(tmp_path))


def test_the_vocabulary_is_consistent() -> None:
    from ctspine_zarr.vertebrae import (
        ANATOMICAL_ORDER,
        REGIONS,
        VERTEBRA_COLOURS,
        VERTEBRA_NAMES,
        parse_vertebra,
        region_of,
        vertebra_name,
    )

    assert sorted(ANATOMICAL_ORDER) == sorted(VERTEBRA_NAMES) == sorted(VERTEBRA_COLOURS)
    assert [v for labels in REGIONS.values() for v in labels] == list(ANATOMICAL_ORDER)
    for label, name in VERTEBRA_NAMES.items():
        assert parse_vertebra(name) == parse_vertebra(name.lower()) == label
        assert parse_vertebra(label) == parse_vertebra(str(label)) == label
        assert vertebra_name(label) == name
    assert region_of(28) == "thoracic" and region_of(25) == "lumbar"
    assert vertebra_name(40) == "label 40"
    assert len(set(VERTEBRA_COLOURS.values())) == len(VERTEBRA_COLOURS)
    for bad in (0, 29, "L7", "x"):
        with pytest.raises(ValueError, match="VerSe label"):
            parse_vertebra(bad)
