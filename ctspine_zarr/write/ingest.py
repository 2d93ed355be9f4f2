"""Rewrite every NIfTI pair of a raw tree into one consolidated, slice-chunked Zarr store.

Safety first (see ``docs/format.md``, "Writing"):

- the store location is claimed only if it is a ctspine store or empty; anything else is
  refused unless ``force_clear`` names and deletes it, and a store inside the raw tree (or
  the raw tree inside the store) is always refused;
- one ingest at a time holds the store's :class:`~ctspine_zarr.write.lock.WriterLock`;
- each case is written by one task (in parallel with dask) beside the current version
  (``.ctspine/staging/``), its ``zarr.json`` last, then switched into ``cases/<case_id>``
  (an atomic exchange of the two folders locally); the old version is deleted after the
  catalogue switched;
- the catalogue is published last, in one atomic write of the root ``zarr.json``;
- a rerun skips a case only if its sources are unchanged and its arrays are intact.
"""

from __future__ import annotations

import json
import os
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import dask
import fsspec
import numpy as np
import zarr
from zarr.abc.store import Store

from ..errors import InvalidCaseError, printable
from ..io.catalogue import (
    build_catalogue,
    consolidate,
    publish_catalogue,
    scan_cases,
)
from ..io.labelindex import index_labels
from ..io.layout import RawCase, find_cases
from ..io.location import Location
from ..io.nifti import CanonicalVolume, read_pair
from ..io.remote import url_to_fs, with_default_options
from ..io.shardwriter import write_array
from ..io.store import forget, is_url
from ..parallel import check_scheduler, check_workers, is_local, progress_bar, run_tasks
from ..schema import (
    CASES_GROUP,
    COMPLETE_KEY,
    IMAGE,
    IMAGE_HEADER,
    LABEL,
    LABEL_HEADER,
    SHARD_CRC_KEY,
    SLICE_VERTEBRAE,
    SLICES_PER_SHARD,
    VERTEBRA_DIM,
    VOLUME_DIMS,
    encoding_name,
    image_encoding,
    label_compressors,
)
from .claim import STAGING, TRASH, claim, finish, prepare, refuse_nesting, remove_internal_dir
from .integrity import case_problem
from .lock import WriterLock

__all__ = ["CaseOutcome", "IngestReport", "ingest", "ingest_case"]


@dataclass
class CaseOutcome:
    """What happened to one case.

    ``status`` is ``ingested``, ``skipped`` (unchanged source), ``refused`` or ``failed``.
    """

    case_id: str
    source: str
    status: str
    file: str = ""
    problem: str = ""
    n_slices: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    seconds: float = 0.0
    #: the traceback of an unexpected failure (in the JSON report, not the summary)
    detail: str = ""


@dataclass
class IngestReport:
    """The outcome of :func:`ingest`: one :class:`CaseOutcome` per case found."""

    raw: str
    store: str
    outcomes: list[CaseOutcome] = field(default_factory=list)
    split_without_files: list[str] = field(default_factory=list)
    catalogue_cases: int = 0
    seconds: float = 0.0
    #: objects deleted from the location by ``force_clear`` (at most the first 100)
    cleared: list[str] = field(default_factory=list)
    #: cases removed by ``overwrite`` because the raw tree no longer holds them
    removed: list[str] = field(default_factory=list)
    #: cases rewritten because they were damaged (``{case_id: problem}``)
    repaired: dict[str, str] = field(default_factory=dict)

    def count(self, status: str) -> int:
        """Number of cases with the given status."""
        return sum(o.status == status for o in self.outcomes)

    @property
    def ok(self) -> bool:
        """Whether every case found was ingested or was already complete."""
        return all(o.status in ("ingested", "skipped") for o in self.outcomes)

    @property
    def problems(self) -> list[CaseOutcome]:
        """The refused and failed cases."""
        return [o for o in self.outcomes if o.status in ("refused", "failed")]

    def to_json(self) -> dict[str, Any]:
        """Return the report as a JSON-able dict."""
        return asdict(self)

    def summary(self) -> str:
        """Return a few lines a person reads at the end of an ingest."""
        done = [o for o in self.outcomes if o.status == "ingested"]
        slices = sum(o.n_slices for o in done)
        bytes_in = sum(o.bytes_in for o in done)
        bytes_out = sum(o.bytes_out for o in done)
        ratio = f"{bytes_out / bytes_in:.3f}x" if bytes_in else "n/a"
        lines = [
            f"store      {self.store}",
            f"cases      {self.count('ingested')} ingested, {self.count('skipped')} unchanged, "
            f"{self.count('refused')} refused, {self.count('failed')} failed; "
            f"{self.catalogue_cases} in the catalogue",
            f"slices     {slices} written"
            + (f"; {len(self.repaired)} damaged case(s) rewritten" if self.repaired else "")
            + (f"; {len(self.removed)} case(s) removed (--overwrite)" if self.removed else ""),
            f"bytes      {_human(bytes_in)} in, {_human(bytes_out)} out ({ratio})",
            f"time       {self.seconds:.1f} s",
        ]
        if self.split_without_files:
            shown = ", ".join(self.split_without_files[:5])
            more = len(self.split_without_files) - 5
            lines.append(
                f"split file lists {len(self.split_without_files)} case(s) without files: "
                f"{shown}{f' and {more} more' if more > 0 else ''}"
            )
        for o in self.problems:
            lines.append(f"{o.status:<10} {o.case_id}: {o.problem}")
        return "\n".join(lines)


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def _fingerprint_matches(
    stored: dict[str, Any], case: RawCase, raw_storage_options: dict[str, Any] | None
) -> bool:
    files = stored.get("files", {})
    for role, path in (("image", case.image), ("label", case.label)):
        fp = files.get(role)
        if not fp or path is None:
            return False
        fs, local = url_to_fs(path, raw_storage_options)
        try:
            info = fs.info(local)
        except FileNotFoundError:
            return False
        if int(info.get("size", -1)) != fp["size"]:
            return False
        mtime = info.get("mtime", info.get("LastModified"))
        if hasattr(mtime, "timestamp"):
            mtime = mtime.timestamp()
        if fp.get("mtime") is not None and mtime is not None and float(mtime) != fp["mtime"]:
            return False
    return True


