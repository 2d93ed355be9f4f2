"""The ctspine-zarr command: each subcommand invoked as a user would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from clirun import ingest_command

from ctspine_zarr.cli import main


def test_synth_ingest_info(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw, store = tmp_path / "raw", tmp_path / "s.zarr"
    assert (
        main(["synth", str(raw), "--cases", "2", "--shape", "24", "24", "--slices", "8", "10"]) == 0
    )
    assert "wrote 2 cases" in capsys.readouterr().out
    assert main(["ingest", str(raw), str(store), "--workers", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "2 ingested" in out and "bytes" in out and "slices" in out
    assert main(["info", str(store)]) == 0
    out = capsys.readouterr().out
    assert "2 cases" in out and "COLONOG" in out


def test_ingest_exits_1_and_names_a_refused_case(tmp_path: Path, capsys) -> None:
    raw, store = tmp_path / "raw", tmp_path / "s.zarr"
    main(["synth", str(raw), "--cases", "2", "--shape", "16", "16", "--slices", "8", "9"])
    label = next((raw / "rawdata" / "labels").rglob("*_seg.nii.gz"))
    label.unlink()
    capsys.readouterr()
    assert main(["ingest", str(raw), str(store), "--workers", "1", "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "refused" in out and label.name.removesuffix("_seg.nii.gz") in out


def test_errors_exit_2_with_a_message(tmp_path: Path, capsys) -> None:
    assert main(["info", str(tmp_path / "missing.zarr")]) == 2
    assert "no Zarr v3 store" in capsys.readouterr().err
    assert main(["ingest", str(tmp_path), str(tmp_path / "s.zarr")]) == 2
    assert "rawdata/volumes" in capsys.readouterr().err


def test_console_script_runs_without_warnings(tmp_path: Path) -> None:
    raw, store = tmp_path / "raw", tmp_path / "s.zarr"
    exe = Path(sys.executable).with_name("ctspine-zarr")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "ctspine_zarr.cli"]
    subprocess.run(
        [*command, "synth", str(raw), "--cases", "2", "--shape", "16", "16", "--slices", "8", "9"],
        check=True,
        capture_output=True,
    )
    done = subprocess.run(
        ingest_command(raw, store, workers=2, quiet=False, python_flags=["-W", "error"]),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr and "warn" not in done.stderr.lower()
    assert "ingest:" in done.stderr  # the progress bar
    opened = subprocess.run(
        [
            sys.executable,
            "-W",
            "error",
            "-c",
            f"import xarray as xr, ctspine_zarr; ds = xr.open_zarr({str(store)!r}); "
            "print(ds.ctspine.slice(ds.ctspine.case_ids()[0], 0).image.values.shape)",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert opened.returncode == 0, opened.stderr
    assert opened.stdout.strip() == "(16, 16)"
    assert opened.stderr == ""
