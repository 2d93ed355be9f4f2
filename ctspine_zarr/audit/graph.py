"""The dask graph of the audit, built from the catalogue before anything runs.

Per case, reading only what its checks need:

- an *index* task reads the case's own document (one request; the token of its sources and
  its affine) and, for ``overlap``, its per-slice index ``slice_vertebrae`` (one chunk);
- for ``order`` and ``fragments`` only, one *block* task per shard of the labelled slices
  reads the ``label`` map alone (never the image) through the lean slice reader and crops
  it to the box of all the case's vertebrae (the stored boxes say where);
- a *case* task runs the per-case checks on those and returns the case's findings.

``gap`` needs only the catalogue, and ``size`` (:mod:`ctspine_zarr.audit.size`) the whole
catalogue; neither reads a case. The graph runs through :func:`ctspine_zarr.parallel.run_tasks`
like the statistics (threads, processes, a new ``LocalCluster`` or a cluster's address).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr
import zarr
from dask.base import tokenize
from dask.delayed import Delayed, delayed

from ..io.auditrecord import case_token
from ..io.slicereader import case_readers, read_blocks
from ..io.store import case_group
from ..schema import CASE_DIM, SLICE_VERTEBRAE, SLICES_PER_SHARD
from ..selection import Names, Vertebrae, selected_ids
from ..vertebrae import VERTEBRA_LABELS
from .checks import Finding, check_fragments, check_gap, check_order, check_overlap
from .voxels import Box, label_pieces

__all__ = ["AuditGraph", "CaseJob", "CaseResult", "build_graph", "select_cases"]

#: The checks that read voxels.
VOXEL_CHECKS = frozenset({"order", "fragments"})


@dataclass(frozen=True)
class CaseJob:
    """What the catalogue says of one case: its shape, spacing and vertebra boxes."""

    case: str
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    boxes: dict[int, Box]

    def crop(self) -> Box | None:
        """The box of all the case's vertebrae (None: it has none)."""
        if not self.boxes:
            return None
        b = np.array(list(self.boxes.values()))
        lo, hi = b[:, :3].min(axis=0), b[:, 3:].max(axis=0)
        return (int(lo[0]), int(lo[1]), int(lo[2]), int(hi[0]), int(hi[1]), int(hi[2]))


@dataclass(frozen=True)
class CaseIndex:
    """What an index task read: the case's token, affine and (for ``overlap``) slice index."""

    token: str
    affine: np.ndarray
    slice_labels: np.ndarray | None


@dataclass(frozen=True)
class CaseResult:
    """A case task's result: the token of the version audited and its findings."""

    case: str
    token: str
    findings: list[Finding]


@dataclass
class AuditGraph:
    """The audit's dask graph, before it runs: one delayed result per case."""

    jobs: list[CaseJob]
    tasks: list[Delayed]
    checks: tuple[str, ...]
    blocks: int


def _index_task(
    location: Any, case: str, options: dict[str, Any] | None, with_slices: bool
) -> CaseIndex:
    group = case_group(location, case, storage_options=options)
    slices = None
    if with_slices:
        index = group[SLICE_VERTEBRAE]
        assert isinstance(index, zarr.Array)
        slices = np.asarray(index[...], dtype=bool)
    affine = np.asarray(group.attrs["affine"], dtype=np.float64)
    return CaseIndex(case_token(group.attrs), affine, slices)


def _block_task(
    location: Any, case: str, options: dict[str, Any] | None, z0: int, z1: int, crop: Box
) -> np.ndarray:
    readers = case_readers(location, case, options)
    (label,) = read_blocks([(readers.label, z0, z1, None)])
    return np.ascontiguousarray(label[:, crop[1] : crop[4], crop[2] : crop[5]])


def _case_task(
    index: CaseIndex,
    blocks: list[np.ndarray] | None,
    job: CaseJob,
    checks: tuple[str, ...],
    min_fragment_voxels: int,
) -> CaseResult:
    findings: list[Finding] = []
    if "gap" in checks:
        findings += check_gap(job.case, job.boxes)
    if "overlap" in checks:
        ranges = {v: (b[0], b[3]) for v, b in job.boxes.items()}
        findings += check_overlap(job.case, ranges, index.slice_labels)
    crop = job.crop()
    if blocks is not None and crop is not None:
        pieces = label_pieces(
            np.concatenate(blocks), crop[:3], job.boxes, job.spacing, min_fragment_voxels
        )
        if "order" in checks:
            affine = index.affine
            centres = {
                v: float(affine[2, :3] @ np.array(p.centroid[::-1]) + affine[2, 3])
                for v, p in pieces.items()
            }
            extents = {v: (b[3] - b[0]) * job.spacing[0] for v, b in job.boxes.items()}
            findings += check_order(job.case, centres, extents)
        if "fragments" in checks:
            findings += check_fragments(job.case, pieces, min_fragment_voxels)
    return CaseResult(job.case, index.token, findings)


