"""The thin ``ds.ctspine`` accessor on the catalogue; it keeps only the set of case ids."""

from __future__ import annotations

import operator
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr
from zarr.abc.store import Store

from .compat import construct_dataset
from .errors import CaseNotFoundError, StoreError
from .io.slicereader import case_readers, read_blocks
from .io.store import is_url, storage_options_of
from .io.volume import cached_volume, open_volume
from .schema import CASE_DIM, IMAGE, LABEL
from .selection import Names, Vertebrae, select, selected_ids

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from .stats import DatasetStats

__all__ = ["CTSpineAccessor"]


@xr.register_dataset_accessor("ctspine")
class CTSpineAccessor:
    """Reach the cases of a catalogue opened by ``xr.open_zarr`` or ``ctspine_zarr.open``."""

    def __init__(self, ds: xr.Dataset) -> None:
        self._ds = ds
        self._ids: frozenset[str] | None = None

    def _location(self) -> tuple[Any, dict[str, Any]]:
        source = self._ds.encoding.get("source")
        if source is None:
            raise StoreError(
                "this Dataset does not say which store it came from; open the catalogue "
                "with ctspine_zarr.open(path) or xr.open_zarr(path)"
            )
        options = self._ds.encoding.get("storage_options")
        if options is None and not isinstance(source, Store) and is_url(source):
            options = storage_options_of(self._ds)
        return source, dict(options or {})

    def _check(self, case: str) -> str:
        if self._ids is None:  # the accessor lives as long as its Dataset: list the ids once
            self._ids = frozenset(str(v) for v in self._ds[CASE_DIM].values)
        if case not in self._ids:
            raise CaseNotFoundError(case, sorted(self._ids))
        return case

    def case_ids(
        self,
        split: Names = None,
        source: Names = None,
        *,
        vertebra: Vertebrae = None,
        exclude_flagged: bool | str | Sequence[str] = False,
    ) -> list[str]:
        """Return the case ids, optionally of some splits, sources or vertebrae.

        Parameters
        ----------
        split
            ``"train"``, ``"validation"``, ``"test"`` or ``"unassigned"``, or several.
        source
            Source collection, e.g. ``"COLONOG"``, or several.
        vertebra
            Only the cases holding this vertebra (``22`` or ``"L3"``), or any of several.
        exclude_flagged
            Leave out the cases the store's recorded audit flagged (``ctspine-zarr audit``):
            ``True`` for a finding of any check, or a check or list of checks (``"gap"``,
            ``["order", "gap"]``) whose findings count. Reads the audit record (one request);
            a store without one raises :class:`~ctspine_zarr.errors.StoreError`.

        Raises
        ------
        SelectionError
            For an unknown split, source or vertebra (a ``ValueError``), naming the valid
            ones; see :meth:`select`.
        """
        ids = selected_ids(self._ds, split=split, source=source, vertebra=vertebra)
        if exclude_flagged is not False:
            from .audit import flagged_cases

            checks = None if exclude_flagged is True else exclude_flagged
            flagged = flagged_cases(self._ds, checks)
            ids = [c for c in ids if c not in flagged]
        return ids

    def select(
        self,
        split: Names = None,
        source: Names = None,
        *,
        vertebra: Vertebrae = None,
        cases: Sequence[str] | None = None,
    ) -> xr.Dataset:
        """Return the catalogue's rows of the cases selected: a Dataset, fewer cases.

        The same variables, attributes and store: ``ds.ctspine.select(split="train")
        .ctspine.volume(case)`` works, and so do ``.ctspine.stats()`` (the selected cases)
        and ``.ctspine.case_ids()``. The loaders, the statistics, the export and the
        ``cases`` command select the same way (:mod:`ctspine_zarr.selection`).

        Parameters
        ----------
        split
            ``"train"``, ``"validation"``, ``"test"`` or ``"unassigned"``, or several;
            None (the default): every split.
        source
            Source collection (``"COLONOG"``), or several; None: every source.
        vertebra
            Keep the cases holding this vertebra (``22`` or ``"L3"``), or any of several.
        cases
            Keep these case ids, in this order.

        Raises
        ------
        SelectionError
            For an unknown split, source or vertebra (a ``ValueError``); the message names
            the valid ones and those the store holds.
        CaseNotFoundError
            For an id in ``cases`` the catalogue does not hold.
        """
        return select(self._ds, split=split, source=source, vertebra=vertebra, cases=cases)

    def volume(self, case: str) -> xr.Dataset:
        """Return one case lazily: ``image`` and ``label`` on ``(z, y, x)``, coordinates in mm."""
        location, options = self._location()
        return open_volume(location, self._check(case), storage_options=options)

    def image(self, case: str) -> xr.DataArray:
        """Return the lazy image (HU) of one case."""
        return self.volume(case)[IMAGE]

    def label(self, case: str) -> xr.DataArray:
        """Return the lazy label map (VerSe labels) of one case: the array ``label``."""
        return self.volume(case)[LABEL]

    def labels(self, case: str) -> xr.DataArray:
        """Deprecated name of :meth:`label`, which is named as its array is."""
        warnings.warn(
            "ds.ctspine.labels() is renamed ds.ctspine.label(), as its array is named",
            FutureWarning,
            stacklevel=2,
        )
        return self.label(case)

    def slice(self, case: str, z: int, *, lazy: bool = False) -> xr.Dataset:
        """Return axial slice ``z`` (an index) of one case: a 2D Dataset of image and label.

        A slice is one chunk per array, so by default it is read at once, both arrays in one
        batch, straight through the store's shard index (no dask graph): about a millisecond
        locally. Coordinates, attributes and values are those of
        ``volume(case)[["image", "label"]].isel(z=z)``, which ``lazy=True`` returns instead
        (dask-backed, nothing read yet).

        Parameters
        ----------
        case
            The case id.
        z
            Slice index along ``z``; negative counts from the end.
        lazy
            Return the dask-backed slice without reading it.
        """
        location, options = self._location()
        volume = cached_volume(location, self._check(case), options)  # read-only use
        z = operator.index(z)
        n_z = volume.sizes["z"]
        if not -n_z <= z < n_z:
            raise IndexError(f"slice index must lie in [0, {n_z}) for case {case!r}, but is {z}")
        if lazy:
            return self.volume(case)[[IMAGE, LABEL]].isel(z=z)
        z %= n_z
        readers = case_readers(location, case, options or None)
        image, label = read_blocks(
            [(readers.image, z, z + 1, None), (readers.label, z, z + 1, None)]
        )
        return _plane_dataset(volume, z, image[0], label[0])

    def to_nifti(self, case: str, path: str | os.PathLike, *, label: bool = False) -> Path:
        """Write one case back to NIfTI in its original orientation, with its original header.

        Parameters
        ----------
        case
            The case id.
        path
            Local ``.nii`` or ``.nii.gz`` path.
        label
            Export the label map instead of the image.
        """
        from .io.export import to_nifti

        location, options = self._location()
        return to_nifti(location, self._check(case), path, label=label, storage_options=options)

    def stats(
        self,
        split: Names = None,
        *,
        source: Names = None,
        vertebra: Vertebrae = None,
        cases: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> DatasetStats:
        """Compute the dataset statistics of this catalogue's cases (runs the dask graph).

        Parameters
        ----------
        split
            Only cases of this split (or these splits).
        source
            Only cases of this source (or these sources).
        vertebra
            Only cases holding this vertebra (``22`` or ``"L3"``), or any of several.
        cases
            Only these cases (default: every case of this catalogue, which may be a
            :meth:`select`-ion).
        **kwargs
            Passed to :func:`ctspine_zarr.stats.compute_stats` (``scheduler``, ``workers``,
            ``progress``, ``fingerprint_samples``, ...).

        Returns
        -------
        ctspine_zarr.stats.DatasetStats
            ``.vertebrae``, ``.cases``, ``.fingerprint``, ``.summary``; ``.to_dir(path)``.
        """
        from .stats import compute_stats

        location, options = self._location()
        return compute_stats(
            location,
            split=split,
            source=source,
            vertebra=vertebra,
            cases=self.case_ids() if cases is None else cases,
            storage_options=options or None,
            **kwargs,
        )

    def audit(
        self,
        split: str | Sequence[str] | None = None,
        *,
        cases: Sequence[str] | None = None,
        checks: str | Sequence[str] | None = None,
        record: bool = False,
        **kwargs: Any,
    ) -> pd.DataFrame:
        """Audit this catalogue's label maps against anatomy (runs the dask graph).

        Parameters
        ----------
        split
            Only cases of this split (or these splits).
        cases
            Only these cases (default: every case of this catalogue).
        checks
            The checks (default all: ``order``, ``gap``, ``fragments``, ``size``,
            ``overlap``; see :mod:`ctspine_zarr.audit`).
        record
            Also record the findings in the store, for ``case_ids(exclude_flagged=True)``,
            ``ctspine-zarr info`` and ``show --audit``.
        **kwargs
            Passed to :func:`ctspine_zarr.audit.audit_store` (``scheduler``, ``workers``,
            ``progress``, ``min_fragment_voxels``, ...).

        Returns
        -------
        pandas.DataFrame
            One row per finding: ``case``, ``check``, ``labels``, ``detail``, ``severity``;
            ``attrs["audit"]`` holds the audit's version, time, checks and parameters.
        """
        from .audit import audit_store

        location, options = self._location()
        result = audit_store(
            location,
            split=split,
            cases=self.case_ids() if cases is None else cases,
            checks=checks,
            storage_options=options or None,
            record=record,
            **kwargs,
        )
        return result.frame()

    def plot(
        self,
        case: str,
        *,
        z: int | None = None,
        plane: str = "all",
        window: str | tuple[float, float] = "bone",
        **kwargs: Any,
    ) -> Figure:
        """Draw a quick look of one case: CT planes in a window, the labels, a legend.

        Parameters
        ----------
        case
            The case id.
        z
            Axial slice index (default: the middle of the labelled slices).
        plane
            ``"all"``, ``"axial"``, ``"coronal"`` or ``"sagittal"``.
        window
            ``"bone"`` (W 1800, L 400), ``"soft"`` (W 400, L 40), ``"W,L"`` or ``(W, L)``.
        **kwargs
            Passed to :func:`ctspine_zarr.viz.show.plot_case` (``y``, ``x``, ``alpha``, ``level``:
            ``0`` reads the coronal and sagittal cuts at full resolution instead of the 2x
            level, ...).

        Returns
        -------
        matplotlib.figure.Figure
        """
        from .viz.show import plot_case

        location, options = self._location()
        return plot_case(
            location,
            self._check(case),
            z=z,
            plane=plane,
            window=window,
            storage_options=options,
            **kwargs,
        )


def _plane_dataset(volume: xr.Dataset, z: int, image: np.ndarray, label: np.ndarray) -> xr.Dataset:
    """The Dataset of slice ``z`` of ``volume`` holding ``image`` and ``label``.

    Equal to ``volume[["image", "label"]].isel(z=z)`` with these values (a test checks it).
    xarray's public constructor rebuilds the x and y indexes and merges coordinates, about
    0.25 ms, a quarter of a slice read; the slice reuses the volume's indexes through
    :func:`ctspine_zarr.compat.construct_dataset` (16 us).
    """
    source = volume.variables
    plane = ("y", "x")
    variables = {
        IMAGE: xr.Variable(plane, image, dict(source[IMAGE].attrs)),
        LABEL: xr.Variable(plane, label, dict(source[LABEL].attrs)),
        # shallow copies: the volume is the process's cached one, its attrs must not be shared
        "x": source["x"].copy(deep=False),
        "y": source["y"].copy(deep=False),
        "z": xr.Variable((), source["z"].values[z], dict(source["z"].attrs)),
    }
    return construct_dataset(
        variables,
        {"x", "y", "z"},
        {"y": image.shape[0], "x": image.shape[1]},
        dict(volume.attrs),
        {"x": volume.xindexes["x"], "y": volume.xindexes["y"]},
    )
