"""A store as an nnU-Net v2 raw dataset: ``ctspine-zarr export-nnunet STORE OUT --dataset-id 501``.

The export writes ``OUT/Dataset501_CTSpine1K/``::

    dataset.json           channel_names {"0": "CT"}, the VerSe labels, numTraining, file_ending
    imagesTr/<case>_0000.nii.gz, labelsTr/<case>.nii.gz     the train and validation cases
    imagesTs/<case>_0000.nii.gz, labelsTs/<case>.nii.gz     the test cases
    splits_final.json      one fold: train = the train cases, val = the validation cases
    dataset_fingerprint.json   with ``fingerprint=True`` (:func:`nnunet_fingerprint`)

The official split decides: ``train`` and ``validation`` cases are nnU-Net's training data,
and ``splits_final.json`` keeps the validation cases apart (nnU-Net's planner copies it to
``nnUNet_preprocessed``, and training fold 0 then validates on them); ``test`` cases go to
``imagesTs`` (their labels to ``labelsTs``, which nnU-Net does not read). ``unassigned`` cases
are training data when asked for. Each file is the case's source NIfTI as
:func:`ctspine_zarr.io.export.to_nifti` writes it back: the original header, voxel order and
values, which nnU-Net reads with SimpleITK (pinned in ``dataset.json``).

The files are written in parallel (:func:`ctspine_zarr.parallel.run_tasks`), each through a
hidden temporary file renamed into place, so a file that exists is complete. A rerun writes
only what is missing, and rewrites the files of cases whose store content changed;
``.ctspine-export.json`` records which files the export wrote and from what, so that it never
deletes a file it did not write, and refuses a folder holding NIfTI files of someone else.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from .._version import __version__
from ..io.store import case_group, is_url, open_catalogue
from ..parallel import progress_bar, run_tasks
from ..schema import SHARD_CRC_KEY, SPLITS
from ..vertebrae import VERTEBRA_NAMES

__all__ = ["DEFAULT_SPLITS", "MANIFEST", "NnunetExport", "dataset_folder_name", "export_nnunet"]

#: The splits exported by default: training data (train, validation) and the test cases.
DEFAULT_SPLITS: Final = ("train", "validation", "test")
#: What the export records of the files it wrote, in the dataset folder.
MANIFEST: Final = ".ctspine-export.json"
FILE_ENDING: Final = ".nii.gz"
_FOLDERS: Final = ("imagesTr", "labelsTr", "imagesTs", "labelsTs")
_NAME: Final = re.compile(r"^[A-Za-z0-9_\-]+$")


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """nnU-Net's folder name of a dataset: ``Dataset501_CTSpine1K``.

    Raises
    ------
    ValueError
        For an id outside 1-999 or a name with other characters than letters, digits,
        ``_`` and ``-``.
    """
    if isinstance(dataset_id, bool) or not isinstance(dataset_id, int) or not 0 < dataset_id < 1000:
        raise ValueError(
            f"the dataset id must be a whole number from 1 to 999, but is {dataset_id!r}"
        )
    if not _NAME.match(name):
        raise ValueError(f"the dataset name may hold letters, digits, _ and -, but is {name!r}")
    return f"Dataset{dataset_id:03d}_{name}"


@dataclass
class NnunetExport:
    """What :func:`export_nnunet` did.

    Attributes
    ----------
    folder
        The dataset folder (``OUT/Dataset501_CTSpine1K``).
    training, validation, test
        The case ids in ``imagesTr`` (validation among them) and in ``imagesTs``.
    written, kept, removed
        Files written now, found complete from an earlier run, and removed (ours, stale).
    seconds
        Wall time.
    unexpected_labels
        Cases whose label map holds values other than 0-28 (nnU-Net refuses them).
    fingerprint
        The ``dataset_fingerprint.json`` written, if asked for.
    """

    folder: Path
    training: list[str]
    validation: list[str]
    test: list[str]
    written: int = 0
    kept: int = 0
    removed: int = 0
    seconds: float = 0.0
    unexpected_labels: dict[str, list[int]] = field(default_factory=dict)
    fingerprint: Path | None = None

    def summary(self) -> str:
        """A few lines: the folder, the cases, the files, the next nnU-Net command."""
        kept_apart = (
            f" ({len(self.validation)} of them validation, kept apart in splits_final.json)"
            if self.validation
            else ""
        )
        lines = [
            f"{self.folder}: {len(self.training)} training cases{kept_apart}, "
            f"{len(self.test)} test cases",
            f"{self.written} files written, {self.kept} kept from an earlier run, "
            f"{self.removed} stale removed in {self.seconds:.1f} s",
        ]
        if self.fingerprint is not None:
            lines.append(
                f"fingerprint: {self.fingerprint} (copy it to $nnUNet_preprocessed/"
                f"{self.folder.name}/ to skip nnUNetv2_extract_fingerprint)"
            )
        for case, values in sorted(self.unexpected_labels.items()):
            lines.append(f"warning: case {case!r} has label values {values} outside 0-28")
        dataset_id = int(self.folder.name[len("Dataset") : len("Dataset") + 3])
        lines.append(
            f"next: nnUNet_raw={self.folder.parent} nnUNetv2_plan_and_preprocess "
            f"-d {dataset_id} --verify_dataset_integrity"
        )
        return "\n".join(lines)


def _identity(attrs: Any) -> str:
    """What a case's exported files are made from: source checksums and shard indexes."""
    files = attrs.get("files") or {}
    sources = {k: (v or {}).get("sha256") for k, v in dict(files).items()}
    payload = json.dumps([sources, attrs.get(SHARD_CRC_KEY)], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def _write_json(path: Path, payload: Any) -> None:
    """Write ``payload`` as JSON to ``path`` through a hidden file renamed into place."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
    try:
        tmp.write_text(json.dumps(payload, indent=2) + "\n", "utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _dataset_json(name: str, location: str, n_training: int) -> dict[str, Any]:
    return {
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, **{VERTEBRA_NAMES[v]: v for v in sorted(VERTEBRA_NAMES)}},
        "numTraining": n_training,
        "file_ending": FILE_ENDING,
        "name": name,
        "description": "CTSpine1K vertebra segmentation (VerSe labels), exported from a "
        f"ctspine_zarr store: {location}",
        "reference": "CTSpine1K, https://github.com/MIRACLE-Center/CTSpine1K",
        "overwrite_image_reader_writer": "SimpleITKIO",
        "converted_by": f"ctspine_zarr {__version__}",
    }


def _plan(catalogue: Any, splits: Sequence[str]) -> tuple[list[str], list[str], list[str]]:
    """Training (train, validation, unassigned asked for), validation and test case ids."""
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown:
        raise ValueError(f"unknown split(s) {unknown}; the splits are {list(SPLITS)}")
    by_split = {s: list(catalogue.ctspine.case_ids(split=s)) for s in dict.fromkeys(splits)}
    training = [c for s in by_split if s != "test" for c in by_split[s]]
    return training, by_split.get("validation", []), by_split.get("test", [])


def _files(training: list[str], test: list[str]) -> dict[str, tuple[str, bool]]:
    """Relative path of every file to write: ``(case, is the label map)``."""
    files: dict[str, tuple[str, bool]] = {}
    for cases, images, labels in (
        (training, "imagesTr", "labelsTr"),
        (test, "imagesTs", "labelsTs"),
    ):
        for case in cases:
            files[f"{images}/{case}_0000{FILE_ENDING}"] = (case, False)
            files[f"{labels}/{case}{FILE_ENDING}"] = (case, True)
    return files


def _claim(folder: Path, owned: dict[str, str]) -> None:
    """Drop our leftover temporary files; refuse NIfTI files the export did not write."""
    foreign = []
    for sub in _FOLDERS:
        for path in sorted((folder / sub).glob("*")) if (folder / sub).is_dir() else []:
            rel = f"{sub}/{path.name}"
            if path.name.startswith(".") and path.name.endswith(".part"):
                path.unlink(missing_ok=True)  # a temporary file of a run that was stopped
            elif rel not in owned:
                foreign.append(rel)
    if foreign:
        raise ValueError(
            f"{folder}: holds {len(foreign)} file(s) this export did not write "
            f"({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}); nnU-Net would "
            "count them as cases. Export into another OUT, or move them away"
        )


def export_nnunet(
    store: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    dataset_id: int,
    name: str = "CTSpine1K",
    splits: Sequence[str] = DEFAULT_SPLITS,
    storage_options: dict[str, Any] | None = None,
    scheduler: Any = "threads",
    workers: int | None = None,
    overwrite: bool = False,
    fingerprint: bool = False,
    progress: bool = False,
) -> NnunetExport:
    """Write the cases of ``splits`` as the nnU-Net v2 raw dataset ``OUT/DatasetNNN_NAME``.

    Parameters
    ----------
    store
        Local path or fsspec URL of the store.
    out
        Local folder (nnU-Net's ``nnUNet_raw``) to write the dataset folder into.
    dataset_id
        nnU-Net's dataset id, 1-999.
    name
        The dataset name (letters, digits, ``_``, ``-``).
    splits
        The splits to export: ``train``, ``validation`` and ``unassigned`` become training
        data (validation kept apart by ``splits_final.json``), ``test`` goes to ``imagesTs``.
    storage_options
        fsspec options for a URL store.
    scheduler, workers
        Where the files are written (:mod:`ctspine_zarr.parallel`); threads by default.
    overwrite
        Rewrite every file, not only the missing or changed ones.
    fingerprint
        Also write ``dataset_fingerprint.json`` (:func:`nnunet_fingerprint`).
    progress
        Show a progress bar on stderr.

    Returns
    -------
    NnunetExport

    Raises
    ------
    ValueError
        For a bad id, name or split, a URL as ``out``, or a dataset folder holding NIfTI
        files this export did not write.
    """
    started = time.perf_counter()
    folder_name = dataset_folder_name(dataset_id, name)
    if is_url(out):
        raise ValueError(f"{out}: nnU-Net reads a local folder; give a local OUT")
    location = os.fspath(store)
    catalogue = open_catalogue(location, storage_options=storage_options)
    training, validation, test = _plan(catalogue, splits)
    result = NnunetExport(Path(out) / folder_name, training, validation, test)
    planned = _files(training, test)
    attrs: dict[str, Any] = {
        case: case_group(location, case, storage_options=storage_options).attrs
        for case in dict.fromkeys(case for case, _ in planned.values())
    }
    todo = _prepare(result, location, planned, attrs, overwrite)
    tasks = _tasks(todo, planned, attrs, location, result.folder, storage_options)
    bar = progress_bar(len(tasks), desc="export-nnunet", unit="file", enabled=progress)
    try:
        run_tasks(tasks, scheduler=scheduler, workers=workers, on_done=bar.update)
    finally:
        bar.close()
    result.written = len(tasks)
    _write_metadata(result, name, location)
    result.unexpected_labels = {
        case: sorted(int(v) for v in case_attrs.get("other_label_values") or {})
        for case, case_attrs in attrs.items()
        if case_attrs.get("other_label_values")
    }
    if fingerprint and training:
        from .fingerprint import nnunet_fingerprint

        payload = nnunet_fingerprint(
            location,
            training,
            storage_options=storage_options,
            scheduler=scheduler,
            workers=workers,
            progress=progress,
        )
        result.fingerprint = result.folder / "dataset_fingerprint.json"
        _write_json(result.fingerprint, payload)
    result.seconds = time.perf_counter() - started
    return result


def _prepare(
    result: NnunetExport,
    location: str,
    planned: dict[str, tuple[str, bool]],
    attrs: dict[str, Any],
    overwrite: bool,
) -> list[str]:
    """Make the folders, remove our stale files, record the plan; return the files to write.

    A file is stale when the export wrote it (the manifest says so) and it is no longer
    planned, or its case changed in the store since (or ``overwrite``). The new manifest is
    written before any file: from then on every file that exists is complete and current.
    """
    folder = result.folder
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / MANIFEST
    previous = json.loads(manifest.read_text("utf-8")) if manifest.exists() else {}
    owned: dict[str, str] = dict(previous.get("files", {}))
    _claim(folder, owned)
    wanted = {rel: _identity(attrs[case]) for rel, (case, _) in planned.items()}
    for rel, identity in owned.items():
        path = folder / rel
        if path.exists() and (overwrite or wanted.get(rel) != identity):
            path.unlink()
            result.removed += 1
    _write_json(manifest, {"store": location, "files": {**owned, **wanted}})
    for sub in _FOLDERS:
        (folder / sub).mkdir(exist_ok=True)
    todo = [rel for rel in planned if not (folder / rel).exists()]
    result.kept = len(planned) - len(todo)
    return todo


def _write_metadata(result: NnunetExport, name: str, location: str) -> None:
    """The manifest of the files now written, dataset.json and splits_final.json."""
    folder = result.folder
    wanted = json.loads((folder / MANIFEST).read_text("utf-8"))["files"]
    keep = {rel: identity for rel, identity in wanted.items() if (folder / rel).exists()}
    _write_json(folder / MANIFEST, {"store": location, "files": keep})
    _write_json(folder / "dataset.json", _dataset_json(name, location, len(result.training)))
    splits_path = folder / "splits_final.json"
    validation = set(result.validation)
    if validation and len(validation) < len(result.training):
        train = sorted(c for c in result.training if c not in validation)
        _write_json(splits_path, [{"train": train, "val": sorted(validation)}])
    elif splits_path.exists():
        splits_path.unlink()


def _tasks(
    todo: list[str],
    planned: dict[str, tuple[str, bool]],
    attrs: dict[str, Any],
    location: str,
    folder: Path,
    storage_options: dict[str, Any] | None,
) -> list[Any]:
    """One delayed write per file, the largest cases with the highest keys (they start first)."""
    from dask.delayed import delayed

    from ..io.export import to_nifti

    def size(rel: str) -> int:
        shape = attrs[planned[rel][0]].get("shape_zyx") or [0]
        n = 1
        for d in shape:
            n *= int(d)
        return n

    ordered = sorted(todo, key=lambda rel: (size(rel), rel))
    return [
        delayed(to_nifti, pure=False)(
            location,
            planned[rel][0],
            folder / rel,
            label=planned[rel][1],
            storage_options=storage_options,
            dask_key_name=f"export-nnunet-{rank:07d}",
        )
        for rank, rel in enumerate(ordered)
    ]
