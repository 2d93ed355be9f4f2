"""Running the statistics: :func:`compute_stats` builds the graph, runs it, assembles the result."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any, Literal

from ..parallel import is_local, progress_bar, run_tasks
from ..selection import Names, Vertebrae
from .cases import _Group
from .graph import StatsGraph, build_graph
from .kernels import NNUNET_SEED, NNUNET_TOTAL_SAMPLES
from .results import DatasetStats, assemble

__all__ = ["compute_stats"]

SchedulerLike = Any  # "threads" | "processes" | "sync" | "distributed" | address | Client


def _run(
    graph: StatsGraph, scheduler: SchedulerLike, workers: int | None, progress: bool
) -> dict[str, _Group]:
    names = list(graph.groups)
    # a step per case on this machine; on a cluster only the splits' results are seen
    local = is_local(scheduler)
    steps = [case.key for case in graph.cases] if local else None
    total, unit = (len(graph.cases), "case") if local else (len(names), "split")
    bar = progress_bar(total, desc="stats", unit=unit, enabled=progress)
    try:
        tasks = [graph.groups[n] for n in names]
        results = run_tasks(
            tasks, scheduler=scheduler, workers=workers, on_done=bar.update, progress_keys=steps
        )
    finally:
        bar.close()
    return dict(zip(names, results, strict=True))


def compute_stats(
    location: str | os.PathLike | Any,
    *,
    split: Names = None,
    cases: Sequence[str] | None = None,
    source: Names = None,
    vertebra: Vertebrae = None,
    storage_options: dict[str, Any] | None = None,
    scheduler: SchedulerLike = "threads",
    workers: int | None = None,
    progress: bool = False,
    fingerprint_samples: int | Literal["nnunet"] | None = "nnunet",
    fingerprint_total: float = NNUNET_TOTAL_SAMPLES,
    fingerprint_seed: int = NNUNET_SEED,
    slices_per_task: int | None = None,
) -> DatasetStats:
    """Compute the dataset statistics of a store in one dask graph.

    Parameters
    ----------
    location
        Path or fsspec URL of the store.
    split
        Only cases of this split (or these splits): ``"train"``, ``"validation"``, ``"test"``,
        ``"unassigned"``; default: every case.
    cases
        Only these case ids (combined with the other filters).
    source
        Only cases of this source (or these sources).
    vertebra
        Only cases holding this vertebra (``22`` or ``"L3"``), or any of several.
    storage_options
        fsspec options for a URL.
    scheduler
        ``"threads"`` (the default), ``"processes"``, ``"sync"``, ``"distributed"`` (a new
        ``distributed.LocalCluster`` of ``workers`` single-threaded processes, closed at the
        end), a scheduler address (``"tcp://host:8786"``) or a ``distributed.Client``.
    workers
        Tasks at a time on this machine (threads, processes or cluster workers; default: the
        CPUs); see :mod:`ctspine_zarr.parallel`.
    progress
        Show a progress bar on stderr: a step per case (on a cluster, per split).
    fingerprint_samples
        The nnU-Net sampled fingerprint: ``"nnunet"`` draws ``int(fingerprint_total //
        n_cases)`` foreground voxels per case (``n_cases`` of the group), an int that many per
        case, ``None`` skips it (and the label pass it needs).
    fingerprint_total
        nnU-Net's total of sampled foreground voxels (``10e7``).
    fingerprint_seed
        Seed of the per-case ``RandomState`` (nnU-Net: 1234).
    slices_per_task
        Slices per block task (default: the shard, 32 slices).

    Returns
    -------
    DatasetStats

    Raises
    ------
    CaseNotFoundError
        For a requested case the store does not hold.
    SelectionError
        For an unknown split, source or vertebra (a ``ValueError``), naming the valid ones;
        the selection is :func:`ctspine_zarr.selection.case_positions`'s.
    """
    graph = build_graph(
        location,
        split=split,
        cases=cases,
        source=source,
        vertebra=vertebra,
        storage_options=storage_options,
        fingerprint_samples=fingerprint_samples,
        fingerprint_total=fingerprint_total,
        fingerprint_seed=fingerprint_seed,
        slices_per_task=slices_per_task,
    )
    started = time.perf_counter()
    groups = _run(graph, scheduler, workers, progress)
    stats = assemble(graph, groups)
    stats.info["seconds"] = time.perf_counter() - started
    stats.info["location"] = (
        os.fspath(location) if isinstance(location, str | os.PathLike) else repr(location)
    )
    stats.info["split"] = split
    stats.info["source"] = source
    stats.info["vertebra"] = vertebra
    stats.info["cases"] = list(cases) if cases is not None else None
    return stats