def _write_case(
    loc: Location,
    case: RawCase,
    image: CanonicalVolume,
    label: CanonicalVolume,
    *,
    codec: str,
    slices_per_shard: int,
    encode_threads: int,
) -> int:
    """Write one case beside its current version, then switch to it. Returns the bytes stored.

    Locally the new version is written to ``.ctspine/staging/<token>`` and exchanged with
    ``cases/<id>`` in one atomic rename. On object stores a case seen for the first time is
    written in place (readers find it only once its ``zarr.json`` exists); a new version of
    an existing case is staged first, then copied over the old one, its ``zarr.json`` last;
    readers holding the old version's metadata notice the replaced shards by their index
    checksums.
    """
    final = f"{CASES_GROUP}/{case.case_id}"
    token = uuid.uuid4().hex
    if loc.local_root is None and not loc.exists(f"{final}/zarr.json"):
        loc.delete_prefix(final)  # leftovers of an unfinished write of ours, never readable
        target = final
    else:
        target = f"{STAGING}/{token}"
    index = index_labels(label.data)
    group = zarr.create_group(loc.store, path=target, attributes={COMPLETE_KEY: False})
    n_z, n_y, n_x = image.data.shape
    shards = (max(1, min(slices_per_shard, n_z)), n_y, n_x)
    common: dict[str, Any] = dict(
        chunks=(1, n_y, n_x),
        shards=shards,
        dimension_names=VOLUME_DIMS,
        config={"write_empty_chunks": True},
    )
    encoding = image_encoding(codec, sample=image.data)
    arrays = [
        group.create_array(
            IMAGE,
            shape=image.data.shape,
            dtype=image.data.dtype,
            **encoding,
            fill_value=0,
            attributes={"units": "HU", "long_name": "CT intensity (scaled voxel values)"},
            **common,
        ),
        group.create_array(
            LABEL,
            shape=label.data.shape,
            dtype=np.uint8,
            compressors=label_compressors(),
            fill_value=0,
            attributes={"long_name": "vertebra label (VerSe numbering)"},
            **common,
        ),
    ]
    # the bytes zarr writes, without its per-chunk overhead
    checksums = {
        IMAGE: write_array(arrays[0], image.data, threads=encode_threads),
        LABEL: write_array(arrays[1], label.data, threads=encode_threads),
    }
    small = {
        SLICE_VERTEBRAE: (index.slice_vertebrae, ("z", VERTEBRA_DIM)),
        IMAGE_HEADER: (np.frombuffer(image.header_bytes, dtype=np.uint8), ("byte",)),
        LABEL_HEADER: (np.frombuffer(label.header_bytes, dtype=np.uint8), ("byte",)),
    }
    for name, (data, dims) in small.items():
        arrays.append(group.create_array(name, data=data, dimension_names=dims))
    attrs = {
        "case_id": case.case_id,
        "source": case.source,
        "split": case.split,
        "shape_zyx": list(image.data.shape),
        "spacing_zyx": list(image.spacing_zyx),
        "affine": image.affine.tolist(),
        "source_affine": image.source_affine.tolist(),
        "source_orientation": image.ornt.tolist(),
        "source_shape": list(image.source_shape),
        "image_dtype": str(image.data.dtype),
        "image_codec": encoding_name(encoding),
        "has_nonfinite": image.has_nonfinite,
        "geometry_notes": image.warnings,
        "vertebrae": index.to_attrs(),
        "other_label_values": {str(k): v for k, v in index.other_values.items()},
        "files": {"image": image.fingerprint.to_json(), "label": label.fingerprint.to_json()},
        SHARD_CRC_KEY: {name: crcs for name, crcs in checksums.items() if crcs},
        COMPLETE_KEY: True,
    }
    stored = sum(int(a.nbytes_stored()) for a in arrays)
    # one write makes the case complete and its consolidated metadata visible together
    consolidate(group, attributes=attrs)
    if target != final:
        _switch(loc, target, final, token)
    return stored


