"""The audit's findings in the store: recording them, reading them back, the flagged cases.

The record is ``audit/zarr.json`` beside the catalogue (:mod:`ctspine_zarr.io.auditrecord`
has its layout). :func:`record_audit` merges an audit into it under the writer lock: the
audited cases' findings of the checks run replace their earlier ones, other cases keep
theirs. :func:`flagged_cases` is the one place that says which cases an audit flagged (the
accessor's ``case_ids(exclude_flagged=...)`` and the loaders use it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any

import pandas as pd
import xarray as xr
from zarr.abc.store import Store

from .._version import __version__
from ..errors import StoreError
from ..io.auditrecord import RECORD_KEY, case_token, load_record, read_record, store_record
from ..io.location import TMP_DIR, Location
from ..io.store import forget, open_catalogue, storage_options_of
from ..schema import CASE_DIM, CASES_GROUP, GENERATION_KEY
from .checks import CHECKS, ERROR, Finding, parse_checks
from .result import AUDIT_VERSION, AuditResult, findings_frame, now, sort_findings

__all__ = [
    "describe_record",
    "flagged_cases",
    "read_findings",
    "record_audit",
]

StoreLike = str | os.PathLike[str] | Store


def record_audit(
    location: StoreLike, result: AuditResult, *, storage_options: dict[str, Any] | None = None
) -> None:
    """Merge an audit's findings into the store's record (``audit/zarr.json``).

    Under the writer lock (never beside an ingest), in one atomic write. The audited cases'
    findings of the checks run replace their earlier ones; a case whose sources changed since
    its earlier audit loses its earlier findings; a case an ingest rewrote while the audit ran
    is not recorded (audit it again).
    """
    from ..write.claim import remove_internal_dir
    from ..write.lock import WriterLock

    loc = Location.resolve(location, storage_options=storage_options)
    with WriterLock(loc):
        _merge(loc, location, storage_options, result)
        loc.delete_prefix(TMP_DIR)  # where the atomic write staged its bytes
    remove_internal_dir(loc)


def _merge(
    loc: Location, location: Any, storage_options: dict[str, Any] | None, result: AuditResult
) -> None:
    """Under the lock: merge ``result`` into the record and write it."""
    tokens = _still_current(loc, location, storage_options, result)
    record = load_record(loc) or {"cases": {}, "findings": []}
    old_cases: dict[str, Any] = record["cases"]
    same = {c for c, t in tokens.items() if (old_cases.get(c) or {}).get("token") == t}
    kept = [
        f
        for f in record["findings"]
        if f.get("case") not in tokens
        or (f.get("case") in same and f["check"] not in result.checks)
    ]
    new = [f.to_json() for f in result.findings if f.case in tokens]
    when = str(result.info.get("time") or now())
    cases = dict(old_cases)
    for case, token in tokens.items():
        before = set((old_cases.get(case) or {}).get("checks") or []) if case in same else set()
        cases[case] = {
            "token": token,
            "time": when,
            "version": AUDIT_VERSION,
            "checks": [c for c in CHECKS if c in before | set(result.checks)],
        }
    merged = sort_findings((Finding.from_json(f) for f in kept + new), sorted(cases))
    store_record(
        loc,
        {
            "version": AUDIT_VERSION,
            "created_by": f"ctspine_zarr {__version__}",
            "time": when,
            "parameters": dict(result.parameters),
            "cases": dict(sorted(cases.items())),
            "findings": [f.to_json() for f in merged],
        },
    )


def _still_current(
    loc: Location, location: Any, storage_options: dict[str, Any] | None, result: AuditResult
) -> dict[str, str]:
    """The audited cases whose version is still the one audited (an ingest may have run)."""
    forget(location)
    generation = open_catalogue(location, storage_options=storage_options).attrs.get(GENERATION_KEY)
    if generation == result.info.get("catalogue_generation"):
        return dict(result.cases)
    ids = list(result.cases)
    documents = loc.read_many([f"{CASES_GROUP}/{c}/zarr.json" for c in ids])
    current = {}
    for case, raw in zip(ids, documents, strict=True):
        if raw is None:
            continue
        attrs = json.loads(raw).get("attributes") or {}
        if case_token(attrs) == result.cases[case]:
            current[case] = result.cases[case]
    return current


def _where(
    store_or_catalogue: StoreLike | xr.Dataset, storage_options: dict[str, Any] | None
) -> tuple[StoreLike, dict[str, Any] | None, set[str] | None]:
    """The location and options of a store or catalogue, and the catalogue's case ids."""
    if not isinstance(store_or_catalogue, xr.Dataset):
        return store_or_catalogue, storage_options, None
    ds = store_or_catalogue
    source = ds.encoding.get("source")
    if source is None:
        raise StoreError(
            "this Dataset does not say which store it came from; open the catalogue with "
            "ctspine_zarr.open(path) or xr.open_zarr(path)"
        )
    options = ds.encoding.get("storage_options") or storage_options
    if options is None and isinstance(source, str):
        options = storage_options_of(ds)
    return source, options or None, {str(c) for c in ds[CASE_DIM].values}


