"""Case ids that read back as themselves through every store kind, HTTP included (#13, 7)."""

from __future__ import annotations

import unicodedata
import uuid
from pathlib import Path

import fsspec
import nibabel as nib
import numpy as np
import pytest

import ctspine_zarr
from ctspine_zarr.io.layout import case_id_problem, find_cases, normalisation_collisions
from ctspine_zarr.io.serve import serve_directory
from ctspine_zarr.testing.synthetic import make_raw_tree

#: Hostile but legal ids: each must read back exactly, locally and over HTTP.
ODD_IDS = [
    "plain",
    "x%2F..%2Fplain",
    "a b",
    "a%20b",
    "h#x",
    "q?x=1",
    "pct%",
    "%zz",
    "a+b",
    "amp&eq=1;x",
    "colon:at@",
    "quote'dq\"",
    "brackets[1]{2}",
    "tilde~star*",
    "ümlaut",
    "日本語",
    "e\u0301",  # NFD, alone: legal
    "-lead.dots.",
    "...x",
    "trailing space ",
]

#: Ids refused at ingest, each with a word of its message.
REFUSED_IDS = {
    "a\nb": "U+000A",
    "tab\tx": "U+0009",
    "zarr.json": "zarr.json",
    "..": "'..'",
    ".": "'.'",
    "back\\slash": "path separator",
    "ﬁx": "Unicode normalisation",  # the ligature: equal to "fix" after NFKC
    "fix": "Unicode normalisation",
}


def _odd_tree(root: Path, ids: list[str]) -> dict[str, tuple[Path, Path]]:
    """A raw tree whose cases (distinct voxels each) are renamed to ``ids``."""
    cases = make_raw_tree(
        root, n_cases=len(ids), shape=(16, 16), n_slices=(4, 9), seed=13, split_file=False
    )
    paths = {}
    for case, new_id in zip(cases, ids, strict=True):
        image = case.image_path.with_name(f"{new_id}.nii.gz")
        label = case.label_path.with_name(f"{new_id}_seg.nii.gz")
        case.image_path.rename(image)
        case.label_path.rename(label)
        paths[new_id] = (image, label)
    return paths


def _canonical(path: Path) -> np.ndarray:
    return np.asanyarray(nib.as_closest_canonical(nib.load(path)).dataobj).transpose(2, 1, 0)


