"""A store remembers the raw tree(s) it was made from (issue #17, item 3).

Ingesting another tree into it needs ``--add``; without it the command stops before it
writes anything, saying how the trees differ. The same tree again (a resume, a moved tree,
an edited split file) needs nothing, and a case whose split changed moves without its
arrays being rewritten. The commands run in a child process, as a user would.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from clirun import cli, error_lines, ingest_command

import ctspine_zarr
from ctspine_zarr.errors import TreeMismatchError
from ctspine_zarr.io.layout import find_cases
from ctspine_zarr.io.store import forget
from ctspine_zarr.schema import RAW_TREES_KEY
from ctspine_zarr.testing.synthetic import make_raw_tree
from ctspine_zarr.testing.synthetic.tree import write_split_file
from ctspine_zarr.write.rawtrees import trees_after_ingest

HINT = (
    "pass --add to add RAW's cases to the store (a case id in both is replaced by RAW's), or "
    "ingest RAW into a new store"
)


def _ingest(raw: Path, store: Path, *extra: str):  # type: ignore[no-untyped-def]
    import subprocess

    return subprocess.run(
        ingest_command(raw, store, *extra), capture_output=True, text=True, check=False
    )


def _state(root: Path) -> dict[str, tuple[str, int, int]]:
    """Every file and folder under ``root`` (and the report beside it): sha256, inode, mtime."""
    found = {}
    report = root.with_name(root.name + ".ingest-report.json")
    for path in [root, *sorted(root.rglob("*")), report]:
        if path.is_file():
            data = hashlib.sha256(path.read_bytes()).hexdigest()
        elif path.is_dir():
            data = "folder"
        else:
            continue
        info = path.stat()
        found[os.fspath(path.relative_to(root.parent))] = (data, info.st_ino, info.st_mtime_ns)
    return found


def _root(store: Path) -> dict:
    return json.loads((store / "zarr.json").read_text())


def _catalogue(store: Path) -> dict[str, str]:
    ds = ctspine_zarr.open(store)
    return {str(c): str(s) for c, s in zip(ds.case.values, ds.split.values, strict=True)}


@pytest.fixture
def trees(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Two different raw trees (the second lacks sources of the first) and a store of the first."""
    tmp_path = Path(os.path.realpath(tmp_path))  # as the store records it
    first, second = tmp_path / "raw-a", tmp_path / "raw-b"
    make_raw_tree(first, n_cases=4, shape=(16, 16), n_slices=(6, 10), seed=11)
    make_raw_tree(second, n_cases=2, shape=(16, 16), n_slices=(6, 10), seed=12)
    store = tmp_path / "store.zarr"
    # in this process: the same ingest as the command's (--workers 1), without a child start
    report = ctspine_zarr.ingest(first, store, workers=1, progress=False)
    assert report.ok, report.summary()
    forget(store)  # the tests change it from child processes
    return first, second, store


def test_another_tree_is_refused_without_add_and_the_store_is_untouched(
    trees: tuple[Path, Path, Path],
) -> None:
    first, second, store = trees
    a, b = find_cases(str(first)), find_cases(str(second))
    before = _state(store)
    lines = error_lines(_ingest(second, store), "ingest")
    assert _state(store) == before  # byte for byte, not even a lock file
    only_a = sorted({c.source for c in a.cases} - {c.source for c in b.cases})
    assert only_a, "the fixture's second tree must lack a source of the first"
    assert lines == [
        f"ctspine-zarr ingest: error: {store}: made from another raw tree ({first}); RAW "
        f"{second} differs: its split file is sha256 {b.split_sha256[:12]}, the store's sha256 "
        f"{a.split_sha256[:12]}; sources only in the store's tree: {', '.join(only_a)}; "
        f"{len(b.cases)} cases in RAW (0 of them in the store already), {len(a.cases)} in "
        "the store's tree",
        HINT,
    ]
    done = _ingest(second, store, "--add")
    assert done.returncode == 0, done.stderr
    assert "raw tree   added to the store's 1 other(s)" in done.stdout
    both = {c.case_id: c.split for c in [*a.cases, *b.cases]}
    assert _catalogue(store) == dict(sorted(both.items()))
    recorded = _root(store)["attributes"][RAW_TREES_KEY]
    assert [r["location"] for r in recorded] == [f"file://{first}", f"file://{second}"]
    assert [r["cases"] for r in recorded] == [len(a.cases), len(b.cases)]
    assert [r["split_file"]["sha256"] for r in recorded] == [a.split_sha256, b.split_sha256]
    for raw in (first, second):  # either tree again: no --add needed
        done = _ingest(raw, store)
        assert done.returncode == 0, done.stderr
        assert "0 ingested" in done.stdout
    assert ctspine_zarr.verify(store).ok


def test_the_library_refuses_too_and_names_its_keyword(trees: tuple[Path, Path, Path]) -> None:
    _, second, store = trees
    before = _state(store)
    with pytest.raises(TreeMismatchError, match="made from another raw tree") as raised:
        ctspine_zarr.ingest(second, store)
    assert raised.value.hint.startswith("pass add=True to add RAW's cases")
    assert _state(store) == before


def test_the_same_tree_again_needs_no_add(trees: tuple[Path, Path, Path], tmp_path: Path) -> None:
    first, _, store = trees
    done = _ingest(first, store)
    assert done.returncode == 0 and "0 ingested, 4 unchanged" in done.stdout, done.stderr
    moved = Path(os.path.realpath(tmp_path)) / "moved"
    shutil.copytree(first, moved)  # same cases, same split file, another place
    done = _ingest(moved, store)
    assert done.returncode == 0, done.stderr
    recorded = _root(store)["attributes"][RAW_TREES_KEY]
    assert [r["location"] for r in recorded] == [f"file://{moved}"]
    done = _ingest(first, store, "--repair")
    assert done.returncode == 0, done.stderr


