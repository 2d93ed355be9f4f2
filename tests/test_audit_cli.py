"""The label audit from the command line (issue #19): ``audit``, its JSON, pictures and page,
``info``'s counts, ``show --audit``, ``synth --defects``; and an audit of a store on S3."""

from __future__ import annotations

import html
import json
import shutil
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
from clirun import cli, cli_each, error_lines

import ctspine_zarr
from ctspine_zarr.audit import CHECKS, audit_store, flagged_cases, read_findings
from ctspine_zarr.audit.pictures import finding_marks, label_projection, picture_name
from ctspine_zarr.cli import main
from ctspine_zarr.io.auditrecord import RECORD_KEY
from ctspine_zarr.testing.synthetic import SyntheticCase, make_raw_tree
from ctspine_zarr.vertebrae import ANATOMICAL_ORDER


@pytest.fixture
def flagged_store(defect_tree, tmp_path: Path) -> tuple[Path, list[SyntheticCase]]:  # type: ignore[no-untyped-def]
    """A writable copy of the defect tree's store, and its cases."""
    _, path, cases = defect_tree
    shutil.copytree(path, tmp_path / "s.zarr")
    return tmp_path / "s.zarr", cases


def _expected(cases: list[SyntheticCase]) -> set[tuple[str, str, tuple[int, ...]]]:
    return {(c.case_id, d.kind, d.labels) for c in cases for d in c.defects}


def _png(path: Path) -> tuple[int, int]:
    from matplotlib.image import imread

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return imread(path).shape[:2]


def test_audit_of_a_clean_store_exits_0_and_records_nothing(store: Path) -> None:
    done = cli("audit", store, "--no-record", "--quiet")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("audited 6 cases (order, gap, fragments, size, overlap)")
    assert "0 findings in 0 cases" in done.stdout
    assert not (store / RECORD_KEY).exists()


