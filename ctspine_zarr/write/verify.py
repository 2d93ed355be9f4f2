"""Check a ctspine store end to end: checksums, missing chunks, metadata, catalogue, sources.

:func:`verify` reads every chunk of every case (so every CRC32C is checked), parses every
shard index (a missing shard or inner chunk reads back as fill values without an error, so
it is only visible there), compares each consolidated metadata document with the arrays'
own ``zarr.json`` and the catalogue with the case groups, and, given the raw tree, compares
every case with its source files voxel for voxel. Problems are collected, never raised, in a
:class:`VerifyReport`.
"""

from __future__ import annotations

import os
import time
import warnings
from typing import Any

import zarr
from zarr.abc.store import Store

from ..errors import StoreError
from ..io.catalogue import scan_cases
from ..io.location import Location
from ..io.store import check_format, refresh_listings, to_store
from ..parallel import with_progress
from ..schema import CASE_DIM, CASES_GROUP, COMPLETE_KEY, INTERNAL_DIR
from .verifylevels import check_levels
from .verifyreport import ERROR, WARNING, VerifyReport
from .verifysources import check_against
from .verifystore import (
    catalogue_ids,
    check_case,
    check_catalogue,
    check_consolidated,
    check_root_cases,
)

__all__ = ["verify"]


def verify(
    location: str | os.PathLike[str] | Store,
    *,
    against: str | os.PathLike[str] | None = None,
    storage_options: dict[str, Any] | None = None,
    raw_storage_options: dict[str, Any] | None = None,
    progress: bool = False,
) -> VerifyReport:
    """Verify a ctspine store; problems are reported, never raised.

    Checks, in order:

    1. the consolidated metadata of the root and of every complete case group exists and
       lists exactly the group's arrays, each with the metadata of its own ``zarr.json``;
    2. for every complete case: every shard of ``image`` and ``label`` exists and its index
       passes its CRC32C and lists every chunk inside the array (a missing shard or chunk
       reads back as fill values without an error); every chunk decodes and passes its
       CRC32C (one shard at a time, then slice by slice to name the bad slice); shapes and
       dtype match the case attrs; ``slice_vertebrae`` and the ``vertebrae`` and
       ``other_label_values`` attrs match the label map; the stored NIfTI headers parse, are
       exactly the bytes before their ``vox_offset`` and match ``source_shape``;
    3. the catalogue lists exactly the complete case groups, and every catalogue column
       (``n_slices``, ``n_y``, ``n_x``, ``source``, spacing, counts, boxes, ...) equals
       what the case attrs give; a split that differs is a warning;
    4. a case group without ``complete: true`` is an unfinished write: a warning, or an
       error when the catalogue lists it;
    5. the downsampled levels a case lists (``ctspine-zarr pyramid``): listed in its
       consolidated metadata as their ``zarr.json`` say, of the right shape and dtype, every
       shard and chunk present and decoding;
    6. with ``against``: every case of the raw tree is in the store and equals its source
       files voxel for voxel (image and label), header bytes and geometry included.

    Parameters
    ----------
    location
        Local path, fsspec URL or zarr store of the ctspine store.
    against
        Raw tree (folder or fsspec URL holding ``rawdata/``) to compare every case with.
    storage_options, raw_storage_options
        fsspec options for the store URL and the raw URL.
    progress
        Show progress bars.

    Returns
    -------
    VerifyReport
    """
    started = time.perf_counter()
    shown = os.fspath(location) if isinstance(location, str | os.PathLike) else repr(location)
    report = VerifyReport(location=shown, against=None if against is None else str(against))
    try:
        _verify(report, location, against, storage_options, raw_storage_options, progress)
    except Exception as err:  # report whatever stopped the checks, never raise it
        report.add(None, None, None, f"verification stopped: {err!r}", "unreadable")
    finally:
        report.seconds = time.perf_counter() - started
    return report


def _verify(
    report: VerifyReport,
    location: str | os.PathLike[str] | Store,
    against: str | os.PathLike[str] | None,
    storage_options: dict[str, Any] | None,
    raw_storage_options: dict[str, Any] | None,
    progress: bool,
) -> None:
    store = to_store(location, storage_options=storage_options)
    refresh_listings(store)
    root_arrays = _root_arrays(report, store, location)
    if root_arrays is None:
        return
    listed = catalogue_ids(report, root_arrays)
    nodes = _case_groups(report, store)
    complete = _complete_cases(report, nodes, listed)
    arrays = _check_cases(report, store, nodes, complete, progress)
    if listed is not None:
        check_catalogue(report, root_arrays, listed, complete, set(nodes))
        check_root_cases(report, Location.resolve(store), listed)
    elif complete and CASE_DIM not in root_arrays:
        report.add(None, CASE_DIM, None, "no catalogue, but complete cases exist", "catalogue")
    if against is not None:
        check_against(
            report, complete, arrays, set(nodes), str(against), raw_storage_options, progress
        )


