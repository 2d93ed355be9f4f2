"""The dask graph of the statistics, built before anything runs.

:func:`build_graph` selects the cases, reads their metadata and lays out, per case, one block
task per ``slices_per_task`` slices and a tree of merges ending in
:func:`~ctspine_zarr.stats.cases.finalize_case`, and per split a tree of merges of its cases;
:class:`StatsGraph` holds the result (see :mod:`ctspine_zarr.stats`, "Layout").
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import zarr
from dask.base import tokenize
from dask.delayed import Delayed, delayed

from ..io.slicereader import case_readers, read_blocks
from ..io.store import case_group, open_catalogue
from ..schema import IMAGE, SLICES_PER_SHARD
from ..selection import Names, Vertebrae, selected_ids
from .cases import OVERALL, _CaseMeta, finalize_case, merge_groups
from .kernels import NNUNET_SEED, NNUNET_TOTAL_SAMPLES, _Partial, block_stats, merge_partials

__all__ = ["StatsGraph", "build_graph"]


def _block_task(
    location: Any,
    case: str,
    storage_options: dict[str, Any] | None,
    z0: int,
    z1: int,
    keep_foreground: bool,
) -> _Partial:
    readers = case_readers(location, case, storage_options)
    image, label = read_blocks([(readers.image, z0, z1, None), (readers.label, z0, z1, None)])
    return block_stats(image, label, z0, keep_foreground)


@dataclass
class StatsGraph:
    """The dask graph of :func:`~ctspine_zarr.stats.compute.compute_stats`, before it runs.

    Attributes
    ----------
    groups
        One delayed result per split (merged over its cases).
    cases
        One delayed result per case (what the groups merge), in the order of ``metas``.
    metas
        Per case: id, split, source, shape, spacing, affine and image dtype.
    samples
        Per group (each split and :data:`OVERALL`): nnU-Net samples drawn per case (0: none).
    seed
        Seed of the nnU-Net sampling.
    blocks
        Number of block tasks (one per ``slices_per_task`` slices of each case).
    """

    groups: dict[str, Delayed]
    cases: list[Delayed]
    metas: list[_CaseMeta]
    samples: dict[str, int]
    seed: int
    blocks: int

    def n_tasks(self, optimize: bool = True) -> int:
        """Number of tasks the schedulers run (after dask's graph optimisation)."""
        from dask.base import collections_to_expr

        objs = list(self.groups.values())
        if not objs:
            return 0
        expr = collections_to_expr(objs, optimize_graph=optimize)
        if optimize:
            expr = expr.optimize()
        return len(expr.__dask_graph__())


def _tree(
    items: list[Any],
    combine: Any,
    name: str,
    split_every: int,
    final: Any = None,
    final_args: tuple[Any, ...] = (),
) -> Delayed:
    """Reduce delayed ``items`` with ``combine`` in a tree; the root applies ``final``."""
    level = 0
    while len(items) > split_every:
        items = [
            delayed(combine, pure=True)(
                items[i : i + split_every], dask_key_name=(f"{name}-{level}", i // split_every)
            )
            for i in range(0, len(items), split_every)
        ]
        level += 1
    top = final or combine
    return delayed(top, pure=True)(items, *final_args, dask_key_name=f"{name}-top")


def _case_metas(
    location: Any, storage_options: dict[str, Any] | None, catalogue: Any, cases: list[str]
) -> list[_CaseMeta]:
    ids = catalogue["case"].values
    splits = {str(c): str(s) for c, s in zip(ids, catalogue["split"].values, strict=True)}
    sources = {str(c): str(s) for c, s in zip(ids, catalogue["source"].values, strict=True)}
    metas = []
    for case in cases:
        group = case_group(location, case, storage_options=storage_options)
        attrs = group.attrs
        image = group[IMAGE]
        assert isinstance(image, zarr.Array)
        affine = np.asarray(attrs["affine"], dtype=np.float64)
        spacing = np.asarray(attrs["spacing_zyx"], dtype=np.float64)
        metas.append(
            _CaseMeta(
                case=case,
                split=splits[case],
                source=sources[case],
                shape=(int(image.shape[0]), int(image.shape[1]), int(image.shape[2])),
                spacing=(float(spacing[0]), float(spacing[1]), float(spacing[2])),
                affine=tuple(tuple(float(v) for v in row) for row in affine),
                image_dtype=str(image.dtype),
            )
        )
    return metas


def build_graph(
    location: str | os.PathLike | Any,
    *,
    split: Names = None,
    cases: Sequence[str] | None = None,
    source: Names = None,
    vertebra: Vertebrae = None,
    storage_options: dict[str, Any] | None = None,
    fingerprint_samples: int | Literal["nnunet"] | None = "nnunet",
    fingerprint_total: float = NNUNET_TOTAL_SAMPLES,
    fingerprint_seed: int = NNUNET_SEED,
    slices_per_task: int | None = None,
    split_every: int = 8,
) -> StatsGraph:
    """Build the dask graph of the statistics (see
    :func:`~ctspine_zarr.stats.compute.compute_stats` for the parameters).

    Per case: one task per ``slices_per_task`` slices (default: one shard, 32 slices) reading
    image and label and returning a partial result (with the block's foreground values when
    the nnU-Net sampling is on), and a tree of merges (``split_every`` at a time) whose root
    draws the case's nnU-Net samples and makes its rows. Per split: a tree of merges of its
    cases.
    """
    if isinstance(location, os.PathLike):
        location = os.fspath(location)
    catalogue = open_catalogue(location, storage_options=storage_options)
    chosen = selected_ids(catalogue, split=split, source=source, vertebra=vertebra, cases=cases)
    metas = _case_metas(location, storage_options, catalogue, chosen)
    by_split: dict[str, list[int]] = {}
    for i, meta in enumerate(metas):
        by_split.setdefault(meta.split, []).append(i)
    samples = _samples_per_case(fingerprint_samples, fingerprint_total, len(metas), by_split)
    token = tokenize(
        location if isinstance(location, str) else id(location),
        storage_options,
        chosen,
        samples,
        fingerprint_seed,
        slices_per_task,
    )
    results: list[Delayed] = []
    n_blocks = 0
    for i, meta in enumerate(metas):
        step = int(slices_per_task or _shard_slices(location, meta.case, storage_options))
        n_z = meta.shape[0]
        bounds = [(z0, min(z0 + step, n_z)) for z0 in range(0, n_z, step)]
        n_blocks += len(bounds)
        parts = [
            delayed(_block_task, pure=True)(
                location,
                meta.case,
                storage_options,
                z0,
                z1,
                bool(samples),
                dask_key_name=(f"stats-block-{token}-{i}", b),
            )
            for b, (z0, z1) in enumerate(bounds)
        ]
        results.append(
            _tree(
                parts,
                merge_partials,
                f"stats-case-{token}-{i}",
                split_every,
                finalize_case,
                (meta, samples.get(OVERALL, 0), samples.get(meta.split, 0), fingerprint_seed),
            )
        )
    groups = {
        name: _tree(
            [results[i] for i in members], merge_groups, f"stats-{name}-{token}", split_every
        )
        for name, members in by_split.items()
    }
    return StatsGraph(groups, results, metas, samples, fingerprint_seed, n_blocks)


def _samples_per_case(
    fingerprint_samples: int | Literal["nnunet"] | None,
    fingerprint_total: float,
    n_cases: int,
    by_split: dict[str, list[int]],
) -> dict[str, int]:
    """nnU-Net samples to draw per case, per group (each split and :data:`OVERALL`)."""
    samples: dict[str, int] = {}
    if fingerprint_samples == "nnunet":
        samples[OVERALL] = int(fingerprint_total // n_cases) if n_cases else 0
        for name, members in by_split.items():
            samples[name] = int(fingerprint_total // len(members))
    elif fingerprint_samples is not None:
        n = int(fingerprint_samples)
        if n < 0:
            raise ValueError(f"fingerprint_samples must be >= 0, but is {n}")
        samples = {OVERALL: n, **{name: n for name in by_split}}
    return samples


def _shard_slices(location: Any, case: str, storage_options: dict[str, Any] | None) -> int:
    image = case_group(location, case, storage_options=storage_options)[IMAGE]
    shards = getattr(image, "shards", None) or getattr(image, "chunks", None)
    return int(shards[0]) if shards else SLICES_PER_SHARD
