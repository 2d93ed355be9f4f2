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
- a rerun skips a case only if its sources are unchanged and its arrays are intact;
- a raw tree other than the one(s) the store was made from is refused before anything is
  written, unless ``add`` is given (:mod:`ctspine_zarr.write.rawtrees`).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import dask
import fsspec
from zarr.abc.store import Store

from ..errors import IngestInterrupted, printable
from ..io.auditrecord import case_token, prune_record
from ..io.catalogue import (
    build_catalogue,
    publish_catalogue,
    scan_cases,
    withdraw_case_members,
)
from ..io.layout import RawCase, RawTree, find_cases
from ..io.location import Location
from ..io.remote import url_to_fs, with_default_options
from ..io.store import forget, is_url
from ..parallel import check_scheduler, check_workers, is_local, progress_bar, run_tasks
from ..schema import CASES_GROUP, RAW_TREES_KEY, SLICES_PER_SHARD, TILE
from .case import CaseOutcome, ingest_case, update_split
from .claim import claim, finish, prepare, refuse_nesting, remove_internal_dir
from .integrity import case_problem
from .lock import WriterLock
from .rawtrees import recorded_trees, tree_record, trees_after_ingest
from .stopping import stop

__all__ = ["IngestReport", "ingest"]


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
    #: unchanged cases whose split the split file changed: ``{case_id: [old, new]}``; their
    #: attributes and catalogue row are updated, their arrays not rewritten
    split_changed: dict[str, list[str]] = field(default_factory=dict)
    #: the raw trees the store is made from once this ingest is done (``docs/format.md``)
    raw_trees: list[dict[str, Any]] = field(default_factory=list)
    #: whether this ingest added a raw tree beside the store's others (``add``)
    tree_added: bool = False

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
        if self.split_changed:
            moved = [f"{c}: {a} -> {b}" for c, (a, b) in sorted(self.split_changed.items())]
            rest = f" and {len(moved) - 5} more" if len(moved) > 5 else ""
            lines.append(
                f"splits     {len(moved)} unchanged case(s) moved to another split (the split "
                f"file changed; arrays kept): {', '.join(moved[:5])}{rest}"
            )
        if self.tree_added:
            lines.append(
                f"raw tree   added to the store's {len(self.raw_trees) - 1} other(s): "
                + ", ".join(str(t["location"]).removeprefix("file://") for t in self.raw_trees)
            )
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
    add: bool = False,
    storage_options: dict[str, Any] | None = None,
    raw_storage_options: dict[str, Any] | None = None,
    codec: str = "default",
    slices_per_shard: int = SLICES_PER_SHARD,
    tile: int = TILE,
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
    add
        Add the cases of a raw tree other than the one(s) the store was made from. Without
        it such a tree is refused before anything is written
        (:class:`~ctspine_zarr.errors.TreeMismatchError`, saying how the trees differ). The
        same tree again (a resume, a repair, an edited split file) needs no ``add``: see
        :mod:`ctspine_zarr.write.rawtrees`. A case whose split changed is moved in the
        catalogue and its attributes, its arrays kept.
    storage_options, raw_storage_options
        fsspec options for the store URL and the raw URL.
    codec
        Image codec name.
    slices_per_shard
        Axial slices per shard.
    tile
        In-plane size of the inner chunks of ``image`` and ``label``: 0 (the default) for
        one whole slice per inner chunk, or ``(1, tile, tile)`` tiles of each slice (128 for
        3D patch training, :data:`~ctspine_zarr.schema.PATCH_TILE`: a patch then decodes only
        the tiles it touches). Cases already stored keep their layout until they are
        rewritten (``overwrite``).
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
        ``force_clear``), overlaps the raw tree, another ingest holds its lock
        (:class:`~ctspine_zarr.errors.StoreLockedError`), or was made from another raw
        tree (:class:`~ctspine_zarr.errors.TreeMismatchError`, without ``add``).
    FileNotFoundError
        When ``raw`` is not a raw tree.
    IngestInterrupted
        On Ctrl-C while the cases are written (a :class:`KeyboardInterrupt`): the cases
        finished are kept, and a rerun resumes.
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
    record = tree_record(tree, raw, raw_storage_options)
    report.raw_trees = trees_after_ingest(
        document,
        record,
        add=add,
        overwrite=overwrite,
        store=loc.text,
        case_ids=[c.case_id for c in tree.cases],
    )
    report.tree_added = len(report.raw_trees) > len(recorded_trees(document)) > 0
    options = dict(
        storage_options=storage_options,
        raw_storage_options=raw_storage_options,
        codec=codec,
        slices_per_shard=slices_per_shard,
        tile=tile,
    )
    with WriterLock(loc):
        prepare(loc, document, {RAW_TREES_KEY: report.raw_trees})
        todo, damaged = _plan(loc, store, tree, report, overwrite, repair, options)
        withdraw_case_members(loc, [case.case_id for case in todo])
        for case_id, (_, split) in report.split_changed.items():
            update_split(loc, case_id, split)
        _run_cases(todo, store, report, scheduler, workers, progress, options)
        _publish(loc, tree, report, damaged, document, overwrite)
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
    from .verify import verify
    from .verifyreport import ERROR

    found: dict[str, str] = {}
    for problem in verify(store, storage_options=storage_options).problems:
        if problem.severity == ERROR and problem.case_id is not None:
            found.setdefault(problem.case_id, str(problem).strip())
    return found