def _switch(loc: Location, staged: str, final: str, token: str) -> None:
    """Put the complete version at ``staged`` in place of ``final``; the old goes to trash."""
    trash = f"{TRASH}/{token}"
    if loc.local_root is not None:
        if not (loc.local_root / final).exists():
            loc.move(staged, final)
        elif loc.exchange(staged, final):
            loc.move(staged, trash)  # the exchange left the old version there
        else:  # no atomic exchange here: readers may briefly find no case (an error)
            loc.move(final, trash)
            loc.move(staged, final)
        return
    src = staged + "/"
    new = {key[len(src) :] for key in loc.keys(src)}
    for rel in sorted(new - {"zarr.json"}):
        data = loc.read(src + rel)
        assert data is not None
        loc.put(f"{final}/{rel}", data)
    for key in loc.keys(final + "/"):
        rel = key[len(final) + 1 :]
        if rel not in new:
            loc.delete(key)
    document = loc.read(src + "zarr.json")
    assert document is not None
    loc.put(f"{final}/zarr.json", document)
    loc.delete_prefix(staged)


def ingest_case(
    case: RawCase,
    store: str | os.PathLike | Store,
    *,
    storage_options: dict[str, Any] | None = None,
    raw_storage_options: dict[str, Any] | None = None,
    codec: str = "default",
    slices_per_shard: int = SLICES_PER_SHARD,
    encode_threads: int = 1,
) -> CaseOutcome:
    """Read, check and write one case; never raises for a bad case.

    Parameters
    ----------
    case
        The pair to ingest.
    store
        The (already initialised) ctspine store.
    storage_options, raw_storage_options
        fsspec options for a URL store and for URL source files.
    codec
        Image codec name (see :func:`ctspine_zarr.schema.image_encoding`).
    slices_per_shard
        Axial slices per shard.
    encode_threads
        Size of the process's shared encoding pool (1: encode in the calling thread).

    Returns
    -------
    CaseOutcome
        ``ingested``, or ``refused`` (bad input, named) or ``failed`` (unexpected error).
    """
    start = time.perf_counter()
    outcome = CaseOutcome(case_id=case.case_id, source=case.source, status="ingested")
    try:
        assert case.image is not None and case.label is not None
        fs, image_path = url_to_fs(case.image, raw_storage_options)
        _, label_path = url_to_fs(case.label, raw_storage_options)
        image, label = read_pair(image_path, label_path, case_id=case.case_id, fs=fs)
        loc = Location.resolve(store, storage_options=storage_options)
        outcome.bytes_out = _write_case(
            loc,
            case,
            image,
            label,
            codec=codec,
            slices_per_shard=slices_per_shard,
            encode_threads=encode_threads,
        )
        outcome.n_slices = int(image.data.shape[0])
        outcome.bytes_in = image.fingerprint.size + label.fingerprint.size
    except InvalidCaseError as err:
        outcome.status, outcome.file, outcome.problem = "refused", err.path, str(err)
    except Exception as err:  # a bug or an I/O error must not cost the other cases
        outcome.status, outcome.file = "failed", case.image or ""
        outcome.problem = f"{type(err).__name__}: {err}"
        outcome.detail = traceback.format_exc(limit=3)
    outcome.seconds = time.perf_counter() - start
    return outcome


