"""The outcome of ``verify``: each problem found, its severity, and the report a person reads.

Checks never raise: they record a :class:`Problem` in the :class:`VerifyReport`, an
:data:`ERROR` (the store is not sound) or a :data:`WARNING` (reported, the store stays
usable).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["ERROR", "WARNING", "Problem", "VerifyReport"]

#: Severity of a problem that makes :attr:`VerifyReport.ok` false.
ERROR = "error"
#: Severity of a problem that is reported but leaves the store usable.
WARNING = "warning"

_SHOWN_PROBLEMS = 50


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
