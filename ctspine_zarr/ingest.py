"""Rewrite every NIfTI pair of a raw tree into one consolidated, slice-chunked Zarr store.

Each case is written by one task (in parallel with dask), into its own group
``cases/<case_id>``; the group's ``complete`` attribute is written last. The catalogue at
the root is rebuilt from the complete groups, and the metadata consolidated, at the end.
A rerun skips the cases whose source files are unchanged.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import dask
import fsspec
import numpy as np
import zarr
from zarr.abc.store import Store

from .catalogue import (
    build_catalogue,
    complete_cases,
    consolidate,
    root_attrs,
    write_catalogue,
)
from .errors import InvalidCaseError, StoreError
from .labelindex import index_labels
from .layout import RawCase, find_cases
from .nifti import CanonicalVolume, read_pair
from .schema import (
    CASES_GROUP,
    COMPLETE_KEY,
    FORMAT_KEY,
    IMAGE,
    IMAGE_HEADER,
    LABEL,
    LABEL_HEADER,
    SLICE_VERTEBRAE,
    SLICES_PER_SHARD,
    VERTEBRA_DIM,
    VOLUME_DIMS,
    encoding_name,
    image_encoding,
    label_compressors,
)
from .shardwriter import write_array
from .store import forget, is_url, to_store

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


@dataclass
class IngestReport:
    """The outcome of :func:`ingest`: one :class:`CaseOutcome` per case found."""

    raw: str
    store: str
    outcomes: list[CaseOutcome] = field(default_factory=list)
    split_without_files: list[str] = field(default_factory=list)
    catalogue_cases: int = 0
    seconds: float = 0.0

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
            f"slices     {slices} written",
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
        fs, local = fsspec.core.url_to_fs(path, **(raw_storage_options or {}))
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
    cases: zarr.Group,
    case: RawCase,
    image: CanonicalVolume,
    label: CanonicalVolume,
    *,
    codec: str,
    slices_per_shard: int,
    encode_threads: int,
) -> int:
    """Write one case's group; ``complete`` is set last. Returns the bytes stored."""
    if case.case_id in cases:
        del cases[case.case_id]
    index = index_labels(label.data)
    group = cases.create_group(case.case_id, attributes={COMPLETE_KEY: False})
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
    write_array(arrays[0], image.data, threads=encode_threads)
    write_array(arrays[1], label.data, threads=encode_threads)
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
        COMPLETE_KEY: True,
    }
    stored = sum(int(a.nbytes_stored()) for a in arrays)
    # one write makes the case complete and its consolidated metadata visible together
    consolidate(group, attributes=attrs)
    return stored


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
        fs, image_path = fsspec.core.url_to_fs(case.image, **(raw_storage_options or {}))
        _, label_path = fsspec.core.url_to_fs(case.label, **(raw_storage_options or {}))
        image, label = read_pair(image_path, label_path, case_id=case.case_id, fs=fs)
        zstore = to_store(store, storage_options=storage_options, read_only=False)
        root = zarr.open_group(zstore, mode="r+", use_consolidated=False)
        cases = root[CASES_GROUP]
        assert isinstance(cases, zarr.Group)
        outcome.bytes_out = _write_case(
            cases,
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
        outcome.problem = f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=3)}"
    outcome.seconds = time.perf_counter() - start
    return outcome


def _open_for_writing(
    store: str | os.PathLike | Store, storage_options: dict[str, Any] | None, overwrite: bool
) -> zarr.Group:
    """Open (or create) the store's root, refusing to clobber anything that is not ours."""
    if not isinstance(store, Store) and not is_url(store) and os.path.isfile(store):
        if not overwrite:
            raise StoreError(
                f"{store}: a file, not a Zarr store; pass overwrite=True to replace it"
            )
        os.remove(store)
    zstore = to_store(store, storage_options=storage_options, read_only=False)
    if overwrite:
        root = zarr.open_group(zstore, mode="w", attributes=root_attrs())
    else:
        try:
            root = zarr.open_group(zstore, mode="r+", use_consolidated=False)
        except (FileNotFoundError, zarr.errors.GroupNotFoundError):
            root = zarr.open_group(zstore, mode="w", attributes=root_attrs())
        except zarr.errors.ContainsArrayError as err:
            raise StoreError(
                f"{store}: an existing Zarr array, not a ctspine store; "
                "pass overwrite=True (--overwrite) to replace it"
            ) from err
        if FORMAT_KEY not in root.attrs:
            raise StoreError(
                f"{store}: an existing Zarr store that is not a ctspine store; "
                "pass overwrite=True (--overwrite) to replace it"
            )
    if CASES_GROUP not in root:
        root.create_group(CASES_GROUP)
    return root


LOCAL_SCHEDULERS = ("processes", "threads", "sync")


