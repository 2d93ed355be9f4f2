"""Check a ctspine store end to end: checksums, missing chunks, metadata, catalogue, sources.

:func:`verify` reads every chunk of every case (so every CRC32C is checked), parses every
shard index (a missing shard or inner chunk reads back as fill values without an error, so
it is only visible there), compares each consolidated metadata document with the arrays'
own ``zarr.json`` and the catalogue with the case groups, and, given the raw tree, compares
every case with its source files voxel for voxel. Problems are collected, never raised, in a
:class:`VerifyReport`.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
import warnings
from collections.abc import Coroutine, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import numpy as np
import zarr
from zarr.abc.store import Store
from zarr.buffer import default_buffer_prototype

from ..compat import sync
from ..errors import InvalidCaseError, StoreError
from ..io.catalogue import build_catalogue, scan_cases
from ..io.export import header_from_bytes
from ..io.labelindex import index_labels
from ..io.layout import RawCase, find_cases
from ..io.location import Location
from ..io.nifti import CanonicalVolume, read_pair
from ..io.remote import url_to_fs
from ..io.shardformat import EMPTY_ENTRY, IndexFormat, sharding_config
from ..io.store import check_format, refresh_listings, to_store
from ..parallel import progress_bar
from ..schema import (
    CASE_DIM,
    CASES_GROUP,
    COMPLETE_KEY,
    IMAGE,
    IMAGE_HEADER,
    INTERNAL_DIR,
    LABEL,
    LABEL_HEADER,
    SLICE_VERTEBRAE,
)

__all__ = ["ERROR", "WARNING", "Problem", "VerifyReport", "verify"]

#: Severity of a problem that makes :attr:`VerifyReport.ok` false.
ERROR = "error"
#: Severity of a problem that is reported but leaves the store usable.
WARNING = "warning"

_CASE_ARRAYS = (IMAGE, LABEL, SLICE_VERTEBRAE, IMAGE_HEADER, LABEL_HEADER)
_SHOWN_PROBLEMS = 50
_T = TypeVar("_T")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the store.

    Attributes
    ----------
    case_id
        The case, or None for the root (catalogue, metadata).
    array
        The array (``image``, ``label``, a catalogue variable, ...), or None.
    slice
        Index along ``z`` of the chunk at fault, or None.
    message
        What is wrong.
    kind
        ``checksum``, ``missing``, ``metadata``, ``catalogue``, ``unfinished``, ``index``,
        ``header``, ``source`` or ``unreadable``.
    severity
        :data:`ERROR` or :data:`WARNING`.
    """

    case_id: str | None
    array: str | None
    slice: int | None
    message: str
    kind: str = "unreadable"
    severity: str = ERROR

    def __str__(self) -> str:
        where = self.case_id or "<root>"
        if self.array:
            where += f"/{self.array}"
        if self.slice is not None:
            where += f"[z={self.slice}]"
        return f"{self.severity:<8}{self.kind:<11}{where}: {self.message}"


