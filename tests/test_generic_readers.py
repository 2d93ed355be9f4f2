"""Generic readers see every case through the root: xarray ``group=``, zarr, DataTree.

The root's consolidated metadata lists the catalogue, then every case group and its arrays
(``docs/format.md``, "The root document"). ``ctspine_zarr.open`` reads only the catalogue's
head of it. Each idiom is checked on a local store, over HTTP and on S3 (moto), against the
source voxels.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import xarray as xr
import zarr

import ctspine_zarr
from ctspine_zarr.io.catalogue import case_members, withdraw_case_members
from ctspine_zarr.io.location import Location
from ctspine_zarr.io.serve import serve_directory
from ctspine_zarr.io.snapshot import CASES_ENTRY, HEAD_BYTES, catalogue_head
from ctspine_zarr.testing.synthetic import make_raw_tree


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("generic-raw")
    return root, make_raw_tree(root, n_cases=3, shape=(32, 40), n_slices=(12, 30), seed=5)


@pytest.fixture(scope="module")
def local(tree, tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw, _ = tree
    store = tmp_path_factory.mktemp("generic-store") / "s.zarr"
    assert ctspine_zarr.ingest(raw, store, workers=1, progress=False).ok
    return store


def _source(path: Path) -> np.ndarray:
    return np.asanyarray(nib.as_closest_canonical(nib.load(path)).dataobj).transpose(2, 1, 0)


def _check_idioms(url: str, options: dict | None, cases) -> None:
    kwargs = {"storage_options": options} if options else {}
    for case in cases:
        group = f"cases/{case.case_id}"
        ds = xr.open_zarr(url, group=group, **kwargs)
        assert ds.image.dims == ds.label.dims == ("z", "y", "x")
        np.testing.assert_array_equal(ds.image.values, _source(case.image_path))
        np.testing.assert_array_equal(ds.label.values, _source(case.label_path))
        root = zarr.open_group(url, mode="r", **kwargs)
        image = root[f"{group}/image"]
        assert isinstance(image, zarr.Array)
        np.testing.assert_array_equal(image[...], _source(case.image_path))
    tree = xr.open_datatree(url, engine="zarr", **kwargs)
    for case in cases:
        node = tree[f"cases/{case.case_id}"]
        np.testing.assert_array_equal(node["label"].values, _source(case.label_path))
    assert "case" in tree.dataset.dims  # the root node is the catalogue


def test_generic_idioms_on_a_local_store(local: Path, tree) -> None:
    _check_idioms(str(local), None, tree[1])


def test_generic_idioms_over_http(local: Path, tree) -> None:
    with serve_directory(local.parent) as server:
        _check_idioms(f"{server.url}/{local.name}", None, tree[1])


def test_generic_idioms_on_s3(s3, tree) -> None:
    bucket, options, _ = s3
    url = f"{bucket}/s.zarr"
    assert ctspine_zarr.ingest(tree[0], url, workers=1, storage_options=options).ok
    _check_idioms(url, options, tree[1])


def test_the_root_lists_each_case_as_its_own_document(local: Path) -> None:
    root = json.loads((local / "zarr.json").read_bytes())
    members = root["consolidated_metadata"]["metadata"]
    ids = ctspine_zarr.open(local).ctspine.case_ids()
    documents = {c: json.loads((local / "cases" / c / "zarr.json").read_bytes()) for c in ids}
    in_root = {k: v for k, v in members.items() if k.split("/")[0] == "cases"}
    assert in_root == case_members(documents)
    # the catalogue's entries come first, and the reader's cut point is where ctspine put it
    names = list(members)
    assert names.index("cases") == min(i for i, n in enumerate(names) if n.startswith("cases"))
    raw = (local / "zarr.json").read_bytes()
    assert raw.count(CASES_ENTRY) == 1


def test_the_catalogue_head_is_the_document_without_the_cases(local: Path) -> None:
    raw = (local / "zarr.json").read_bytes()
    head = catalogue_head(raw)
    assert head is not None and len(head) < len(raw)
    document, full = json.loads(head), json.loads(raw)
    assert document["attributes"] == full["attributes"]
    catalogue = {
        k: v for k, v in full["consolidated_metadata"]["metadata"].items() if k[:5] != "cases"
    }
    assert document["consolidated_metadata"]["metadata"] == catalogue
    # a document written by another tool has no cut point: the whole of it is read
    assert catalogue_head(json.dumps(full, indent=2).encode()) is None


class _Reads(zarr.storage.WrapperStore):
    """Records every read: ``(key, byte range)``."""

    def __init__(self, store) -> None:  # type: ignore[no-untyped-def]
        super().__init__(store)
        self.reads: list[tuple[str, object]] = []

    async def get(self, key, prototype, byte_range=None):  # type: ignore[no-untyped-def]
        self.reads.append((key, byte_range))
        return await super().get(key, prototype, byte_range)


def test_opening_reads_the_head_of_a_large_root_once(tmp_path: Path, local: Path) -> None:
    # a root listing 1,005 cases: copies of one case's entries under other names
    store = tmp_path / "big.zarr"
    import shutil

    shutil.copytree(local, store)
    document = json.loads((store / "zarr.json").read_bytes())
    members = document["consolidated_metadata"]["metadata"]
    case = next(k for k in members if k.startswith("cases/") and k.count("/") == 1)
    copies = {k: v for k, v in members.items() if k == case or k.startswith(case + "/")}
    for i in range(1005):
        for key, value in copies.items():
            members[key.replace(case, f"{case}_copy{i:04d}", 1)] = value
    raw = json.dumps(document, separators=(",", ":")).encode()
    assert len(raw) > 4 * HEAD_BYTES
    (store / "zarr.json").write_bytes(raw)
    reads = _Reads(zarr.storage.LocalStore(store, read_only=True))
    ds = ctspine_zarr.open(reads)
    assert ds.sizes["case"] == 3
    root_reads = [r for r in reads.reads if r[0] == "zarr.json"]
    assert len(root_reads) == 1 and root_reads[0][1] is not None  # one ranged read
    assert len(reads.reads) <= 2  # the head, then the case ids
    # a generic reader still sees every case through the same document
    copy = f"{case.split('/')[1]}_copy1004"
    cases_group = zarr.open_group(store, mode="r")["cases"]
    assert isinstance(cases_group, zarr.Group) and copy in cases_group


def test_cases_being_rewritten_leave_the_root_until_the_catalogue_lists_them_again(
    tmp_path: Path, tree
) -> None:
    raw, cases = tree
    store = tmp_path / "s.zarr"
    assert ctspine_zarr.ingest(raw, store, workers=1).ok
    case_id = cases[0].case_id
    withdraw_case_members(Location.resolve(store), [case_id])
    with pytest.raises(KeyError):
        xr.open_zarr(store, group=f"cases/{case_id}")  # an error, never stale metadata
    xr.open_zarr(store, group=f"cases/{cases[1].case_id}")  # the others stay
    assert case_id in ctspine_zarr.open(store).ctspine.case_ids()  # our catalogue is unchanged
    report = ctspine_zarr.verify(store)
    assert [p.case_id for p in report.problems] == [case_id]
    assert "lacks" in str(report.problems[0])
    ctspine_zarr.ingest(raw, store, workers=1, overwrite=True)  # the next catalogue lists it
    xr.open_zarr(store, group=f"cases/{case_id}")
    assert ctspine_zarr.verify(store).ok


def test_a_stale_root_entry_is_an_error(tmp_path: Path, local: Path) -> None:
    import shutil

    store = tmp_path / "stale.zarr"
    shutil.copytree(local, store)
    case_id = ctspine_zarr.open(store).ctspine.case_ids()[0]
    document = json.loads((store / "zarr.json").read_bytes())
    entry = document["consolidated_metadata"]["metadata"][f"cases/{case_id}/image"]
    entry["shape"] = [n + 1 for n in entry["shape"]]  # as an older version of the case had it
    (store / "zarr.json").write_text(json.dumps(document, separators=(",", ":")))
    report = ctspine_zarr.verify(store)
    assert [p.case_id for p in report.problems if p.severity == "error"] == [case_id]
    assert f"differs on cases/{case_id}/image" in str(report.problems[-1])


def test_a_root_without_case_entries_is_a_warning(tmp_path: Path, local: Path) -> None:
    import shutil

    store = tmp_path / "old.zarr"
    shutil.copytree(local, store)
    ids = ctspine_zarr.open(store).ctspine.case_ids()
    document = json.loads((store / "zarr.json").read_bytes())  # as a store of format 2 has it
    members = document["consolidated_metadata"]["metadata"]
    for name in [n for n in members if n.split("/")[0] == "cases"]:
        del members[name]
    (store / "zarr.json").write_text(json.dumps(document))
    ctspine_zarr.io.store.forget(store)
    assert sorted(ctspine_zarr.open(store).ctspine.case_ids()) == sorted(ids)
    report = ctspine_zarr.verify(store)
    assert report.ok and len(report.problems) == 1
    assert "lists no case" in str(report.problems[0])