def test_a_changed_split_moves_the_case_without_rewriting_its_arrays(
    trees: tuple[Path, Path, Path],
) -> None:
    first, _, store = trees
    tree = find_cases(str(first))
    moved = next(c for c in tree.cases if c.split == "train")
    sections: dict[str, list[str]] = {"trainset": [], "test_public": [], "test_private": []}
    for case in tree.cases:
        split = "test" if case is moved else case.split
        section = {"train": "trainset", "validation": "test_public", "test": "test_private"}
        if split in section:
            sections[section[split]].append(Path(case.image or "").name)
    write_split_file(first / "metadata" / "data_split.txt", sections)
    arrays = {
        k: v for k, v in _state(store).items() if f"/{moved.case_id}/" in k and "zarr.json" not in k
    }
    assert any("/image/c/" in k for k in arrays)  # the shards are among them
    done = _ingest(first, store)
    assert done.returncode == 0, done.stderr
    assert (
        f"splits     1 unchanged case(s) moved to another split (the split file changed; arrays "
        f"kept): {moved.case_id}: train -> test"
    ) in done.stdout
    assert {k: v for k, v in _state(store).items() if k in arrays} == arrays
    assert _catalogue(store)[moved.case_id] == "test"
    case_doc = json.loads((store / "cases" / moved.case_id / "zarr.json").read_text())
    assert case_doc["attributes"]["split"] == "test"
    root = _root(store)
    entry = root["consolidated_metadata"]["metadata"][f"cases/{moved.case_id}"]
    assert entry["attributes"]["split"] == "test"
    assert root["attributes"][RAW_TREES_KEY][0]["split_file"]["sha256"] == (
        find_cases(str(first)).split_sha256
    )
    report = ctspine_zarr.verify(store)
    assert report.ok and not report.problems, report.summary()
    assert ctspine_zarr.open(store).ctspine.case_ids(split="test").count(moved.case_id) == 1


def test_a_store_without_the_record_takes_a_tree_and_records_it(
    trees: tuple[Path, Path, Path],
) -> None:
    first, second, store = trees
    document = _root(store)
    del document["attributes"][RAW_TREES_KEY]  # as an ingest before the record wrote it
    (store / "zarr.json").write_text(json.dumps(document, separators=(",", ":")))
    done = _ingest(first, store)
    assert done.returncode == 0 and "0 ingested" in done.stdout, done.stderr
    assert [r["location"] for r in _root(store)["attributes"][RAW_TREES_KEY]] == [f"file://{first}"]


def test_overwrite_replaces_the_store_and_its_record(trees: tuple[Path, Path, Path]) -> None:
    _, second, store = trees
    done = _ingest(second, store, "--overwrite")
    assert done.returncode == 0, done.stderr
    ids = sorted(c.case_id for c in find_cases(str(second)).cases)
    assert sorted(_catalogue(store)) == ids
    recorded = _root(store)["attributes"][RAW_TREES_KEY]
    assert [r["location"] for r in recorded] == [f"file://{second}"]


def test_ingest_help_documents_add() -> None:
    done = cli("ingest", "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    assert "--add add RAW's cases to a store made from another raw tree" in text


# --------------------------------------------------------------------------------------------
# The rule itself, on records
# --------------------------------------------------------------------------------------------


def _record(location: str, split: str | None, sources: list[str], ids: list[str]) -> dict:
    return {
        "location": location,
        "split_file": None if split is None else {"sha256": split * 64, "size": 10},
        "sources": sources,
        "cases": len(ids),
        "case_ids_sha256": hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest(),
    }


def test_which_tree_is_the_same_and_how_another_differs() -> None:
    first = _record("file:///a", "1", ["COLONOG", "MSD-T10"], ["x", "y"])
    root = {
        "attributes": {RAW_TREES_KEY: [first]},
        "consolidated_metadata": {"metadata": {"cases/x": {}, "cases/x/image": {}, "cases/y": {}}},
    }
    edited = _record("file:///a", "2", ["COLONOG"], ["x"])  # same place, new split file
    assert trees_after_ingest(root, edited, add=False, overwrite=False, store="S") == [edited]
    moved = _record("file:///b", "1", ["MSD-T10", "COLONOG"], ["y", "x"])  # same content
    assert trees_after_ingest(root, moved, add=False, overwrite=False, store="S") == [moved]
    other = _record("file:///c", None, ["COVID-19", "COLONOG"], ["x", "z", "w"])
    with pytest.raises(TreeMismatchError) as raised:
        trees_after_ingest(root, other, add=False, overwrite=False, store="S", case_ids=["x", "z"])
    assert str(raised.value) == (
        "S: made from another raw tree (/a); RAW /c differs: its split file is missing, the "
        "store's sha256 111111111111; sources only in RAW: COVID-19; sources only in the "
        "store's tree: MSD-T10; 3 cases in RAW (1 of them in the store already), 2 in the "
        "store's tree"
    )
    both = trees_after_ingest(root, other, add=True, overwrite=False, store="S")
    assert both == [first, other]
    again = dict(other, split_file={"sha256": "3" * 64, "size": 1})
    assert trees_after_ingest(
        {"attributes": {RAW_TREES_KEY: both}}, again, add=False, overwrite=False, store="S"
    ) == [first, again]
    assert trees_after_ingest(root, other, add=False, overwrite=True, store="S") == [other]
    assert trees_after_ingest(None, other, add=False, overwrite=False, store="S") == [other]
    assert trees_after_ingest({"attributes": {}}, other, add=False, overwrite=False, store="S")