def _encode_threads(scheduler: Any, workers: int, n_cases: int) -> int:
    """Encoding threads per process: ``workers`` shared in one process (threads, sync).

    A process pool splits ``workers`` over the cases running at once; a cluster's workers
    keep to their own threads.
    """
    if scheduler in ("threads", "sync") or (is_local(scheduler) and workers == 1):
        return workers
    if scheduler == "processes":
        return max(1, workers // max(1, min(workers, n_cases)))
    return 1


def ingest(
    raw: str | os.PathLike,
    store: str | os.PathLike | Store,
    *,
    workers: int | None = None,
    scheduler: Any = "threads",
    overwrite: bool = False,
    force_clear: bool = False,
    repair: bool = False,
    storage_options: dict[str, Any] | None = None,
    raw_storage_options: dict[str, Any] | None = None,
    codec: str = "default",
    slices_per_shard: int = SLICES_PER_SHARD,
    progress: bool = False,
    report_path: str | os.PathLike | None = None,
    announce: Callable[[str], None] | None = None,
) -> IngestReport:
    """Ingest a CTSpine1K raw tree into a ctspine Zarr store.

    Parameters
    ----------
    raw
        Folder (or fsspec URL) that holds ``rawdata/`` and ``metadata/``.
    store
        Path or fsspec URL of the store; created if missing or empty, resumed if it is one.
    workers
        The local scheduler's parallelism (default: the number of CPUs). With ``"threads"``:
        that many cases at a time, whose slices encode on one shared pool of that many
        threads, so that the last cases get every thread. With ``"sync"``: one case at a
        time on that many encoding threads. With ``"processes"``: that many processes,
        each encoding on ``workers // cases at a time`` threads. ``workers=1`` ingests on one
        core. On a cluster each case encodes on its task's own thread.
    scheduler
        ``"threads"`` (default), ``"processes"`` or ``"sync"`` for a local dask scheduler
        (threads measured faster: zarr's codecs and ISA-L release the GIL, and processes
        pay a start-up and import per worker); ``"distributed"`` for a new
        ``distributed.LocalCluster`` of ``workers`` processes; a scheduler address
        (``"tcp://host:8786"``) or a ``distributed.Client`` to run the cases on an existing
        cluster (every worker must reach RAW and STORE). See :mod:`ctspine_zarr.parallel`.
    overwrite
        Rewrite every case of the raw tree, and drop the store's cases the tree does not
        hold. Only a ctspine store (or an empty location) is ever overwritten, case by
        case, beside the current version: readers keep the old state until the switch.
    force_clear
        Delete whatever else the location holds (named in the report and to ``announce``)
        before creating the store there. Without it such a location is refused.
    repair
        Verify every stored case fully (every chunk decoded) and rewrite the damaged ones;
        without it a rerun checks each case cheaply (metadata and shard indexes).
    storage_options, raw_storage_options
        fsspec options for the store URL and the raw URL.
    codec
        Image codec name.
    slices_per_shard
        Axial slices per shard.
    progress
        Show a progress bar on stderr (the command line does; the library is quiet).
    report_path
        Where to write the JSON report (default: ``<store>.ingest-report.json``, also for a
        URL store).
    announce
        Called with a line before anything is deleted by ``force_clear``.

    Returns
    -------
    IngestReport

    Raises
    ------
    StoreError
        When ``store`` holds something other than a ctspine store (and not
        ``force_clear``), overlaps the raw tree, or another ingest holds its lock
        (:class:`~ctspine_zarr.errors.StoreLockedError`).
    FileNotFoundError
        When ``raw`` is not a raw tree.
    """
    started = time.perf_counter()
    workers, scheduler = check_workers(workers), check_scheduler(scheduler)
    tree = find_cases(str(raw), storage_options=raw_storage_options)
    loc = Location.resolve(store, storage_options=storage_options)
    refuse_nesting(raw, loc, raw_storage_options)
    report = IngestReport(
        raw=str(raw), store=str(store), split_without_files=tree.split_without_files
    )
    document, report.cleared = claim(
        loc, overwrite=overwrite, force_clear=force_clear, announce=announce
    )
    with WriterLock(loc):
        prepare(loc, document)
        _ingest_locked(
            loc,
            store,
            tree,
            report,
            document,
            workers=workers,
            scheduler=scheduler,
            overwrite=overwrite,
            repair=repair,
            progress=progress,
            options=dict(
                storage_options=storage_options,
                raw_storage_options=raw_storage_options,
                codec=codec,
                slices_per_shard=slices_per_shard,
            ),
        )
        finish(loc)
    remove_internal_dir(loc)
    forget(store)
    report.outcomes.sort(key=lambda o: o.case_id)
    report.seconds = time.perf_counter() - started
    if report_path is not None or not isinstance(store, Store):
        _write_report(report, store, report_path, storage_options if is_url(store) else None)
    return report


def _damaged(store: Any, storage_options: dict[str, Any] | None, repair: bool) -> dict[str, str]:
    """``{case_id: problem}`` of the cases a full verification finds damaged (``repair``)."""
    if not repair:
        return {}
    from .verify import ERROR, verify

    found: dict[str, str] = {}
    for problem in verify(store, storage_options=storage_options).problems:
        if problem.severity == ERROR and problem.case_id is not None:
            found.setdefault(problem.case_id, str(problem).strip())
    return found


def _ingest_locked(
    loc: Location,
    store: Any,
    tree: Any,
    report: IngestReport,
    document: dict[str, Any] | None,
    *,
    workers: int,
    scheduler: Any,
    overwrite: bool,
    repair: bool,
    progress: bool,
    options: dict[str, Any],
) -> None:
    """The ingest proper, under the writer lock: cases, then the catalogue."""
    raw_storage_options = options["raw_storage_options"]
    for case, problem in tree.problems:
        path = case.image or case.label or ""
        report.outcomes.append(
            CaseOutcome(
                case.case_id,
                case.source,
                "refused",
                path,
                f"case {case.case_id!r}: {printable(path)}: {problem}",
            )
        )
    scan = scan_cases(loc)
    damaged = dict(scan.damaged)
    damaged.update(_damaged(store, options["storage_options"], repair))
    todo: list[RawCase] = []
    for case in tree.cases:
        stored = scan.complete.get(case.case_id)
        problem = damaged.get(case.case_id)
        if stored is not None and problem is None and not overwrite:
            if _fingerprint_matches(stored, case, raw_storage_options):
                problem = case_problem(loc, case.case_id)
                if problem is None:
                    report.outcomes.append(CaseOutcome(case.case_id, case.source, "skipped"))
                    continue
        if problem is not None:
            report.repaired[case.case_id] = problem
        todo.append(case)
    tree_ids = {c.case_id for c in tree.cases}
    for case_id, problem in sorted(damaged.items()):
        if case_id not in tree_ids:
            message = f"case {case_id!r} is damaged ({problem}) and the raw tree does not hold it"
            report.outcomes.append(CaseOutcome(case_id, "", "failed", "", message))

    # largest first: the workers then run out of cases at about the same time
    todo.sort(key=lambda c: -c.image_bytes)
    bar = progress_bar(len(todo), desc="ingest", enabled=progress)
    location = store if isinstance(store, Store) or is_url(store) else os.fspath(store)
    options = {**options, "encode_threads": _encode_threads(scheduler, workers, len(todo))}
    ingest_one = dask.delayed(ingest_case, pure=False)
    # dask's local schedulers start independent tasks from the highest key down: number the
    # cases so that they start in the given order (largest first)
    n = len(todo)
    tasks = [
        ingest_one(case, location, **options, dask_key_name=f"ingest-{n - i:07d}-{case.case_id}")
        for i, case in enumerate(todo)
    ]
    try:
        outcomes = run_tasks(tasks, scheduler=scheduler, workers=workers, on_done=bar.update)
        report.outcomes.extend(outcomes)
    finally:
        bar.close()

    rows = scan_cases(loc).complete
    for case_id in set(damaged) - {o.case_id for o in report.outcomes if o.status == "ingested"}:
        rows.pop(case_id, None)  # still damaged: never listed
    if overwrite:
        report.removed = sorted(set(rows) - tree_ids)
        rows = {c: a for c, a in rows.items() if c in tree_ids}
    splits = {c.case_id: c.split for c in tree.cases if tree.has_split_file}
    publish_catalogue(loc, build_catalogue(rows, splits=splits), previous=document)
    for case_id in report.removed:  # after the switch: no reader's catalogue lists them
        loc.delete_prefix(f"{CASES_GROUP}/{case_id}")
    report.catalogue_cases = len(rows)


def _write_report(
    report: IngestReport,
    store: Any,
    report_path: str | os.PathLike | None,
    storage_options: dict[str, Any] | None,
) -> None:
    """Write the JSON report beside the store (``<store>.ingest-report.json``)."""
    options = storage_options or {}
    if report_path is None:
        report_path = os.fspath(store).rstrip("/\\") + ".ingest-report.json"
    elif not is_url(report_path):
        options = {}
    target = os.fspath(report_path)
    with fsspec.open(target, "w", encoding="utf-8", **with_default_options(target, options)) as fh:
        json.dump(report.to_json(), fh, indent=2)