def read_findings(
    store_or_catalogue: StoreLike | xr.Dataset,
    *,
    checks: str | Iterable[str] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Return the findings recorded in a store (of a catalogue's cases, given a catalogue).

    Parameters
    ----------
    store_or_catalogue
        Path, URL or zarr store of the store, or a catalogue opened from it.
    checks
        Only the findings of these checks (default: all).
    storage_options
        fsspec options for a URL.

    Returns
    -------
    pandas.DataFrame
        Columns ``case``, ``check``, ``labels``, ``detail``, ``severity``;
        ``attrs["audit"]`` holds the record's version, time and parameters.

    Raises
    ------
    StoreError
        When the store holds no audit record.
    """
    record, cases = _record(store_or_catalogue, storage_options)
    wanted = set(parse_checks(checks))
    findings = [
        Finding.from_json(f)
        for f in record["findings"]
        if f.get("check") in wanted and (cases is None or f.get("case") in cases)
    ]
    info = {k: v for k, v in record.items() if k not in ("cases", "findings")}
    return findings_frame(findings, {"audit": info})


def _record(
    store_or_catalogue: StoreLike | xr.Dataset, storage_options: dict[str, Any] | None
) -> tuple[dict[str, Any], set[str] | None]:
    location, options, cases = _where(store_or_catalogue, storage_options)
    record = read_record(location, storage_options=options)
    if record is None:
        shown = repr(location) if isinstance(location, Store) else os.fspath(location)
        raise StoreError(
            f"{shown}: no audit recorded ({RECORD_KEY} is missing); run `ctspine-zarr audit "
            f"{shown}` or ds.ctspine.audit(record=True) first"
        )
    return record, cases


def flagged_cases(
    store_or_catalogue: StoreLike | xr.Dataset,
    checks: str | Iterable[str] | None = None,
    *,
    storage_options: dict[str, Any] | None = None,
) -> set[str]:
    """Return the cases the store's recorded audit flagged: with at least one finding.

    Parameters
    ----------
    store_or_catalogue
        Path, URL or zarr store of the store, or a catalogue opened from it (then only its
        cases are returned).
    checks
        Only findings of these checks count (default: every check).
    storage_options
        fsspec options for a URL.

    Raises
    ------
    StoreError
        When the store holds no audit record (run ``ctspine-zarr audit STORE`` first).
    ValueError
        For an unknown check.
    """
    record, cases = _record(store_or_catalogue, storage_options)
    wanted = set(parse_checks(checks))
    return {
        str(f["case"])
        for f in record["findings"]
        if f.get("check") in wanted and (cases is None or f.get("case") in cases)
    }


def describe_record(
    location: StoreLike,
    *,
    storage_options: dict[str, Any] | None = None,
    cases: Iterable[str] | None = None,
) -> str:
    """The lines ``ctspine-zarr info`` prints of the recorded audit: when, the counts per check.

    Parameters
    ----------
    location
        The store.
    storage_options
        fsspec options for a URL.
    cases
        The catalogue's case ids (findings of other cases, no longer listed, are not counted).
    """
    record = read_record(location, storage_options=storage_options)
    if record is None:
        return "audit: none recorded (ctspine-zarr audit STORE checks the label maps)"
    listed = None if cases is None else set(cases)
    audited = [c for c in record["cases"] if listed is None or c in listed]
    findings = [f for f in record["findings"] if listed is None or f.get("case") in listed]
    checks: list[str] = []
    for entry in record["cases"].values():
        checks += [c for c in entry.get("checks", []) if c not in checks]
    counts = {c: sum(f.get("check") == c for f in findings) for c in CHECKS if c in checks}
    errors = sum(f.get("severity") == ERROR for f in findings)
    when = str(record.get("time", "")).replace("T", " ").replace("Z", " UTC")
    total = f" of {len(listed)}" if listed is not None else ""
    return "\n".join(
        [
            f"audit: {len(audited)}{total} cases audited, last on {when} "
            f"(version {record.get('version')}, {record.get('created_by')})",
            "findings per check: "
            + ", ".join(f"{c} {n}" for c, n in counts.items())
            + f"; {len({f.get('case') for f in findings})} cases flagged "
            f"({_count(errors, 'error')}, {_count(len(findings) - errors, 'warning')})",
        ]
    )


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"
