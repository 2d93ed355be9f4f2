"""Running the audit: :func:`audit_store` builds the graph, runs it, adds ``size``, records."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from .._version import __version__
from ..io.store import open_catalogue
from ..parallel import is_local, progress_bar, run_tasks
from ..schema import GENERATION_KEY, SLICES_PER_SHARD
from .checks import MIN_FRAGMENT_VOXELS, parse_checks
from .graph import AuditGraph, CaseResult, build_graph, select_cases
from .result import AUDIT_VERSION, AuditResult, now, sort_findings
from .size import MIN_LEVEL_CASES, SIZE_THRESHOLD, check_size, levels_checked

__all__ = ["audit_store"]

SchedulerLike = Any  # "threads" | "processes" | "sync" | "distributed" | address | Client

#: The catalogue columns the audit reads (the boxes, counts, shapes and spacings).
_CATALOGUE_COLUMNS = (
    "split",
    "voxel_count",
    "bbox_start",
    "bbox_stop",
    "n_slices",
    "n_y",
    "n_x",
    "spacing_z",
    "spacing_y",
    "spacing_x",
)


def _run(
    graph: AuditGraph, scheduler: SchedulerLike, workers: int | None, progress: bool
) -> list[CaseResult]:
    bar = progress_bar(len(graph.tasks), desc="audit", unit="case", enabled=progress)
    try:
        steps = [t.key for t in graph.tasks] if is_local(scheduler) else None
        return run_tasks(
            graph.tasks,
            scheduler=scheduler,
            workers=workers,
            on_done=bar.update,
            progress_keys=steps,
        )
    finally:
        bar.close()


def _describe_run(
    result: AuditResult,
    catalogue: Any,
    graph: AuditGraph,
    started: float,
    location: Any,
    split: str | Sequence[str] | None,
) -> None:
    """Fill ``result.info``: version, time, how long, where, what the ``size`` check compared."""
    result.info.update(
        {
            "version": AUDIT_VERSION,
            "created_by": f"ctspine_zarr {__version__}",
            "time": now(),
            "seconds": time.perf_counter() - started,
            "location": location if isinstance(location, str) else repr(location),
            "split": split if split is None or isinstance(split, str) else list(split),
            "blocks": graph.blocks,
        }
    )
    if "size" in result.checks:
        levels = levels_checked(catalogue, int(result.parameters["min_level_cases"]))
        result.info["size_levels"] = levels
        present = np.asarray(catalogue["voxel_count"].values).any(axis=0).sum()
        result.info["size_levels_present"] = int(present)


def audit_store(
    location: str | os.PathLike | Any,
    *,
    split: str | Sequence[str] | None = None,
    cases: Sequence[str] | None = None,
    checks: str | Iterable[str] | None = None,
    source: str | Sequence[str] | None = None,
    vertebra: int | str | Sequence[int | str] | None = None,
    storage_options: dict[str, Any] | None = None,
    scheduler: SchedulerLike = "threads",
    workers: int | None = None,
    progress: bool = False,
    record: bool = False,
    min_fragment_voxels: int = MIN_FRAGMENT_VOXELS,
    size_threshold: float = SIZE_THRESHOLD,
    min_level_cases: int = MIN_LEVEL_CASES,
    slices_per_task: int = SLICES_PER_SHARD,
) -> AuditResult:
    """Audit the label maps of a store against anatomy (see :mod:`ctspine_zarr.audit`).

    Parameters
    ----------
    location
        Path, fsspec URL or zarr store of the store.
    split
        Only cases of this split (or these splits).
    cases
        Only these case ids (combined with ``split``).
    source, vertebra
        Only cases of these sources, or holding one of these vertebrae (``22`` or ``"L3"``):
        the selection of every reader (:mod:`ctspine_zarr.selection`).
    checks
        The checks to run (default: all of ``order``, ``gap``, ``fragments``, ``size``,
        ``overlap``); only ``order`` and ``fragments`` read voxels.
    storage_options
        fsspec options for a URL.
    scheduler
        ``"threads"`` (the default), ``"processes"``, ``"sync"``, ``"distributed"`` (a new
        ``LocalCluster`` of ``workers`` processes) or a scheduler address or ``Client``.
    workers
        Tasks at a time on this machine (default: the CPUs); see :mod:`ctspine_zarr.parallel`.
    progress
        Show a progress bar on stderr (a step per case).
    record
        Also record the findings in the store (:func:`ctspine_zarr.audit.record_audit`):
        ``info``, ``case_ids(exclude_flagged=...)`` and ``show --audit`` read them.
    min_fragment_voxels
        ``fragments``: pieces besides a label's largest holding more voxels are reported.
    size_threshold
        ``size``: the ``|robust z|`` above which a volume is reported.
    min_level_cases
        ``size``: whole vertebrae a level needs in the store to be checked.
    slices_per_task
        Slices per voxel task (default: the shard, 32 slices).

    Returns
    -------
    AuditResult
        ``.findings``, ``.frame()`` (the table), ``.describe()``, ``.to_json()``.

    Raises
    ------
    CaseNotFoundError
        For a requested case the store does not hold.
    ValueError
        For an unknown check or split.
    """
    wanted = parse_checks(checks)
    if isinstance(location, os.PathLike):
        location = os.fspath(location)
    opened = open_catalogue(location, storage_options=storage_options)
    catalogue = opened[list(_CATALOGUE_COLUMNS)].load()  # each column read once
    chosen = select_cases(catalogue, split, cases, source=source, vertebra=vertebra)
    graph = build_graph(
        location,
        catalogue,
        chosen,
        checks=wanted,
        storage_options=storage_options,
        min_fragment_voxels=min_fragment_voxels,
        slices_per_task=slices_per_task,
    )
    started = time.perf_counter()
    results = _run(graph, scheduler, workers, progress)
    findings = [f for r in results for f in r.findings]
    parameters = {
        "min_fragment_voxels": int(min_fragment_voxels),
        "size_threshold": float(size_threshold),
        "min_level_cases": int(min_level_cases),
    }
    if "size" in wanted:
        findings += check_size(
            catalogue, chosen, threshold=size_threshold, min_cases=min_level_cases
        )
    result = AuditResult(
        sort_findings(findings, chosen), {r.case: r.token for r in results}, wanted, parameters
    )
    _describe_run(result, catalogue, graph, started, location, split)
    result.info["catalogue_generation"] = opened.attrs.get(GENERATION_KEY)
    if record:
        from .record import record_audit

        record_audit(location, result, storage_options=storage_options)
    return result