def test_audit_writes_json_pictures_and_the_record(flagged_store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path, cases = flagged_store
    out, report = tmp_path / "pictures", tmp_path / "findings.json"
    done = cli("audit", path, "--json", report, "--out", out, "--workers", "2", "--quiet")
    assert done.returncode == 1, done.stderr  # findings were reported
    flagged = sorted(c.case_id for c in cases if c.defects)
    document = json.loads(report.read_text())
    found = {(f["case"], f["check"], tuple(f["labels"])) for f in document["findings"]}
    assert found == _expected(cases)
    assert document["audit"]["version"] == 1 and document["audit"]["checks"] == list(CHECKS)
    for case in flagged:  # one line per finding on stdout, naming the case
        assert case in done.stdout
    assert "findings per check: order 5, gap 1, fragments 1, size 1, overlap 1" in done.stdout
    assert f"recorded the findings in {path}" in done.stdout
    assert sorted(p.name for p in out.glob("*.png")) == sorted(picture_name(c) for c in flagged)
    for case in flagged:
        height, width = _png(out / picture_name(case))
        assert height > 500 and width > 500
    page = (out / "index.html").read_text()
    for finding in document["findings"]:
        assert html.escape(finding["detail"]) in page
    for case in flagged:
        assert f'href="{urllib.parse.quote(picture_name(case))}"' in page
    # the record: info prints the counts per check, the loaders' filter sees the cases
    assert flagged_cases(path) == set(flagged)
    picture, plain = tmp_path / "show.png", tmp_path / "plain.png"
    info, shown, shown_plain = cli_each(  # read-only: one child for the three
        ("info", path),
        ("show", path, flagged[0], picture, "--audit"),
        ("show", path, flagged[0], plain),
    )
    assert info.returncode == 0, info.stderr
    assert "audit: 30 of 30 cases audited" in info.stdout
    assert "findings per check: order 5, gap 1, fragments 1, size 1, overlap 1" in info.stdout
    errors = sum(f["severity"] == "error" for f in document["findings"])
    warnings = len(document["findings"]) - errors
    assert (errors, warnings) == (8, 1)  # only size and a small island are warnings
    assert "9 cases flagged (8 errors, 1 warning)" in info.stdout
    # show --audit circles the flagged labels and writes the findings under the picture
    assert shown.returncode == 0, shown.stderr
    assert shown_plain.returncode == 0, shown_plain.stderr
    assert _png(picture)[0] > _png(plain)[0]  # the notes under the panels


def test_audit_json_to_stdout_and_chosen_checks(flagged_store) -> None:  # type: ignore[no-untyped-def]
    path, cases = flagged_store
    done = cli("audit", path, "--json", "-", "--check", "gap", "--check", "order", "--no-record")
    assert done.returncode == 1, done.stderr
    document = json.loads(done.stdout)  # stdout is the JSON alone
    assert {f["check"] for f in document["findings"]} == {"gap", "order"}
    expected = {e for e in _expected(cases) if e[1] in ("gap", "order")}
    assert {(f["case"], f["check"], tuple(f["labels"])) for f in document["findings"]} == expected
    assert not (path / RECORD_KEY).exists()


def test_show_audit_without_a_record_is_one_error_line(store: Path, tmp_path: Path) -> None:
    case = ctspine_zarr.open(store).ctspine.case_ids()[0]
    done = cli("show", store, case, tmp_path / "x.png", "--audit")
    (line, *_) = error_lines(done, "show")
    assert "no audit recorded" in line and "ctspine-zarr audit" in line
    assert not (tmp_path / "x.png").exists()


def test_the_picture_shows_every_label_and_circles_the_problem(defect_tree) -> None:  # type: ignore[no-untyped-def]
    _, path, cases = defect_tree
    case = next(c for c in cases if c.defects and c.defects[0].kind == "gap")
    projection = label_projection(path, case.case_id)
    label = ctspine_zarr.open(path).ctspine.label(case.case_id).values
    # seen from the patient's left: the first label along x, for every (z, y)
    first = np.argmax(label != 0, axis=2)
    expected = np.take_along_axis(label, first[..., None], axis=2)[..., 0]
    np.testing.assert_array_equal(projection, np.where((label != 0).any(axis=2), expected, 0))
    findings = audit_store(path, cases=[case.case_id]).findings
    (mark,) = finding_marks(findings, set(np.unique(projection)) - {0})
    (missing,) = case.defects[0].labels
    assert mark.text.startswith("gap:") and mark.flagged == ()
    order = [v for v in ANATOMICAL_ORDER if v in set(np.unique(projection))]
    rank = {v: i for i, v in enumerate(ANATOMICAL_ORDER)}
    above = [v for v in order if rank[v] < rank[missing]][-1]
    below = [v for v in order if rank[v] > rank[missing]][0]
    assert mark.labels == (above, below)  # the labelled vertebrae around the gap


def test_synth_defects_from_the_command_line(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    done = cli(
        "synth", raw, "--cases", "6", "--shape", "48", "48", "--slices", "30", "50",
        "--defects", "gap", "order:1",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    listed = json.loads((raw / "metadata" / "defects.json").read_text())
    assert sorted(d["kind"] for d in listed) == ["gap", "order"]
    assert "gap defect in" in done.stdout and "order defect in" in done.stdout
    (line, *_) = error_lines(cli("synth", tmp_path / "b", "--defects", "shape"), "synth")
    assert "defect must be one of order, gap, fragments, size, overlap or all" in line, line


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        (["order:x"], "argument --defects: defect 'order:x': the case index must be a whole"),
        (["order:9"], "error: defect order:9: the tree has cases 0 to 5"),
        (["order:1", "gap:1"], "error: case 1 gets two defects (order and gap)"),
    ],
)
def test_synth_refuses_defects_it_cannot_place(
    specs: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["synth", str(tmp_path), "--cases", "6", "--shape", "16", "16", "--defects", *specs]
    try:
        code = main(args)
    except SystemExit as stopped:  # argparse's usage error
        code = int(stopped.code or 0)
    assert code == 2
    assert message in capsys.readouterr().err


def test_defects_are_deterministic_and_leave_the_images_alone(tmp_path: Path) -> None:
    shape = {"n_cases": 5, "shape": (48, 48), "n_slices": (30, 50), "seed": 3}
    clean = make_raw_tree(tmp_path / "a", **shape)  # type: ignore[arg-type]
    broken = make_raw_tree(tmp_path / "b", defects=["gap:2"], **shape)  # type: ignore[arg-type]
    for a, b in zip(clean, broken, strict=True):
        assert a.case_id == b.case_id
        assert a.image_path.read_bytes() == b.image_path.read_bytes()
        same = a.label_path.read_bytes() == b.label_path.read_bytes()
        assert same == (not b.defects)
    assert [bool(c.defects) for c in broken] == [False, False, True, False, False]
    again = make_raw_tree(tmp_path / "c", defects=["gap:2"], **shape)  # type: ignore[arg-type]
    assert again[2].label_path.read_bytes() == broken[2].label_path.read_bytes()


def test_an_audit_of_a_store_on_s3_records_its_findings(defect_tree, s3) -> None:  # type: ignore[no-untyped-def]
    import s3fs

    _, path, cases = defect_tree
    bucket, options, _ = s3
    fs = s3fs.S3FileSystem(**options)
    fs.put(str(path) + "/", f"{bucket.removeprefix('s3://')}/s.zarr/", recursive=True)
    url = f"{bucket}/s.zarr"
    result = audit_store(url, storage_options=options, workers=2, record=True)
    assert {(f.case, f.check, f.labels) for f in result.findings} == _expected(cases)
    ds = ctspine_zarr.open(url, storage_options=options)
    flagged = {c.case_id for c in cases if c.defects}
    assert flagged_cases(ds) == flagged
    assert set(ds.ctspine.case_ids()) - set(ds.ctspine.case_ids(exclude_flagged=True)) == flagged
    assert len(read_findings(url, storage_options=options)) == len(result.findings)


def test_over_http_the_record_is_read_and_never_written(flagged_store) -> None:  # type: ignore[no-untyped-def]
    from ctspine_zarr.io.serve import serve_directory

    path, cases = flagged_store
    gap_case = next(c.case_id for c in cases if c.defects and c.defects[0].kind == "gap")
    audit_store(path, checks="gap", record=True)
    before = (path / RECORD_KEY).read_bytes()
    with serve_directory(path.parent) as server:
        url = f"{server.url}/{path.name}"
        assert flagged_cases(url) == {gap_case}
        ds = ctspine_zarr.open(url)
        assert set(ds.ctspine.case_ids()) - set(ds.ctspine.case_ids(exclude_flagged=True)) == {
            gap_case
        }
        done = cli("audit", url, "--check", "order", "--quiet")
        assert done.returncode == 1, done.stderr
        assert f"the findings are not recorded: {url} is read-only over HTTP" in done.stdout
    assert (path / RECORD_KEY).read_bytes() == before
