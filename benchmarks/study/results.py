"""What a section hands back, the targets it is read against, and the number formats."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from benchmarks.common import Summary, fmt_seconds, ratio
from benchmarks.study.tree import BenchCase

#: Goal id, description, comparison, threshold and issue of every headline ratio.
TARGETS_FILE = Path(__file__).resolve().parents[1] / "targets.toml"


@dataclass(frozen=True)
class Target:
    """One row of ``benchmarks/targets.toml``."""

    id: str
    description: str
    comparison: str
    issue: int
    threshold: float | None = None
    unit: str = "x"
    shown: str | None = None

    def text(self) -> str:
        """The target as a neutral column: ``<= 0.8x``, ``< 1 s``, ``same names``."""
        if self.shown is not None:
            return self.shown
        if self.threshold is None:
            return self.comparison
        if self.unit == "x":
            return f"{self.comparison} {self.threshold}x"
        return f"{self.comparison} {self.threshold:g} {self.unit}"


@cache
def targets() -> dict[str, Target]:
    """The targets of ``benchmarks/targets.toml``, by goal id, in file order."""
    with TARGETS_FILE.open("rb") as fh:
        rows = tomllib.load(fh)["target"]
    return {str(r["id"]): Target(**{**r, "id": str(r["id"])}) for r in rows}


@dataclass
class Ratio:
    """One headline ratio a section measured: its target's id, value and how it was measured."""

    id: str
    measured: str
    value: float | None = None


@dataclass
class Section:
    """What a section measured: report lines, numbers, headline ratios."""

    key: str
    title: str
    lines: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    ratios: list[Ratio] = field(default_factory=list)
    seconds: float = 0.0
    load_start: float | None = None
    load_end: float | None = None
    error: str | None = None


def fmt_fraction(value: float | None) -> str:
    """A size ratio as ``0.123x``, with ``(1/8.1)`` when below one half."""
    if value is None:
        return "n/a"
    text = f"{value:.3f}x"
    return text + (f" (1/{1 / value:.1f})" if 0 < value < 0.5 else "")


def speed(anchor: float | None, this: float | None) -> str:
    """``anchor / this`` as ``12.3x`` (how many times faster ``this`` is than the anchor)."""
    value = ratio(anchor, this)
    if value is None:
        return "n/a"
    if value >= 100:
        return f"{value:.0f}x"
    if value >= 10:
        return f"{value:.1f}x"
    return f"{value:.2f}x" if value >= 0.1 else f"{value:.2g}x"


def nii_bytes(cases: Sequence[BenchCase]) -> tuple[int, int]:
    """Total bytes of the image and of the label ``.nii.gz`` files."""
    return (
        sum(os.path.getsize(c.image_path) for c in cases),
        sum(os.path.getsize(c.label_path) for c in cases),
    )


def latency_row(label: str, summary: Summary, *ratios: str) -> list[str]:
    """A table row: label, reads, p50, p95, then the given ratios."""
    return [label, str(summary.n), fmt_seconds(summary.p50), fmt_seconds(summary.p95), *ratios]