def _root_arrays(
    report: VerifyReport, store: Store, location: str | os.PathLike[str] | Store
) -> dict[str, zarr.Array] | None:
    """The root's arrays, its consolidated metadata checked; None when it is no ctspine store."""
    try:
        # through its own zarr.json: its arrays are read with their current metadata
        root = zarr.open_group(store, mode="r", zarr_format=3, use_consolidated=False)
        check_format(root.attrs, location)
    except StoreError as err:
        report.add(None, None, None, str(err), "metadata")
        return None
    except (
        FileNotFoundError,
        zarr.errors.GroupNotFoundError,
        zarr.errors.ContainsArrayError,
    ) as err:
        report.add(None, None, None, f"not a readable Zarr v3 group: {err}", "metadata")
        return None
    with_document = zarr.open_group(store, mode="r", zarr_format=3)
    with warnings.catch_warnings():  # the writer's folder (.ctspine) while an ingest runs
        warnings.filterwarnings("ignore", f"Object at {INTERNAL_DIR} is not recognized")
        root_arrays = dict(root.arrays())
    check_consolidated(report, None, with_document.metadata.consolidated_metadata, root_arrays)
    return root_arrays


def _case_groups(report: VerifyReport, store: Store) -> dict[str, zarr.Group]:
    """The case groups listed under ``cases/`` that open, each through its own metadata."""
    loc = Location.resolve(store)
    scan = scan_cases(loc)
    if not loc.exists(f"{CASES_GROUP}/zarr.json"):
        report.add(None, CASES_GROUP, None, "the cases group is missing", "missing")
    for case_id, problem in sorted(scan.damaged.items()):
        report.add(case_id, None, None, problem, "metadata")
    nodes: dict[str, zarr.Group] = {}
    for case_id in sorted(set(scan.complete) | scan.unfinished):
        try:
            nodes[case_id] = zarr.open_group(
                store, path=f"{CASES_GROUP}/{case_id}", mode="r", zarr_format=3
            )
        except (FileNotFoundError, zarr.errors.GroupNotFoundError, ValueError):
            message = "unfinished write (no zarr.json); the next ingest rewrites it"
            report.add(case_id, None, None, message, "unfinished", WARNING)
    return nodes


def _complete_cases(
    report: VerifyReport, nodes: dict[str, zarr.Group], listed: list[str] | None
) -> dict[str, dict[str, Any]]:
    """The attrs of the complete case groups; the others are reported as unfinished writes."""
    complete: dict[str, dict[str, Any]] = {}
    for case_id, node in nodes.items():
        attrs = dict(node.attrs)
        if attrs.get(COMPLETE_KEY) is True:
            complete[case_id] = attrs
            continue
        in_catalogue = listed is not None and case_id in listed
        report.add(
            case_id,
            None,
            None,
            "unfinished write (no complete: true); the next ingest rewrites it"
            + ("; yet the catalogue lists it" if in_catalogue else ""),
            "unfinished",
            ERROR if in_catalogue else WARNING,
        )
    return complete


def _check_cases(
    report: VerifyReport,
    store: Store,
    nodes: dict[str, zarr.Group],
    complete: dict[str, dict[str, Any]],
    progress: bool,
) -> dict[str, dict[str, zarr.Array]]:
    """Check every complete case; return the arrays of those whose arrays could be listed."""
    arrays: dict[str, dict[str, zarr.Array]] = {}
    for case_id in with_progress(complete, progress, "verify"):
        try:
            group = zarr.open_group(
                store, path=nodes[case_id].path, mode="r", zarr_format=3, use_consolidated=False
            )
            arrays[case_id] = dict(group.arrays())
            document = nodes[case_id].metadata.consolidated_metadata
            check_consolidated(report, case_id, document, arrays[case_id])
            check_case(report, store, case_id, complete[case_id], arrays[case_id])
            check_levels(report, store, case_id, nodes[case_id], complete[case_id])
        except Exception as err:  # an unexpected failure must not cost the other cases
            report.add(case_id, None, None, f"case unreadable: {err!r}", "unreadable")
        report.cases_checked += 1
    return arrays
