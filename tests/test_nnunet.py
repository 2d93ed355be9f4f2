"""nnU-Net v2: the raw dataset export, its reruns, and its fingerprint, checked by nnU-Net."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import ctspine_zarr
from ctspine_zarr.cli import main
from ctspine_zarr.nnunet import dataset_folder_name, export_nnunet, nnunet_fingerprint
from ctspine_zarr.nnunet.export import MANIFEST
from ctspine_zarr.testing.synthetic import SyntheticCase

SECTION = {"trainset": "train", "test_public": "validation", "test_private": "test"}


@pytest.fixture(scope="module")
def exported(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session store exported with every split (unassigned cases as training data)."""
    out = tmp_path_factory.mktemp("nnunet_raw")
    splits = ("train", "validation", "test", "unassigned")
    export_nnunet(store, out, dataset_id=501, splits=splits, workers=2, fingerprint=True)
    return out / "Dataset501_CTSpine1K"


def test_the_raw_layout_and_dataset_json(
    exported: Path, raw_tree: tuple[Path, list[SyntheticCase]]
) -> None:
    cases = raw_tree[1]
    split = {c.case_id: SECTION.get(c.split, "unassigned") for c in cases}
    training = sorted(c for c, s in split.items() if s != "test")
    test = sorted(c for c, s in split.items() if s == "test")
    names = lambda folder, suffix: sorted(p.name for p in (exported / folder).iterdir())  # noqa: E731
    assert names("imagesTr", "") == sorted(f"{c}_0000.nii.gz" for c in training)
    assert names("labelsTr", "") == sorted(f"{c}.nii.gz" for c in training)
    assert names("imagesTs", "") == sorted(f"{c}_0000.nii.gz" for c in test)
    assert names("labelsTs", "") == sorted(f"{c}.nii.gz" for c in test)
    meta = json.loads((exported / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "CT"} and meta["file_ending"] == ".nii.gz"
    assert meta["numTraining"] == len(training)
    assert meta["labels"]["background"] == 0 and meta["labels"]["L3"] == 22
    assert meta["labels"]["T13"] == 28 and sorted(meta["labels"].values()) == list(range(29))
    (fold,) = json.loads((exported / "splits_final.json").read_text())
    assert fold["val"] == sorted(c for c, s in split.items() if s == "validation")
    assert sorted(fold["train"] + fold["val"]) == training and not set(fold["train"]) & set(
        fold["val"]
    )
    # each file is the source NIfTI back: header, voxel order, values
    for case in cases:
        folder = "Ts" if split[case.case_id] == "test" else "Tr"
        for source, path in (
            (case.image_path, exported / f"images{folder}" / f"{case.case_id}_0000.nii.gz"),
            (case.label_path, exported / f"labels{folder}" / f"{case.case_id}.nii.gz"),
        ):
            a, b = nib.load(source), nib.load(path)
            assert a.header.binaryblock == b.header.binaryblock
            np.testing.assert_array_equal(np.asanyarray(a.dataobj), np.asanyarray(b.dataobj))
    assert not list(exported.rglob(".*.part"))


def test_reruns_resume_and_remove_only_their_own_files(store: Path, tmp_path: Path) -> None:
    first = export_nnunet(store, tmp_path, dataset_id=7, name="Spine", workers=2)
    folder = tmp_path / "Dataset007_Spine"
    assert first.folder == folder and first.written == 2 * (len(first.training) + len(first.test))
    again = export_nnunet(store, tmp_path, dataset_id=7, name="Spine")
    assert (again.written, again.kept, again.removed) == (0, first.written, 0)
    victim = next((folder / "labelsTr").iterdir())
    victim.unlink()
    (folder / "imagesTr" / ".x_0000.nii.gz.0123.part").write_bytes(b"half")  # a stopped run's
    repaired = export_nnunet(store, tmp_path, dataset_id=7, name="Spine")
    assert (repaired.written, repaired.kept) == (1, first.written - 1) and victim.exists()
    assert not list(folder.rglob("*.part"))
    # fewer splits: the files of the others go, the validation fold too
    narrow = export_nnunet(store, tmp_path, dataset_id=7, name="Spine", splits=["train"])
    assert narrow.removed == first.written - 2 * len(narrow.training) and narrow.written == 0
    assert not (folder / "splits_final.json").exists() and not narrow.test
    assert json.loads((folder / "dataset.json").read_text())["numTraining"] == len(narrow.training)
    recorded = json.loads((folder / MANIFEST).read_text())["files"]
    assert sorted(recorded) == sorted(str(p.relative_to(folder)) for p in folder.rglob("*.nii.gz"))
    # a file the export did not write is never deleted: the export refuses the folder
    stranger = folder / "imagesTr" / "mine_0000.nii.gz"
    stranger.write_bytes(b"not ours")
    with pytest.raises(ValueError, match=r"holds 1 file\(s\) this export did not write"):
        export_nnunet(store, tmp_path, dataset_id=7, name="Spine")
    assert stranger.read_bytes() == b"not ours"
    stranger.unlink()
    overwritten = export_nnunet(store, tmp_path, dataset_id=7, name="Spine", overwrite=True)
    assert overwritten.written == first.written  # the narrow run's files were rewritten too
    assert overwritten.removed == 2 * len(narrow.training)


def test_bad_ids_names_and_splits_are_refused(store: Path, tmp_path: Path) -> None:
    assert dataset_folder_name(1, "A-b_2") == "Dataset001_A-b_2"
    for bad in (0, 1000, True):
        with pytest.raises(ValueError, match="from 1 to 999"):
            dataset_folder_name(bad, "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="letters, digits"):
        dataset_folder_name(5, "CT Spine")
    with pytest.raises(ValueError, match=r"unknown split\(s\) \['trainset'\]"):
        export_nnunet(store, tmp_path, dataset_id=5, splits=["trainset"])
    with pytest.raises(ValueError, match="give a local OUT"):
        export_nnunet(store, "s3://bucket/raw", dataset_id=5)


def test_the_command(store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["export-nnunet", str(store), str(tmp_path), "--dataset-id", "42", "--quiet"]
    assert main([*argv, "--name", "Tiny", "--split", "train", "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert (
        f"{tmp_path / 'Dataset042_Tiny'}: " in out and "nnUNetv2_plan_and_preprocess -d 42" in out
    )
    for bad, message in (
        (["--dataset-id", "1000"], "--dataset-id: must be a whole number from 1 to 999"),
        ([], "the following arguments are required: --dataset-id"),
    ):
        with pytest.raises(SystemExit) as stop:  # a usage error: one line, exit code 2
            main(["export-nnunet", str(store), str(tmp_path), *bad])
        assert stop.value.code == 2 and message in capsys.readouterr().err


def _file_fingerprint(exported: Path) -> tuple[list[list[float]], list[list[int]], float]:
    """Spacings, cropped shapes and median relative size read from the files with nibabel.

    SimpleITK's array is the file's voxel axes reversed; nnU-Net crops to the box of the
    nonzero image voxels.
    """
    spacings, shapes, relative = [], [], []
    for path in sorted((exported / "imagesTr").iterdir()):
        image = nib.load(path)
        data = np.asanyarray(image.dataobj)
        box = [
            np.flatnonzero((data != 0).any(axis=tuple(a for a in range(3) if a != k)))
            for k in range(3)
        ]
        cropped = [int(b[-1] - b[0] + 1) for b in box]
        spacings.append([float(z) for z in image.header.get_zooms()[:3]][::-1])
        shapes.append(cropped[::-1])
        relative.append(math.prod(cropped) / math.prod(data.shape))
    return spacings, shapes, float(np.median(relative))


def test_the_fingerprint_reads_spacing_and_crop_as_nnunet_does(exported: Path, store: Path) -> None:
    """The geometric keys, from the exported files themselves (no nnU-Net needed)."""
    ours = json.loads((exported / "dataset_fingerprint.json").read_text())
    spacings, shapes, median = _file_fingerprint(exported)
    np.testing.assert_allclose(ours["spacings"], spacings, rtol=1e-7)
    assert ours["shapes_after_crop"] == shapes
    assert ours["median_relative_size_after_cropping"] == pytest.approx(median)
    with pytest.raises(ValueError, match="at least one training case"):
        nnunet_fingerprint(store, [])


NNUNET = """
import json, sys
from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity
from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import (
    DatasetFingerprintExtractor,
)
if __name__ == "__main__":
    verify_dataset_integrity(sys.argv[1], num_processes=1)
    extractor = DatasetFingerprintExtractor(int(sys.argv[2]), num_processes=1)
    extractor.show_progress_bar = False
    fingerprint = extractor.run(overwrite_existing=True)
    print("FINGERPRINT " + json.dumps(fingerprint, default=lambda v: v.item()))
"""


def _mixture_percentile(per_case: list[np.ndarray], q: float) -> float:
    """Percentile ``q`` of the mixture nnU-Net samples: every case weighs the same."""
    values = np.concatenate(per_case).astype(np.float64)
    weights = np.concatenate([np.full(v.size, 1.0 / v.size) for v in per_case])
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order]) / len(per_case)
    return float(values[order][np.searchsorted(cumulative, q / 100.0)])


def test_nnunet_verifies_the_export_and_extracts_the_same_fingerprint(
    exported: Path, tmp_path: Path
) -> None:
    pytest.importorskip("nnunetv2", reason="nnU-Net v2 is not installed (pip install '.[nnunet]')")
    env = {
        **os.environ,
        "nnUNet_raw": str(exported.parent),
        "nnUNet_preprocessed": str(tmp_path / "preprocessed"),
        "nnUNet_results": str(tmp_path / "results"),
    }
    done = subprocess.run(
        [sys.executable, "-c", NNUNET, str(exported), "501"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "verify_dataset_integrity Done" in done.stdout
    theirs = json.loads(done.stdout.split("FINGERPRINT ", 1)[1])
    ours = json.loads((exported / "dataset_fingerprint.json").read_text())
    assert set(ours) == set(theirs)
    np.testing.assert_allclose(ours["spacings"], theirs["spacings"], rtol=1e-7)
    assert ours["shapes_after_crop"] == theirs["shapes_after_crop"]
    assert ours["median_relative_size_after_cropping"] == pytest.approx(
        theirs["median_relative_size_after_cropping"]
    )
    mine, nnunet = (f["foreground_intensity_properties_per_channel"]["0"] for f in (ours, theirs))
    assert set(mine) == set(nnunet)
    # the draws differ (voxel order) but not their distribution: compare within what 10e7
    # draws allow, 5 standard errors; min and max are met by so many draws per case
    images = sorted((exported / "imagesTr").iterdir())
    per_case = []
    for image in images:
        label = exported / "labelsTr" / image.name.replace("_0000.nii.gz", ".nii.gz")
        values = np.asanyarray(nib.load(image).dataobj)[np.asanyarray(nib.load(label).dataobj) > 0]
        per_case.append(values)
    n = 10e7 // len(images) * len(images)
    sigma = nnunet["std"]
    assert mine["min"] == nnunet["min"] and mine["max"] == nnunet["max"]
    assert abs(mine["mean"] - nnunet["mean"]) <= 5 * sigma * math.sqrt(2 / n)
    assert abs(mine["std"] - nnunet["std"]) <= 5 * sigma * math.sqrt(2 / n)
    for key, q in (("percentile_00_5", 0.5), ("median", 50.0), ("percentile_99_5", 99.5)):
        spread = 5 * math.sqrt(2 * (q / 100) * (1 - q / 100) / n) * 100
        lo, hi = (
            _mixture_percentile(per_case, q - spread),
            _mixture_percentile(per_case, q + spread),
        )
        assert lo <= mine[key] <= hi and lo <= nnunet[key] <= hi, (key, lo, hi)
    assert ctspine_zarr.__version__
