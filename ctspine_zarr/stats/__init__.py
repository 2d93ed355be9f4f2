"""Dataset statistics: per-vertebra and per-case tables, split summaries, intensity fingerprint.

Everything is computed in one dask graph over the requested cases, out of core: one task
reads a block of :data:`~ctspine_zarr.schema.SLICES_PER_SHARD` axial slices (one shard) of a
case's ``image`` and ``label`` and returns a small partial result; partials are merged per case
by a tree reduction, cases per split by another. Peak memory is a few blocks per worker plus
the (small) partials, whatever the size of the dataset.

Exactness
---------
Integer images (CT: ``int16``) give *exact, mergeable histograms* per label: the distinct HU
values of the label's voxels and their counts. From them

* ``min``, ``max``, the counts and every percentile equal numpy's on the full arrays,
  bit for bit: :meth:`Histogram.percentile` is numpy's default ``method="linear"``
  (``np.percentile(values, q)``) evaluated on the cumulative histogram;
* ``mean`` is the exact sum divided by the count, which is what ``np.mean`` returns for
  integer arrays (its float64 partial sums of integers are exact);
* ``std`` is the *population* standard deviation (``ddof=0``, like ``np.std``), from the
  exact sum and sum of squares, rounded once; ``np.std`` accumulates float64 rounding errors,
  so the two agree to ~1e-13 relative, not bit for bit.

Float images (``float32``/``float64`` in the catalogue's ``image_dtype``) use histograms of
the exact distinct float values instead (exact percentiles, min and max; mean and std in
float64). NaN and Inf voxels are skipped by every HU statistic (the catalogue's
``has_nonfinite`` says which cases hold them); they still count as label voxels for
``voxels``, ``volume_ml``, the z extent and the centroid, and ``hu_voxels`` gives the count
the HU statistics are over.

Intensity fingerprint
---------------------
``DatasetStats.fingerprint`` has, for all requested cases (``overall``) and per split, the
foreground (``label > 0``) intensity statistics nnU-Net v2 uses for CT normalisation:
``mean``, ``median``, ``std``, ``min``, ``max``, ``percentile_00_5``, ``percentile_99_5``.

``exact``
    Over *every* foreground voxel, from the merged histograms (numbers as above).
``nnunet``
    nnU-Net v2's sampled estimate (``DatasetFingerprintExtractor``): per case,
    ``int(10e7 // n_cases)`` foreground voxels drawn with replacement by
    ``np.random.RandomState(1234).choice(foreground, n, replace=True)`` (a new generator with
    the same seed for every case), concatenated over the cases. Here the foreground voxels are
    taken in the store's canonical ``[z, y, x]`` C order; nnU-Net takes them in the order of
    the file's voxel array, so the drawn voxels are the same for a file stored in RAS order and
    an equally distributed but different draw otherwise. ``n_cases`` is the number of cases of
    the group (the split, or all requested cases for ``overall``); the draws of the overall
    group are a prefix of the split's draws of each case (same seed, same stream). The
    statistics of the sample are then computed exactly (nnU-Net computes them in float32 on
    the concatenated sample, which differs in the last digits). Non-finite samples are dropped.
    nnU-Net reads images as float32 and crops to the nonzero box first; neither changes the
    foreground values of an integer CT (a foreground voxel outside the box of nonzero
    intensities, which cropping would drop, does not occur in CT).

    Each block task keeps its foreground values (2 bytes a voxel for int16) and the case's
    final task draws its samples, so a case's foreground is held once, until its draws are
    made. There are as many draws as nnU-Net makes: ``10e7`` per group (each split, the
    overall group being a prefix), whatever the dataset size. They are drawn as ``uint32``
    (the same values, ~7x faster than ``int64``) and, when there are more draws than a
    quarter of the case's foreground voxels, counted per voxel before the values are looked
    up: about 1.5 CPU-seconds per ``10e7`` draws. One case's draws are one random stream, so
    a split of one case costs that on one core; with many cases they spread over the
    workers. Pass ``fingerprint_samples=None`` to skip them.

Layout
------
Per case there is one task per ``slices_per_task`` slices (default: the shard, 32 slices),
``ceil(blocks / 8)`` merges when it has more than 8 blocks, and one final task; per split one
merge per 8 cases. CTSpine1K (1,005 cases of ~500 slices) is ~2e4 tasks. A block task reads
its slices through :mod:`ctspine_zarr.io.slicereader` (a whole shard is one read, decoded in the
task's own thread): through ``zarr.Array`` the event-loop hand-offs were 65% of the time.

Modules
-------
:mod:`~ctspine_zarr.stats.histogram` (exact histograms), :mod:`~ctspine_zarr.stats.kernels`
(block tasks and their merges, the nnU-Net draws), :mod:`~ctspine_zarr.stats.cases` (a case's
table rows), :mod:`~ctspine_zarr.stats.graph` (the dask graph),
:mod:`~ctspine_zarr.stats.compute` (running it) and :mod:`~ctspine_zarr.stats.results`
(:class:`DatasetStats`). The pictures are in :mod:`ctspine_zarr.viz.plots`, the command
``ctspine-zarr stats`` in :mod:`ctspine_zarr.cli`.
"""

from .cases import BOX_COLUMNS, OVERALL
from .compute import compute_stats
from .graph import StatsGraph, build_graph
from .histogram import Histogram, merge_histograms
from .kernels import (
    NNUNET_SEED,
    NNUNET_TOTAL_SAMPLES,
    block_stats,
    merge_boxes,
    nnunet_samples,
    nonzero_box,
)
from .results import PERCENTILES, STORE_ATTR, DatasetStats

__all__ = [
    "BOX_COLUMNS",
    "NNUNET_SEED",
    "NNUNET_TOTAL_SAMPLES",
    "OVERALL",
    "PERCENTILES",
    "STORE_ATTR",
    "DatasetStats",
    "Histogram",
    "StatsGraph",
    "build_graph",
    "block_stats",
    "compute_stats",
    "merge_boxes",
    "merge_histograms",
    "nnunet_samples",
    "nonzero_box",
]
