"""The check ``verify --against`` makes: every case of the raw tree against its source files.

:func:`check_against` compares the raw tree's cases with the store's: each must be in the
store and equal its source files voxel for voxel (image and label), header bytes and
geometry included. Problems go to the
:class:`~ctspine_zarr.write.verifyreport.VerifyReport`, never raised.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import zarr

from ..errors import InvalidCaseError
from ..io.layout import RawCase, find_cases
from ..io.nifti import CanonicalVolume, read_case
from ..parallel import with_progress
from ..schema import IMAGE, IMAGE_HEADER, LABEL, LABEL_HEADER
from .case import geometry_attrs
from .verifyreport import WARNING, VerifyReport

__all__ = ["check_against"]


def _compare_volume(
    report: VerifyReport, case_id: str, name: str, array: zarr.Array, source: CanonicalVolume
) -> bool:
    stored, expected = np.asarray(array[...]), source.data
    if (stored.shape, stored.dtype) != (expected.shape, expected.dtype):
        message = (
            f"shape {stored.shape} and dtype {stored.dtype}, the source gives "
            f"{expected.shape} and {expected.dtype}"
        )
        report.add(case_id, name, None, message, "source")
        return False
    differs = stored != expected
    if stored.dtype.kind == "f":
        differs &= ~(np.isnan(stored) & np.isnan(expected))
    if not differs.any():
        return True
    slices = np.flatnonzero(differs.reshape(differs.shape[0], -1).any(axis=1))
    message = f"{int(differs.sum())} voxel(s) on {slices.size} slice(s) differ from the source"
    report.add(case_id, name, int(slices[0]), message, "source")
    return False


def check_against(
    report: VerifyReport,
    complete: dict[str, dict[str, Any]],
    arrays: dict[str, dict[str, zarr.Array]],
    groups: set[str],
    raw: str,
    raw_storage_options: dict[str, Any] | None,
    progress: bool,
) -> None:
    """Compare every case of the raw tree ``raw`` with the store's complete cases.

    ``complete`` holds the complete cases' attrs, ``arrays`` their arrays, ``groups`` every
    case group (complete or not).
    """
    options = raw_storage_options or {}
    tree = find_cases(raw, storage_options=options)
    for case, problem in tree.problems:
        report.add(case.case_id, None, None, f"raw tree: {problem}", "source", WARNING)
    raw_ids = {c.case_id for c in tree.cases}
    for case_id in sorted(set(complete) - raw_ids):
        report.add(case_id, None, None, "in the store but not in the raw tree", "source", WARNING)
    for case in with_progress(tree.cases, progress, "against raw"):
        case_id = case.case_id
        if case_id not in complete:
            state = "an unfinished write" if case_id in groups else "missing"
            report.add(case_id, None, None, f"in the raw tree but {state} in the store", "missing")
            continue
        report.raw_cases_checked += 1
        try:
            _compare_case(report, case, complete[case_id], arrays.get(case_id, {}), options)
        except Exception as err:  # an unreadable case must not cost the other cases
            report.add(case_id, None, None, f"comparison failed: {err!r}", "unreadable")


def _compare_case(
    report: VerifyReport,
    case: RawCase,
    attrs: dict[str, Any],
    stored: dict[str, zarr.Array],
    options: dict[str, Any],
) -> None:
    """Compare one complete case with its source files: voxels, header bytes, geometry."""
    case_id = case.case_id
    try:
        image, label = read_case(case, options)
    except InvalidCaseError as err:
        report.add(case_id, None, None, f"source no longer ingests: {err}", "source")
        return
    if attrs.get("source") != case.source:
        message = f"source folder {case.source!r}, the store says {attrs.get('source')!r}"
        report.add(case_id, None, None, message, "source")
    same = True
    for name, header_name, volume in (
        (IMAGE, IMAGE_HEADER, image),
        (LABEL, LABEL_HEADER, label),
    ):
        if name in stored:
            same &= _compare_volume(report, case_id, name, stored[name], volume)
        if header_name in stored:
            header = np.asarray(stored[header_name][...], dtype=np.uint8).tobytes()
            if header != volume.header_bytes:
                same = False
                message = "differs from the source's header bytes"
                report.add(case_id, header_name, None, message, "source")
    for key, value in geometry_attrs(image).items():
        if attrs.get(key) != value:
            same = False
            report.add(case_id, None, None, f"attr {key} differs from the source", "source")
    files = attrs.get("files") or {}
    changed = [
        role
        for role, volume in (("image", image), ("label", label))
        if (files.get(role) or {}).get("sha256") != volume.fingerprint.sha256
    ]
    if changed and same:
        message = (
            f"{' and '.join(changed)} file(s) changed since the ingest (SHA-256) but hold "
            "the same voxels and header"
        )
        report.add(case_id, None, None, message, "source", WARNING)