@dataclass
class VerifyReport:
    """The outcome of :func:`verify`.

    ``ok`` is true when no problem is an error. Warnings are: an unfinished case write that
    the catalogue does not list (the next ingest rewrites it), a case whose split in the
    catalogue differs from its own attrs (the split file changed after it was ingested),
    problems of the raw tree's layout, store cases absent from the raw tree, and source
    files that changed but hold the same voxels.
    """

    location: str
    against: str | None = None
    problems: list[Problem] = field(default_factory=list)
    cases_checked: int = 0
    chunks_checked: int = 0
    raw_cases_checked: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether no problem is an error."""
        return not self.errors

    @property
    def errors(self) -> list[Problem]:
        """The error-level problems."""
        return [p for p in self.problems if p.severity == ERROR]

    @property
    def warnings(self) -> list[Problem]:
        """The warning-level problems."""
        return [p for p in self.problems if p.severity == WARNING]

    def add(
        self,
        case_id: str | None,
        array: str | None,
        slice_: int | None,
        message: str,
        kind: str,
        severity: str = ERROR,
    ) -> None:
        """Record one problem."""
        self.problems.append(Problem(case_id, array, slice_, message, kind, severity))

    def to_json(self) -> dict[str, Any]:
        """Return the report as a JSON-able dict (with ``ok``)."""
        out = asdict(self)
        out["ok"] = self.ok
        return out

    def summary(self) -> str:
        """Return a few lines a person reads: counts, the verdict and the problems."""
        verdict = "OK" if self.ok else "FAILED"
        lines = [
            f"store      {self.location}",
            f"checked    {self.cases_checked} case(s), {self.chunks_checked} chunk(s)"
            + (f", {self.raw_cases_checked} against {self.against}" if self.against else ""),
            f"result     {verdict}: {len(self.errors)} error(s), {len(self.warnings)} warning(s)",
            f"time       {self.seconds:.1f} s",
        ]
        shown = sorted(self.problems, key=lambda p: p.severity != ERROR)[:_SHOWN_PROBLEMS]
        lines.extend(str(p) for p in shown)
        if len(self.problems) > len(shown):
            lines.append(f"... and {len(self.problems) - len(shown)} more")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


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
    5. with ``against``: every case of the raw tree is in the store and equals its source
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
    try:
        # through its own zarr.json: its arrays are read with their current metadata
        root = zarr.open_group(store, mode="r", zarr_format=3, use_consolidated=False)
        check_format(root.attrs, location)
    except StoreError as err:
        report.add(None, None, None, str(err), "metadata")
        return
    except (
        FileNotFoundError,
        zarr.errors.GroupNotFoundError,
        zarr.errors.ContainsArrayError,
    ) as err:
        report.add(None, None, None, f"not a readable Zarr v3 group: {err}", "metadata")
        return
    with_document = zarr.open_group(store, mode="r", zarr_format=3)
    with warnings.catch_warnings():  # the writer's folder (.ctspine) while an ingest runs
        warnings.filterwarnings("ignore", f"Object at {INTERNAL_DIR} is not recognized")
        root_arrays = dict(root.arrays())
    _check_consolidated(report, None, with_document.metadata.consolidated_metadata, root_arrays)
    listed = _catalogue_ids(report, root_arrays)

    # case groups as listed under cases/; each keeps its own consolidated metadata
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
    complete: dict[str, dict[str, Any]] = {}
    arrays: dict[str, dict[str, zarr.Array]] = {}
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
    for case_id in _bar(complete, progress, "verify"):
        try:
            group = zarr.open_group(
                store, path=nodes[case_id].path, mode="r", zarr_format=3, use_consolidated=False
            )
            arrays[case_id] = dict(group.arrays())
            document = nodes[case_id].metadata.consolidated_metadata
            _check_consolidated(report, case_id, document, arrays[case_id])
            _check_case(report, store, case_id, complete[case_id], arrays[case_id])
        except Exception as err:  # an unexpected failure must not cost the other cases
            report.add(case_id, None, None, f"case unreadable: {err!r}", "unreadable")
        report.cases_checked += 1
    if listed is not None:
        _check_catalogue(report, root_arrays, listed, complete, set(nodes))
    elif complete and CASE_DIM not in root_arrays:
        report.add(None, CASE_DIM, None, "no catalogue, but complete cases exist", "catalogue")
    if against is not None:
        _check_against(
            report, complete, arrays, set(nodes), str(against), raw_storage_options, progress
        )


def _bar(items: Iterable[Any], enabled: bool, desc: str) -> Iterable[Any]:
    listed = list(items)
    bar = progress_bar(len(listed), desc=desc, enabled=enabled)
    try:
        for item in listed:
            yield item
            bar.update()
    finally:
        bar.close()


# --------------------------------------------------------------------------------------------
# Consolidated metadata
# --------------------------------------------------------------------------------------------


def _metadata_json(metadata: Any) -> str:
    return json.dumps(metadata.to_dict(), sort_keys=True, default=str)


def _check_consolidated(
    report: VerifyReport, case_id: str | None, document: Any, arrays: dict[str, zarr.Array]
) -> None:
    """Compare a group's consolidated metadata with its arrays, as their zarr.json give them.

    Readers open the root and each case through these documents only, so a stale entry
    makes them see an array as it was, not as it is.
    """
    where = f"the consolidated metadata of {'case ' + case_id if case_id else 'the root'}"
    if document is None:
        place = f"in case group {case_id}" if case_id else "at the root"
        report.add(case_id, None, None, f"no consolidated metadata {place}", "metadata")
        return
    listed = document.metadata
    for name in sorted(set(listed) | set(arrays)):
        if name not in arrays:
            message = f"{where} lists {name}, which is not an array of the group"
        elif name not in listed:
            message = f"{name} is missing from {where}"
        elif _metadata_json(listed[name]) != _metadata_json(arrays[name].metadata):
            message = f"{where} holds stale metadata of {name} (it differs from its zarr.json)"
        else:
            continue
        report.add(case_id, name, None, message, "metadata")


# --------------------------------------------------------------------------------------------
# Cases: shards, chunks, attrs, headers
# --------------------------------------------------------------------------------------------


def _check_case(
    report: VerifyReport,
    store: Store,
    case_id: str,
    attrs: dict[str, Any],
    arrays: dict[str, zarr.Array],
) -> None:
    for name in _CASE_ARRAYS:
        if name not in arrays:
            report.add(case_id, name, None, "array is missing", "missing")
    shape = tuple(attrs.get("shape_zyx") or ())
    for name in (IMAGE, LABEL):
        array = arrays.get(name)
        if array is not None and array.shape != shape:
            message = f"shape {array.shape} differs from shape_zyx {shape}"
            report.add(case_id, name, None, message, "index")
    if IMAGE in arrays:
        image = arrays[IMAGE]
        if str(image.dtype) != attrs.get("image_dtype"):
            message = f"dtype {image.dtype} differs from image_dtype {attrs.get('image_dtype')}"
            report.add(case_id, IMAGE, None, message, "index")
        _check_volume(report, store, case_id, IMAGE, image)
    if LABEL in arrays:
        label = _check_volume(report, store, case_id, LABEL, arrays[LABEL], keep=True)
        if label is not None:
            _check_label_index(report, case_id, attrs, arrays.get(SLICE_VERTEBRAE), label)
    for name in (IMAGE_HEADER, LABEL_HEADER):
        if name in arrays:
            _check_header(report, case_id, name, arrays[name], attrs)


def _check_volume(
    report: VerifyReport,
    store: Store,
    case_id: str,
    name: str,
    array: zarr.Array,
    *,
    keep: bool = False,
) -> np.ndarray | None:
    """Check the shards of a ``(z, y, x)`` array, then decode it one shard at a time.

    Returns the whole array when ``keep`` is true and no problem was found.
    """
    n_problems = len(report.problems)
    n_z, inner = array.shape[0], array.chunks[0]
    report.chunks_checked += math.ceil(n_z / inner)
    config, shards = sharding_config(array), array.shards
    index = None
    if config is not None and shards is not None:
        index = IndexFormat.of(config, shards[0] // inner)
    skip: set[int] = set()
    whole_slices = shards is not None and shards[1:] == array.chunks[1:] == array.shape[1:]
    if index is None or shards is None or not whole_slices:
        message = "not sharded in whole axial slices as the format requires"
        report.add(case_id, name, None, message, "metadata")
        step = inner
    else:
        step = shards[0]
        starts = range(0, n_z, step)
        results = sync(_gather([_check_shard(store, array, index, z0, step) for z0 in starts]))
        for z0, (found, whole) in zip(starts, results, strict=True):
            for z, kind, message in found:
                report.add(case_id, name, z, message, kind)
            if whole:
                skip.add(z0)
    data = np.empty(array.shape, dtype=array.dtype) if keep else None
    for z0 in range(0, n_z, step):
        if z0 not in skip:
            _decode(report, case_id, name, array, z0, min(n_z, z0 + step), data)
    return data if len(report.problems) == n_problems else None


async def _gather(tasks: list[Coroutine[Any, Any, _T]]) -> list[_T]:
    return list(await asyncio.gather(*tasks))


def _decode(
    report: VerifyReport,
    case_id: str,
    name: str,
    array: zarr.Array,
    z0: int,
    z1: int,
    data: np.ndarray | None,
) -> None:
    """Decode slices ``z0:z1`` (into ``data``); on a failure, slice by slice to name the bad."""
    try:
        block = np.asarray(array[z0:z1])
    except Exception as err:
        if z1 - z0 == 1:
            report.add(case_id, name, z0, f"chunk unreadable: {err}", "checksum")
        else:
            for z in range(z0, z1):
                _decode(report, case_id, name, array, z, z + 1, data)
        return
    if data is not None:
        data[z0:z1] = block


async def _check_shard(
    store: Store, array: zarr.Array, index: IndexFormat, z0: int, step: int
) -> tuple[list[tuple[int, str, str]], bool]:
    """Check the shard object of slices ``z0:z0 + step`` and its index.

    Returns the problems found as ``(z, kind, message)``, and whether the whole shard is
    missing or unreadable (so that decoding it would only repeat the problem).
    """
    key = f"{array.path}/" + array.metadata.encode_chunk_key((z0 // step, 0, 0))
    z1, inner = min(array.shape[0], z0 + step), array.chunks[0]
    n_chunks = math.ceil((z1 - z0) / inner)
    try:
        size = await store.getsize(key)
        prototype = default_buffer_prototype()
        fits = size >= index.size
        buf = await store.get(key, prototype, index.byte_range()) if fits else None
    except FileNotFoundError:
        message = f"shard {key} is missing: {n_chunks} chunk(s), slices {z0}..{z1 - 1}"
        return [(z0, "missing", message)], True
    except Exception as err:
        return [(z0, "unreadable", f"shard {key} unreadable: {err!r}")], True
    if buf is None:
        return [(z0, "missing", f"shard {key}: no index in its {size} bytes")], True
    try:
        entries = index.decode(buf.to_bytes())
    except ValueError:
        return [(z0, "checksum", f"shard {key}: the shard index fails its CRC32C")], True
    low, high = index.data_bounds(size)
    problems = []
    for i, (offset, nbytes) in enumerate(entries[:n_chunks].tolist()):
        z = z0 + i * inner
        if offset == nbytes == EMPTY_ENTRY:
            problems.append((z, "missing", f"chunk of slice {z} is missing from shard {key}"))
        elif offset < low or offset + nbytes > high:
            message = f"chunk of slice {z} lies outside shard {key} ({offset}+{nbytes})"
            problems.append((z, "missing", message))
    return problems, False


def _check_label_index(
    report: VerifyReport,
    case_id: str,
    attrs: dict[str, Any],
    array: zarr.Array | None,
    label: np.ndarray,
) -> None:
    """Compare ``slice_vertebrae`` and the ``vertebrae`` attrs with the label map just read."""
    index = index_labels(label)
    if array is not None:
        try:
            stored = np.asarray(array[...])
        except Exception as err:
            report.add(case_id, SLICE_VERTEBRAE, None, f"unreadable: {err}", "checksum")
        else:
            expected = index.slice_vertebrae
            if stored.shape != expected.shape:
                message = f"shape {stored.shape} differs from {expected.shape}"
                report.add(case_id, SLICE_VERTEBRAE, None, message, "index")
            elif not np.array_equal(stored, expected):
                rows = np.flatnonzero((stored != expected).any(axis=1))
                message = f"disagrees with the label map on {rows.size} slice(s)"
                report.add(case_id, SLICE_VERTEBRAE, int(rows[0]), message, "index")
    if attrs.get("vertebrae") != index.to_attrs():
        message = "attr vertebrae (voxel counts, boxes) disagrees with the label map"
        report.add(case_id, LABEL, None, message, "index")
    others = {str(k): v for k, v in index.other_values.items()}
    if attrs.get("other_label_values") != others:
        message = "attr other_label_values disagrees with the label map"
        report.add(case_id, LABEL, None, message, "index")


def _check_header(
    report: VerifyReport, case_id: str, name: str, array: zarr.Array, attrs: dict[str, Any]
) -> None:
    try:
        data = np.asarray(array[...], dtype=np.uint8).tobytes()
    except Exception as err:
        report.add(case_id, name, None, f"unreadable: {err}", "checksum")
        return
    try:
        header = header_from_bytes(data)
    except Exception as err:
        report.add(case_id, name, None, f"not the source's NIfTI header bytes: {err}", "header")
        return
    shape = [int(n) for n in header.get_data_shape()]
    if shape[:3] != list(attrs.get("source_shape") or [])[:3]:
        report.add(case_id, name, None, f"header shape {shape} differs from source_shape", "header")


# --------------------------------------------------------------------------------------------
# Catalogue
# --------------------------------------------------------------------------------------------


def _catalogue_ids(report: VerifyReport, root_arrays: dict[str, zarr.Array]) -> list[str] | None:
    """Return the case ids the catalogue lists, or None when it has none (or unreadable)."""
    if CASE_DIM not in root_arrays:
        return None
    try:
        return [str(v) for v in np.asarray(root_arrays[CASE_DIM][...]).ravel().tolist()]
    except Exception as err:
        report.add(None, CASE_DIM, None, f"unreadable: {err}", "catalogue")
        return None


def _check_catalogue(
    report: VerifyReport,
    root_arrays: dict[str, zarr.Array],
    listed: list[str],
    complete: dict[str, dict[str, Any]],
    groups: set[str],
) -> None:
    """Compare the root catalogue arrays with the complete case groups' attrs.

    A listed case whose group is unfinished is reported by the caller.
    """
    for case_id in sorted(set(listed) - groups):
        report.add(case_id, None, None, "listed in the catalogue but no case group", "catalogue")
    for case_id in sorted(set(complete) - set(listed)):
        message = "complete case group missing from the catalogue"
        report.add(case_id, None, None, message, "catalogue")
    common = {c: complete[c] for c in listed if c in complete}
    if not common:
        return
    try:
        expected = build_catalogue(common)
    except Exception as err:
        report.add(None, None, None, f"case attrs do not build a catalogue: {err}", "catalogue")
        return
    ids = [str(c) for c in expected[CASE_DIM].values]
    rows = [listed.index(c) for c in ids]
    for var in map(str, expected.data_vars):
        if var not in root_arrays:
            report.add(None, var, None, "catalogue variable is missing", "catalogue")
            continue
        try:
            got = np.asarray(root_arrays[var][...])
        except Exception as err:
            report.add(None, var, None, f"unreadable: {err}", "catalogue")
            continue
        if got.shape[:1] != (len(listed),):
            message = f"length {got.shape[:1]} differs from the {len(listed)} cases"
            report.add(None, var, None, message, "catalogue")
            continue
        for case_id, a, b in zip(
            ids, got[rows].tolist(), expected[var].values.tolist(), strict=True
        ):
            if a == b:
                continue
            if var == "split":
                message = (
                    f"catalogue says {a!r}, the case attrs {b!r} (the split file changed "
                    "after the case was ingested)"
                )
                report.add(case_id, var, None, message, "catalogue", WARNING)
            else:
                report.add(
                    case_id, var, None, f"catalogue says {a}, the case attrs {b}", "catalogue"
                )


# --------------------------------------------------------------------------------------------
# Against the raw tree
# --------------------------------------------------------------------------------------------


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


def _check_against(
    report: VerifyReport,
    complete: dict[str, dict[str, Any]],
    arrays: dict[str, dict[str, zarr.Array]],
    groups: set[str],
    raw: str,
    raw_storage_options: dict[str, Any] | None,
    progress: bool,
) -> None:
    options = raw_storage_options or {}
    tree = find_cases(raw, storage_options=options)
    for case, problem in tree.problems:
        report.add(case.case_id, None, None, f"raw tree: {problem}", "source", WARNING)
    raw_ids = {c.case_id for c in tree.cases}
    for case_id in sorted(set(complete) - raw_ids):
        report.add(case_id, None, None, "in the store but not in the raw tree", "source", WARNING)
    for case in _bar(tree.cases, progress, "against raw"):
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
        assert case.image is not None and case.label is not None
        fs, image_path = url_to_fs(case.image, options)
        _, label_path = url_to_fs(case.label, options)
        image, label = read_pair(image_path, label_path, case_id=case_id, fs=fs)
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
    geometry = {
        "affine": image.affine.tolist(),
        "source_affine": image.source_affine.tolist(),
        "source_orientation": image.ornt.tolist(),
        "source_shape": list(image.source_shape),
    }
    for key, value in geometry.items():
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
