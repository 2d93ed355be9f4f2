"""The layout of a quick look, shared by its two renderers: sizes in inches, legend entries.

Panels stand side by side at the physical aspect ratio of their cut, all of one height,
with room for the orientation letters around each and a legend of the vertebrae shown on
the right. :mod:`.figure` draws this layout with matplotlib, :mod:`.raster` with Pillow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from ...vertebrae import ANATOMICAL_ORDER
from .views import PlaneView

__all__ = [
    "BOTTOM",
    "LEGEND_COLUMN",
    "LEGEND_ROW",
    "NOTES_WIDTH",
    "NOTE_ROW",
    "PANEL_HEIGHT",
    "SIDE",
    "TOP",
    "Layout",
    "legend_labels",
]

#: Default height of the panels, inches.
PANEL_HEIGHT: Final = 4.5
_MAX_WIDTH: Final = 18.0
#: Room for the left/right letters of a panel, inches.
SIDE: Final = 0.3
#: Room for the figure title, the panel title and the top letter, inches.
TOP: Final = 0.95
#: Room for the bottom letter, inches.
BOTTOM: Final = 0.3
#: Height of one legend entry, inches.
LEGEND_ROW: Final = 0.2
#: Width of one legend column, inches.
LEGEND_COLUMN: Final = 0.85
#: Height of one line of notes under the panels (``show --audit``), inches.
NOTE_ROW: Final = 0.17
#: Least width of a picture with notes, inches.
NOTES_WIDTH: Final = 7.0


def legend_labels(views: Sequence[PlaneView]) -> list[int]:
    """The label values the cuts show, vertebrae in anatomical order, others after them."""
    present: set[int] = set()
    for view in views:
        present.update(int(v) for v in np.unique(view.label) if v != 0)
    ordered = [v for v in ANATOMICAL_ORDER if v in present]
    return ordered + sorted(present - set(ordered))


@dataclass(frozen=True)
class Layout:
    """Sizes of a picture of panels side by side and a legend on the right, in inches."""

    ratios: list[float]  # width / height of each panel
    panel_height: float
    legend_columns: int
    width: float
    height: float
    notes: float = 0.0  # height of the notes under the panels

    @classmethod
    def fit(
        cls, views: Sequence[PlaneView], n_labels: int, panel_height: float, n_notes: int = 0
    ) -> Layout:
        """Panels ``panel_height`` high, lower when the picture would be wider than 18 in;
        ``n_notes`` lines of notes below them."""
        ratios = [w / h if h > 0 else 1.0 for w, h in (v.extent_mm for v in views)]
        height = panel_height
        n_columns, fixed = _fixed_width(len(views), n_labels, height)
        if fixed + height * sum(ratios) > _MAX_WIDTH:
            height = max(1.0, (_MAX_WIDTH - fixed) / sum(ratios))
            n_columns, fixed = _fixed_width(len(views), n_labels, height)
        notes = n_notes * NOTE_ROW + 0.15 if n_notes else 0.0
        width = fixed + height * sum(ratios)
        return cls(
            ratios=ratios,
            panel_height=height,
            legend_columns=n_columns,
            width=max(width, NOTES_WIDTH) if n_notes else width,
            height=TOP + height + BOTTOM + notes,
            notes=notes,
        )

    @property
    def rows_per_column(self) -> int:
        """Legend entries per legend column."""
        return max(1, int(self.panel_height / LEGEND_ROW))


def _fixed_width(n_views: int, n_labels: int, panel_height: float) -> tuple[int, float]:
    """Legend columns, and the width of the picture that does not scale with the panels."""
    per_column = max(1, int(panel_height / LEGEND_ROW))
    n_columns = max(1, math.ceil(n_labels / per_column))
    legend_width = n_columns * LEGEND_COLUMN + 0.3
    return n_columns, n_views * 2 * SIDE + legend_width