@pytest.fixture(scope="module")
def odd_store(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("odd")
    paths = _odd_tree(root / "raw", ODD_IDS + list(REFUSED_IDS))
    store = root / "pub" / "s.zarr"
    report = ctspine_zarr.ingest(root / "raw", store, workers=2, progress=False)
    return store, paths, report


def test_unsafe_ids_are_refused_and_the_others_land(odd_store) -> None:
    _, _, report = odd_store
    status = {o.case_id: o for o in report.outcomes}
    assert {c for c, o in status.items() if o.status == "ingested"} == set(ODD_IDS)
    for case_id, word in REFUSED_IDS.items():
        outcome = status[case_id]
        assert outcome.status == "refused", outcome
        assert word in outcome.problem, outcome.problem
        # one line, but for the file's own name (printed by ingest as it is)
        assert "\n" not in outcome.problem.replace(outcome.file, ""), outcome.problem
        assert "rename the files" in outcome.problem
    assert "'fix'" in status["ﬁx"].problem and "'ﬁx'" in status["fix"].problem
    assert report.catalogue_cases == len(ODD_IDS)


def test_odd_ids_read_back_exactly_locally(odd_store) -> None:
    store, paths, _ = odd_store
    ds = ctspine_zarr.open(store)
    assert sorted(ds.ctspine.case_ids()) == sorted(ODD_IDS)
    for case_id in ODD_IDS:
        vol = ds.ctspine.volume(case_id)
        assert vol.attrs["case"] == case_id
        np.testing.assert_array_equal(vol.image.values, _canonical(paths[case_id][0]))
        np.testing.assert_array_equal(vol.label.values, _canonical(paths[case_id][1]))


def test_odd_ids_read_back_exactly_over_http(odd_store) -> None:
    store, paths, _ = odd_store
    local = ctspine_zarr.open(store)
    with serve_directory(store.parent) as server:
        ds = ctspine_zarr.open(f"{server.url}/{store.name}")
        assert sorted(ds.ctspine.case_ids()) == sorted(ODD_IDS)
        for case_id in ODD_IDS:
            vol = ds.ctspine.volume(case_id)
            assert vol.attrs["case"] == case_id
            expected = local.ctspine.volume(case_id)
            np.testing.assert_array_equal(vol.image.values, expected.image.values)
            np.testing.assert_array_equal(vol.label.values, expected.label.values)
            np.testing.assert_array_equal(vol.image.values, _canonical(paths[case_id][0]))
            z = vol.sizes["z"] // 2
            got = ds.ctspine.slice(case_id, z)
            np.testing.assert_array_equal(got.image.values, expected.image.values[z])
            np.testing.assert_array_equal(got.label.values, expected.label.values[z])
        # the requests went out encoded: no raw '#', '?', space or '%2F..' reached the server
        paths_seen = [p for _, p, _ in server.requests]
        assert not any(" " in p or "#" in p for p in paths_seen)
        assert any("x%252F..%252Fplain" in p for p in paths_seen)


@pytest.mark.parametrize("kind", ["memory", "s3"])
def test_odd_ids_read_back_exactly_from_object_stores(odd_store, kind, request) -> None:
    store, paths, _ = odd_store
    if kind == "s3":
        bucket, options, _ = request.getfixturevalue("s3")
        url = f"{bucket}/s.zarr"
    else:
        url, options = f"memory://odd-{uuid.uuid4().hex}/s.zarr", None
    raw = store.parent.parent / "raw"
    report = ctspine_zarr.ingest(raw, url, workers=2, storage_options=options, progress=False)
    assert report.catalogue_cases == len(ODD_IDS)
    ds = ctspine_zarr.open(url, storage_options=options)
    assert sorted(ds.ctspine.case_ids()) == sorted(ODD_IDS)
    for case_id in ODD_IDS:
        vol = ds.ctspine.volume(case_id)
        assert vol.attrs["case"] == case_id
        np.testing.assert_array_equal(vol.image.values, _canonical(paths[case_id][0]))
        np.testing.assert_array_equal(
            ds.ctspine.slice(case_id, 1).label.values, _canonical(paths[case_id][1])[1]
        )
    if kind == "memory":
        fsspec.filesystem("memory").rm(url.removeprefix("memory://").split("/")[0], recursive=True)


def test_an_unknown_odd_id_is_not_found_over_http(odd_store) -> None:
    store, _, _ = odd_store
    with serve_directory(store.parent) as server:
        ds = ctspine_zarr.open(f"{server.url}/{store.name}")
        # '../' inside an id must not climb out of cases/ to another case
        with pytest.raises(ctspine_zarr.errors.CaseNotFoundError):
            ds.ctspine.volume("x/../plain")
        with pytest.raises(ctspine_zarr.errors.CaseNotFoundError):
            ds.ctspine.volume("h")  # 'h#x' truncated at '#' must not be found
        for case_id in ODD_IDS:  # each group read is that case's own group
            group = ctspine_zarr.io.store.case_group(f"{server.url}/{store.name}", case_id)
            assert group.attrs["case_id"] == case_id


@pytest.mark.parametrize(
    ("case_id", "problem"),
    [
        ("", "empty"),
        (".", "'.'"),
        ("..", "'..'"),
        ("zarr.json", "zarr.json"),
        ("a/b", "path separator"),
        ("a\\b", "path separator"),
        ("a\x00b", "U+0000"),
        ("a\rb", "U+000D"),
        ("a\u2028b", "U+2028"),
    ],
)
def test_case_id_problem_names_the_reason(case_id: str, problem: str) -> None:
    found = case_id_problem(case_id)
    assert found is not None and problem in found


@pytest.mark.parametrize("case_id", [*ODD_IDS, "zarr.json.1", "..x", "1.3.6.1.4.1.9328.50.4.0001"])
def test_case_id_problem_accepts_legal_ids(case_id: str) -> None:
    assert case_id_problem(case_id) is None


def test_normalisation_collisions_name_every_member() -> None:
    nfc, nfd = unicodedata.normalize("NFC", "é"), unicodedata.normalize("NFD", "é")
    found = normalisation_collisions([nfc, nfd, "Ⅸ", "IX", "other"])
    assert found == {nfc: [nfd], nfd: [nfc], "Ⅸ": ["IX"], "IX": ["Ⅸ"]}


def test_find_cases_refuses_an_nfc_nfd_pair(tmp_path: Path) -> None:
    _odd_tree(tmp_path, [unicodedata.normalize("NFC", "é"), unicodedata.normalize("NFD", "é")])
    tree = find_cases(str(tmp_path))
    assert tree.cases == []
    assert len(tree.problems) == 2
    assert all("Unicode normalisation" in problem for _, problem in tree.problems)


def test_a_refusal_naming_a_file_with_a_newline_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "a\nb.nii.gz"
    path.write_bytes(b"not a nifti file at all" * 20)
    with pytest.raises(ctspine_zarr.errors.InvalidCaseError) as caught:
        ctspine_zarr.io.nifti.read_volume(str(path), case_id="a\nb")
    assert "\n" not in str(caught.value) and "a\\nb.nii.gz" in str(caught.value)