def select_cases(
    catalogue: xr.Dataset,
    split: Names = None,
    cases: Sequence[str] | None = None,
    *,
    source: Names = None,
    vertebra: Vertebrae = None,
) -> list[str]:
    """The catalogue's cases to audit: the one selection (:mod:`ctspine_zarr.selection`).

    Raises
    ------
    CaseNotFoundError
        For a case the catalogue does not list.
    SelectionError
        For an unknown split, source or vertebra (a ``ValueError``).
    """
    return selected_ids(catalogue, split=split, source=source, vertebra=vertebra, cases=cases)


def case_jobs(catalogue: xr.Dataset, cases: Sequence[str]) -> list[CaseJob]:
    """The :class:`CaseJob` of each of ``cases``, from a few catalogue arrays."""
    ids = {str(c): i for i, c in enumerate(catalogue[CASE_DIM].values)}
    counts = np.asarray(catalogue["voxel_count"].values)
    start = np.asarray(catalogue["bbox_start"].values)
    stop = np.asarray(catalogue["bbox_stop"].values)
    shape = np.stack([np.asarray(catalogue[n].values) for n in ("n_slices", "n_y", "n_x")], 1)
    spacing = np.stack([np.asarray(catalogue[f"spacing_{a}"].values) for a in "zyx"], 1)
    jobs = []
    for case in cases:
        i = ids[case]
        boxes: dict[int, Box] = {}
        for column in np.flatnonzero(counts[i] > 0):
            lo, hi = start[i, column], stop[i, column]
            boxes[VERTEBRA_LABELS[column]] = (
                int(lo[0]), int(lo[1]), int(lo[2]), int(hi[0]), int(hi[1]), int(hi[2])
            )  # fmt: skip
        jobs.append(
            CaseJob(
                case,
                (int(shape[i, 0]), int(shape[i, 1]), int(shape[i, 2])),
                (float(spacing[i, 0]), float(spacing[i, 1]), float(spacing[i, 2])),
                boxes,
            )
        )
    return jobs


def _block_tasks(
    location: Any, job: CaseJob, storage_options: dict[str, Any] | None, step: int, name: str
) -> list[Delayed]:
    """One task per shard of the case's labelled slices, reading its label map cropped."""
    crop = job.crop()
    if crop is None:
        return []
    first, stop = crop[0], crop[3]
    edges = [first, *range((first // step + 1) * step, stop, step), stop]
    return [
        delayed(_block_task, pure=True)(
            location, job.case, storage_options, z0, z1, crop, dask_key_name=(name, b)
        )
        for b, (z0, z1) in enumerate(zip(edges, edges[1:], strict=False))
    ]


def build_graph(
    location: str | os.PathLike | Any,
    catalogue: xr.Dataset,
    cases: Sequence[str],
    *,
    checks: Sequence[str],
    storage_options: dict[str, Any] | None = None,
    min_fragment_voxels: int,
    slices_per_task: int = SLICES_PER_SHARD,
) -> AuditGraph:
    """Lay out the audit's tasks for ``cases`` of ``catalogue`` (see the module docstring).

    Parameters
    ----------
    location
        Path, fsspec URL or zarr store of the store.
    catalogue
        Its catalogue.
    cases
        The cases to audit.
    checks
        The checks to run (``size`` is not run here).
    storage_options
        fsspec options for a URL.
    min_fragment_voxels
        The ``fragments`` threshold.
    slices_per_task
        Slices per block task (default: the shard, 32 slices).
    """
    if isinstance(location, os.PathLike):
        location = os.fspath(location)
    wanted = tuple(checks)
    jobs = case_jobs(catalogue, cases)
    token = tokenize(
        location if isinstance(location, str) else id(location),
        storage_options,
        list(cases),
        wanted,
        min_fragment_voxels,
        slices_per_task,
    )
    voxels = bool(VOXEL_CHECKS & set(wanted))
    tasks, n_blocks = [], 0
    for i, job in enumerate(jobs):
        index = delayed(_index_task, pure=True)(
            location,
            job.case,
            storage_options,
            "overlap" in wanted,
            dask_key_name=(f"audit-index-{token}", i),
        )
        blocks = None
        if voxels:
            name = f"audit-block-{token}-{i}"
            blocks = _block_tasks(location, job, storage_options, int(slices_per_task), name)
            n_blocks += len(blocks)
        tasks.append(
            delayed(_case_task, pure=True)(
                index,
                blocks if voxels else None,
                job,
                wanted,
                min_fragment_voxels,
                dask_key_name=(f"audit-case-{token}", i),
            )
        )
    return AuditGraph(jobs, tasks, wanted, n_blocks)