def _encode_threads(scheduler: Any, workers: int, n_cases: int) -> int:
    """Encoding threads per process: ``workers`` shared in one process (threads, sync).

    A process pool splits ``workers`` over the cases running at once; a cluster's workers
    keep to their own threads.
    """
    if scheduler in ("threads", "sync") or (scheduler in LOCAL_SCHEDULERS and workers == 1):
        return workers
    if scheduler == "processes":
        return max(1, workers // max(1, min(workers, n_cases)))
    return 1


def _run_local(
    cases: Sequence[RawCase],
    location: Any,
    options: dict[str, Any],
    *,
    scheduler: str,
    workers: int,
    on_done: Callable[[], None],
) -> list[CaseOutcome]:
    """Ingest cases on a local dask scheduler, calling ``on_done`` per finished case."""
    from dask.callbacks import Callback

    ingest_one = dask.delayed(ingest_case, pure=False)
    # dask's local schedulers start independent tasks from the highest key down: number the
    # cases so that they start in the given order (largest first)
    n = len(cases)
    tasks = [
        ingest_one(case, location, **options, dask_key_name=f"ingest-{n - i:07d}-{case.case_id}")
        for i, case in enumerate(cases)
    ]
    keys = {t.key for t in tasks}

    class _Progress(Callback):
        def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
            if key in keys:
                on_done()

    with _Progress():
        if scheduler == "sync" or workers == 1:
            results = dask.compute(*tasks, scheduler="sync")
        else:
            # chunksize=1: dask's process pool would otherwise hand out cases six at a time
            results = dask.compute(*tasks, scheduler=scheduler, num_workers=workers, chunksize=1)
    return list(results)


def _run_distributed(
    cases: Sequence[RawCase],
    location: Any,
    options: dict[str, Any],
    scheduler: Any,
    *,
    on_done: Callable[[], None],
) -> list[CaseOutcome]:
    """Ingest cases on a dask.distributed cluster (a Client or a scheduler address)."""
    from distributed import Client, as_completed

    client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
    try:
        futures = client.map(
            ingest_case,
            list(cases),
            store=location,
            key=[f"ingest-{i:07d}-{case.case_id}" for i, case in enumerate(cases)],
            pure=False,
            **options,
        )
        outcomes = []
        for future in as_completed(futures):
            outcomes.append(future.result())
            on_done()
        return outcomes
    finally:
        if client is not scheduler:
            client.close()


def ingest(
    raw: str | os.PathLike,
    store: str | os.PathLike | Store,
    *,
    workers: int | None = None,
    scheduler: Any = "threads",
    overwrite: bool = False,
    storage_options: dict[str, Any] | None = None,
    raw_storage_options: dict[str, Any] | None = None,
    codec: str = "default",
    slices_per_shard: int = SLICES_PER_SHARD,
    progress: bool = True,
    report_path: str | os.PathLike | None = None,
) -> IngestReport:
    """Ingest a CTSpine1K raw tree into a ctspine Zarr store.

    Parameters
    ----------
    raw
        Folder (or fsspec URL) that holds ``rawdata/`` and ``metadata/``.
    store
        Path or fsspec URL of the store; created if missing, resumed if it is one.
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
        pay a start-up and import per worker);
        a scheduler address (``"tcp://host:8786"``) or a ``distributed.Client`` to run the
        cases on an existing cluster (every worker must reach RAW and STORE).
    overwrite
        Replace whatever ``store`` holds.
    storage_options, raw_storage_options
        fsspec options for the store URL and the raw URL.
    codec
        Image codec name.
    slices_per_shard
        Axial slices per shard.
    progress
        Show a progress bar.
    report_path
        Where to write the JSON report (default: ``<store>.ingest-report.json``, also for a
        URL store).

    Returns
    -------
    IngestReport

    Raises
    ------
    StoreError
        When ``store`` exists and is not a ctspine store (and ``overwrite`` is false).
    FileNotFoundError
        When ``raw`` is not a raw tree.
    """
    started = time.perf_counter()
    tree = find_cases(str(raw), storage_options=raw_storage_options)
    root = _open_for_writing(store, storage_options, overwrite)
    report = IngestReport(
        raw=str(raw), store=str(store), split_without_files=tree.split_without_files
    )
    for case, problem in tree.problems:
        path = case.image or case.label or ""
        report.outcomes.append(
            CaseOutcome(
                case.case_id,
                case.source,
                "refused",
                path,
                f"case {case.case_id!r}: {path}: {problem}",
            )
        )
    done = complete_cases(root)
    todo: list[RawCase] = []
    for case in tree.cases:
        stored = done.get(case.case_id)
        if stored is not None and _fingerprint_matches(stored, case, raw_storage_options):
            report.outcomes.append(CaseOutcome(case.case_id, case.source, "skipped"))
        else:
            todo.append(case)

    # largest first: the workers then run out of cases at about the same time
    todo.sort(key=lambda c: -c.image_bytes)
    workers = workers or os.cpu_count() or 1
    bar = _progress_bar(len(todo), enabled=progress)
    location = store if isinstance(store, Store) or is_url(store) else os.fspath(store)
    options = dict(
        storage_options=storage_options,
        raw_storage_options=raw_storage_options,
        codec=codec,
        slices_per_shard=slices_per_shard,
        encode_threads=_encode_threads(scheduler, workers, len(todo)),
    )
    try:
        if scheduler in LOCAL_SCHEDULERS:
            outcomes = _run_local(
                todo, location, options, scheduler=scheduler, workers=workers, on_done=bar.update
            )
        else:
            outcomes = _run_distributed(todo, location, options, scheduler, on_done=bar.update)
        report.outcomes.extend(outcomes)
    finally:
        bar.close()

    rows = complete_cases(root)
    splits = {c.case_id: c.split for c in tree.cases if tree.has_split_file}
    write_catalogue(root, build_catalogue(rows, splits=splits))
    consolidate(root)
    forget(store)
    report.catalogue_cases = len(rows)
    report.outcomes.sort(key=lambda o: o.case_id)
    report.seconds = time.perf_counter() - started
    if report_path is not None or not isinstance(store, Store):
        _write_report(report, store, report_path, storage_options if is_url(store) else None)
    return report


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
    with fsspec.open(os.fspath(report_path), "w", encoding="utf-8", **options) as fh:
        json.dump(report.to_json(), fh, indent=2)


class _NoBar:
    def update(self, n: int = 1) -> None:
        """Do nothing."""

    def close(self) -> None:
        """Do nothing."""


def _progress_bar(total: int, *, enabled: bool) -> Any:
    if not enabled or total == 0:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="case", desc="ingest", dynamic_ncols=True)