def _plan(
    loc: Location,
    store: Any,
    tree: RawTree,
    report: IngestReport,
    overwrite: bool,
    repair: bool,
    options: dict[str, Any],
) -> tuple[list[RawCase], dict[str, str]]:
    """Sort the raw tree's cases into refused, skipped (unchanged and intact) and to write.

    Returns the cases to write and the damaged ones, ``{case_id: problem}``; a damaged case
    the raw tree does not hold fails.
    """
    _refuse_tree_problems(tree, report)
    scan = scan_cases(loc)
    damaged = dict(scan.damaged)
    damaged.update(_damaged(store, options["storage_options"], repair))
    todo: list[RawCase] = []
    for case in tree.cases:
        stored = scan.complete.get(case.case_id)
        problem = damaged.get(case.case_id)
        if stored is not None and problem is None and not overwrite:
            if _fingerprint_matches(stored, case, options["raw_storage_options"]):
                problem = case_problem(loc, case.case_id)
                if problem is None:
                    report.outcomes.append(CaseOutcome(case.case_id, case.source, "skipped"))
                    if tree.has_split_file and stored.get("split") != case.split:
                        report.split_changed[case.case_id] = [str(stored.get("split")), case.split]
                    continue
        if problem is not None:
            report.repaired[case.case_id] = problem
        todo.append(case)
    tree_ids = {c.case_id for c in tree.cases}
    for case_id, problem in sorted(damaged.items()):
        if case_id not in tree_ids:
            message = f"case {case_id!r} is damaged ({problem}) and the raw tree does not hold it"
            report.outcomes.append(CaseOutcome(case_id, "", "failed", "", message))
    return todo, damaged


def _refuse_tree_problems(tree: RawTree, report: IngestReport) -> None:
    """Record the cases the raw tree's layout refuses (a file missing, a name clash, ...)."""
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


def _run_cases(
    todo: list[RawCase],
    store: Any,
    report: IngestReport,
    scheduler: Any,
    workers: int,
    progress: bool,
    options: dict[str, Any],
) -> None:
    """Write the cases as dask tasks, largest first; their outcomes go to the report.

    On Ctrl-C the cases running in this process are stopped (and waited for) before
    :class:`~ctspine_zarr.errors.IngestInterrupted` says how many finished.
    """
    # largest first: the workers then run out of cases at about the same time
    todo.sort(key=lambda c: -c.image_bytes)
    bar = progress_bar(len(todo), desc="ingest", enabled=progress)
    location = store if isinstance(store, Store) or is_url(store) else os.fspath(store)
    run = uuid.uuid4().hex
    options = {
        **options,
        "encode_threads": _encode_threads(scheduler, workers, len(todo)),
        "run": run,
    }
    ingest_one = dask.delayed(ingest_case, pure=False)
    # dask's local schedulers start independent tasks from the highest key down: number the
    # cases so that they start in the given order (largest first)
    n = len(todo)
    tasks = [
        ingest_one(case, location, **options, dask_key_name=f"ingest-{n - i:07d}-{case.case_id}")
        for i, case in enumerate(todo)
    ]
    finished = []

    def done() -> None:
        finished.append(1)
        bar.update()

    try:
        outcomes = run_tasks(tasks, scheduler=scheduler, workers=workers, on_done=done)
        report.outcomes.extend(outcomes)
    except KeyboardInterrupt:
        # the cases written in this process, counted by themselves (the scheduler may not
        # have seen the last ones finish); other processes' as the scheduler saw them
        _, written = stop(run)
        raise IngestInterrupted(report.store, max(written, len(finished)), len(todo)) from None
    finally:
        bar.close()


def _publish(
    loc: Location,
    tree: RawTree,
    report: IngestReport,
    damaged: dict[str, str],
    document: dict[str, Any] | None,
    overwrite: bool,
) -> None:
    """Publish the catalogue of the complete cases that are not still damaged.

    With ``overwrite`` the cases the raw tree does not hold are dropped from it, and
    deleted once it is published. Then the audit record forgets the cases it no longer
    lists and those rewritten from changed sources.
    """
    tree_ids = {c.case_id for c in tree.cases}
    scan = scan_cases(loc)
    rows = scan.complete
    for case_id in set(damaged) - {o.case_id for o in report.outcomes if o.status == "ingested"}:
        rows.pop(case_id, None)  # still damaged: never listed
    if overwrite:
        report.removed = sorted(set(rows) - tree_ids)
        rows = {c: a for c, a in rows.items() if c in tree_ids}
    splits = {c.case_id: c.split for c in tree.cases if tree.has_split_file}
    documents = {c: scan.documents[c] for c in rows}
    catalogue = build_catalogue(rows, splits=splits)
    catalogue.attrs[RAW_TREES_KEY] = report.raw_trees
    publish_catalogue(loc, catalogue, previous=document, cases=documents)
    # the audit's findings of a case rewritten from changed sources (or dropped) are stale
    prune_record(loc, {case_id: case_token(attrs) for case_id, attrs in rows.items()})
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
