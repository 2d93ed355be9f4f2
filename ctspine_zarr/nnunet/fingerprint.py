"""nnU-Net v2's dataset fingerprint of a store's training cases, from the dask statistics.

nnU-Net's ``DatasetFingerprintExtractor`` reads every training case of the raw folder with
SimpleITK, crops it to the box of its nonzero voxels and records, in
``dataset_fingerprint.json``:

``spacings``, ``shapes_after_crop``
    Per case, in the order of the sorted case identifiers, the voxel size and the cropped
    shape along the axes of SimpleITK's array: the file's voxel axes reversed.
``foreground_intensity_properties_per_channel``
    Statistics of ``10e7 // n_cases`` foreground voxels (``label > 0``) drawn per case with
    replacement by ``np.random.RandomState(1234)``.
``median_relative_size_after_cropping``
    The median over the cases of the cropped voxel count over the whole.

:func:`nnunet_fingerprint` computes the same from the store: the crop box and the samples
come from :func:`ctspine_zarr.stats.compute_stats` (one dask graph, out of core), the source
file's axis order from the case's ``source_orientation``. The draws are nnU-Net's
(same seed and count per case) but of the foreground voxels in the store's canonical order,
so they are the same voxels for a file stored in RAS order and an equally distributed draw
otherwise (:mod:`ctspine_zarr.stats`, "Intensity fingerprint").
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Final

import numpy as np

from ..io.store import case_group
from ..stats import NNUNET_SEED, NNUNET_TOTAL_SAMPLES, OVERALL, compute_stats

__all__ = ["FINGERPRINT_KEYS", "nnunet_fingerprint"]

#: The keys of nnU-Net v2's ``dataset_fingerprint.json``.
FINGERPRINT_KEYS: Final = (
    "spacings",
    "shapes_after_crop",
    "foreground_intensity_properties_per_channel",
    "median_relative_size_after_cropping",
)
_INTENSITY_KEYS: Final = (
    "mean",
    "median",
    "std",
    "min",
    "max",
    "percentile_99_5",
    "percentile_00_5",
)


def _file_axes(values_xyz: Sequence[float], ornt: np.ndarray) -> list[float]:
    """Canonical ``(x, y, z)`` values along the source file's axes, in SimpleITK's order.

    Source axis ``i`` became canonical axis ``ornt[i, 0]``; SimpleITK's array is indexed by
    the file's axes reversed.
    """
    per_file_axis = [values_xyz[int(axis)] for axis in ornt[:, 0]]
    return per_file_axis[::-1]


def nnunet_fingerprint(
    store: str | os.PathLike[str],
    cases: Sequence[str],
    *,
    storage_options: dict[str, Any] | None = None,
    scheduler: Any = "threads",
    workers: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Return nnU-Net v2's ``dataset_fingerprint.json`` of ``cases`` (its training cases).

    Parameters
    ----------
    store
        Local path or fsspec URL of the store.
    cases
        The training cases (those of ``imagesTr``).
    storage_options
        fsspec options for a URL store.
    scheduler, workers
        Where the statistics run (see :mod:`ctspine_zarr.parallel`).
    progress
        Show a progress bar on stderr.

    Returns
    -------
    dict
        The four keys of :data:`FINGERPRINT_KEYS`, as nnU-Net writes them.

    Raises
    ------
    ValueError
        When ``cases`` is empty.
    """
    if not cases:
        raise ValueError("the fingerprint needs at least one training case")
    location = os.fspath(store)
    ordered = sorted(cases)  # nnU-Net lists the identifiers sorted (np.unique)
    per_case = int(NNUNET_TOTAL_SAMPLES // len(ordered))
    stats = compute_stats(
        location,
        cases=ordered,
        storage_options=storage_options,
        scheduler=scheduler,
        workers=workers,
        progress=progress,
        fingerprint_samples=per_case,
        fingerprint_seed=NNUNET_SEED,
    )
    table = stats.cases.set_index("case")
    spacings, shapes, relative = [], [], []
    for case in ordered:
        row = table.loc[case]
        attrs = case_group(location, case, storage_options=storage_options).attrs
        ornt = np.asarray(attrs["source_orientation"], dtype=float)
        whole = [int(row[n]) for n in ("n_x", "n_y", "slices")]
        start = [int(row[f"nonzero_start_{a}"]) for a in ("x", "y", "z")]
        stop = [int(row[f"nonzero_stop_{a}"]) for a in ("x", "y", "z")]
        cropped = [max(b - a, 0) for a, b in zip(start, stop, strict=True)]
        spacing = [float(row[f"spacing_{a}"]) for a in ("x", "y", "z")]
        spacings.append(_file_axes(spacing, ornt))
        shapes.append([int(n) for n in _file_axes(cropped, ornt)])
        relative.append(float(np.prod(cropped)) / float(np.prod(whole)))
    sample = stats.fingerprint[OVERALL]["nnunet"]
    return {
        "spacings": spacings,
        "shapes_after_crop": shapes,
        "foreground_intensity_properties_per_channel": {
            "0": {key: float(sample[key]) for key in _INTENSITY_KEYS}
        },
        "median_relative_size_after_cropping": float(np.median(relative)),
    }
