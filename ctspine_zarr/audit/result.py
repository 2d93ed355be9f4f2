"""What an audit found: :class:`AuditResult`, its table, its summary and its JSON."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import pandas as pd

from .checks import CHECKS, Finding, named, rank

__all__ = ["AUDIT_VERSION", "COLUMNS", "AuditResult", "findings_frame", "now", "sort_findings"]

#: Version of the checks' definitions, recorded with every audit: raised when a check changes
#: what it reports.
AUDIT_VERSION: Final = 1
#: The columns of an audit's table.
COLUMNS: Final = ("case", "check", "labels", "detail", "severity")


def now() -> str:
    """The current UTC time as the record writes it (``2026-12-09T10:12:03Z``)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def sort_findings(findings: Iterable[Finding], order: Iterable[str] = ()) -> list[Finding]:
    """Sort findings by case (in ``order`` first, then by id), check, then cranio-caudally."""
    place = {c: i for i, c in enumerate(order)}
    return sorted(
        findings,
        key=lambda f: (
            place.get(f.case, len(place)),
            f.case,
            CHECKS.index(f.check) if f.check in CHECKS else len(CHECKS),
            [rank(v) for v in f.labels],
        ),
    )


def findings_frame(
    findings: Iterable[Finding], attrs: Mapping[str, Any] | None = None
) -> pd.DataFrame:
    """Return findings as a DataFrame with the columns :data:`COLUMNS`.

    ``labels`` holds a tuple of label values per row.
    """
    rows = [(f.case, f.check, tuple(f.labels), f.detail, f.severity) for f in findings]
    frame = pd.DataFrame.from_records(rows, columns=list(COLUMNS))
    frame.attrs.update(dict(attrs or {}))
    return frame


@dataclass
class AuditResult:
    """The findings of an audit of some cases, and how it was run.

    Attributes
    ----------
    findings
        One :class:`~ctspine_zarr.audit.checks.Finding` per problem, by case and check.
    cases
        ``{case_id: token}`` of every case audited (the token of its sources' version).
    checks
        The checks run.
    parameters
        The thresholds used.
    info
        ``version`` (:data:`AUDIT_VERSION`), ``created_by``, ``time`` (UTC), ``seconds``,
        ``location``, ``split``, ``blocks`` (voxel tasks).
    """

    findings: list[Finding]
    cases: dict[str, str]
    checks: tuple[str, ...]
    parameters: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)

    def frame(self) -> pd.DataFrame:
        """The findings as a DataFrame (:data:`COLUMNS`); ``frame.attrs["audit"]`` says how."""
        return findings_frame(self.findings, {"audit": self.summary_info()})

    def summary_info(self) -> dict[str, Any]:
        """The audit's version, time, checks, parameters and case count (JSON-able)."""
        return {
            **self.info,
            "checks": list(self.checks),
            "parameters": dict(self.parameters),
            "n_cases": len(self.cases),
        }

    def counts(self) -> dict[str, int]:
        """Findings per check run (zeros included), in :data:`CHECKS` order."""
        return {c: sum(f.check == c for f in self.findings) for c in CHECKS if c in self.checks}

    def flagged(self) -> list[str]:
        """The cases with at least one finding, in the order audited."""
        found = {f.case for f in self.findings}
        return [c for c in self.cases if c in found]

    def describe(self) -> str:
        """A few lines: what was audited, the counts per check, then one line per finding."""
        n_cases = len(self.cases)
        flagged = self.flagged()
        seconds = self.info.get("seconds")
        took = f" in {seconds:.1f} s" if isinstance(seconds, float) else ""
        lines = [
            f"audited {n_cases} case{'s' * (n_cases != 1)} ({', '.join(self.checks)}){took}: "
            f"{len(self.findings)} finding{'s' * (len(self.findings) != 1)} in "
            f"{len(flagged)} case{'s' * (len(flagged) != 1)}",
            "findings per check: " + ", ".join(f"{c} {n}" for c, n in self.counts().items()),
        ]
        if "size_levels" in self.info:
            n_levels = len(self.info["size_levels"])
            lines.append(
                f"size compared {n_levels} of the {self.info.get('size_levels_present')} "
                f"levels present (a level needs {self.parameters.get('min_level_cases')} whole "
                "vertebrae in the store)"
            )
        lines += finding_lines(self.findings)
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """The audit as a JSON-able dict: ``{"audit": info, "findings": [...]}``."""
        return {"audit": self.summary_info(), "findings": [f.to_json() for f in self.findings]}


def finding_lines(findings: Iterable[Finding]) -> list[str]:
    """One aligned line per finding: case, check, severity, labels, detail."""
    listed = list(findings)
    if not listed:
        return []
    width = max(len(f.case) for f in listed)
    lines = []
    for f in listed:
        labels = ",".join(named(v).split(" ")[0] for v in f.labels)
        lines.append(f"{f.case:<{width}}  {f.check:<9}  {f.severity:<7}  {labels:<10}  {f.detail}")
    return lines
