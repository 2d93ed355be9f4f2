"""Pictures of an audit: a flagged case with its problems circled, and a page listing them.

:func:`audit_figure` draws one page per flagged case: the mid-sagittal CT with, over it,
every vertebra as seen from the patient's left (the first label met along x, so a stray
island or a swapped vertebra shows wherever it lies), each named, each problem circled in
red and its finding written under the picture. :func:`write_pictures` writes those pages as
PNGs and an ``index.html`` listing the findings with links to them (``audit --out DIR``);
:func:`case_marks` gives ``show --audit`` the marks of a case's recorded findings.
"""

from __future__ import annotations

import dataclasses
import html
import os
import urllib.parse
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from zarr.abc.store import Store

from ..io.auditrecord import read_record
from ..io.slicereader import case_readers, read_blocks
from ..io.store import case_group
from ..vertebrae import ANATOMICAL_ORDER, vertebra_name
from ..viz.show import Mark, draw_views, read_views
from .checks import Finding, rank

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = [
    "as_findings",
    "audit_figure",
    "case_marks",
    "finding_marks",
    "label_projection",
    "write_pictures",
]

StoreLike = str | os.PathLike[str] | Store


def _names(labels: Iterable[int]) -> str:
    return ", ".join(vertebra_name(v) for v in labels)


def finding_marks(findings: Iterable[Finding], present: Collection[int]) -> list[Mark]:
    """The marks of a case's findings: what to circle, what to write, what to flag.

    A ``gap`` circles the two labelled vertebrae around the missing ones; every other
    finding circles (and flags in the legend) its labels that are present.
    """
    have = {int(v) for v in present}
    marks = []
    for f in findings:
        if f.check == "gap":
            above = [v for v in ANATOMICAL_ORDER if v in have and rank(v) < rank(f.labels[0])]
            below = [v for v in ANATOMICAL_ORDER if v in have and rank(v) > rank(f.labels[-1])]
            around = tuple(above[-1:] + below[:1])
            marks.append(Mark(around, f"gap: {_names(f.labels)} missing"))
            continue
        shown = tuple(v for v in f.labels if v in have)
        marks.append(Mark(shown, f"{f.check}: {_names(f.labels)}", shown))
    return marks


def label_projection(
    location: StoreLike, case: str, *, storage_options: dict[str, Any] | None = None
) -> np.ndarray:
    """The case's labels seen from the patient's left: ``[z, y]``, the first label along x.

    Reads the label map shard by shard (never the image); the store is RAS+, so x = 0 is
    the patient's left.
    """
    readers = case_readers(location, case, storage_options)
    n_z, n_y, _ = readers.label.shape
    step = readers.label.layout.shard_z if readers.label.layout is not None else 32
    out = np.zeros((n_z, n_y), dtype=np.uint8)
    for z0 in range(0, n_z, step):
        z1 = min(n_z, z0 + step)
        (block,) = read_blocks([(readers.label, z0, z1, None)])
        found = block != 0
        first = np.argmax(found, axis=2)
        values = np.take_along_axis(block, first[..., None], axis=2)[..., 0]
        values[~found.any(axis=2)] = 0
        out[z0:z1] = values
    return out


def as_findings(findings: Iterable[Finding] | pd.DataFrame) -> list[Finding]:
    """Findings given as :class:`Finding` objects or as rows of an audit's table."""
    if hasattr(findings, "to_dict"):
        return [Finding(**row) for row in findings.to_dict(orient="records")]
    return list(findings)


def audit_figure(
    location: StoreLike,
    case: str,
    findings: Iterable[Finding] | pd.DataFrame,
    *,
    storage_options: dict[str, Any] | None = None,
    level: int | None = None,
    dpi: float = 100.0,
) -> Figure:
    """One page of a flagged case: the sagittal view, its labels named, its problems circled.

    Parameters
    ----------
    location
        Path, URL or zarr store of the store.
    case
        The case.
    findings
        Its findings (an audit's, or the recorded ones; a table's rows of other cases are
        left out).
    storage_options
        fsspec options for a URL.
    level
        Where the CT cut comes from (see :func:`ctspine_zarr.viz.show.read_views`).
    dpi
        Resolution of the figure.
    """
    findings = [f for f in as_findings(findings) if f.case == case]
    (view,) = read_views(
        location, case, plane="sagittal", level=level, storage_options=storage_options
    )
    seen = label_projection(location, case, storage_options=storage_options)
    view = dataclasses.replace(view, label=np.ascontiguousarray(seen[::-1, ::-1]))
    present = [int(v) for v in np.unique(seen) if v != 0]
    notes = [f"{f.severity} | {f.check}: {f.detail}" for f in findings]
    notes.append("labels: each vertebra as seen from the patient's left, over the CT's cut")
    n = len(findings)
    return draw_views(
        [view],
        title=f"{case}: {n} finding{'s' * (n != 1)}",
        panel_height=6.0,
        dpi=dpi,
        marks=finding_marks(findings, present),
        names=True,
        notes=notes,
    )


def case_marks(
    location: StoreLike, case: str, *, storage_options: dict[str, Any] | None = None
) -> tuple[list[Mark], list[str]]:
    """The marks and notes of a case's recorded findings, for ``show --audit``.

    Raises
    ------
    StoreError
        When the store holds no audit record.
    """
    from ..errors import StoreError

    record = read_record(location, storage_options=storage_options)
    if record is None:
        shown = repr(location) if isinstance(location, Store) else os.fspath(location)
        raise StoreError(
            f"{shown}: no audit recorded; run `ctspine-zarr audit {shown}` first, then "
            "show --audit marks the flagged labels"
        )
    group = case_group(location, case, storage_options=storage_options)
    stored: Any = group.attrs.get("vertebrae") or {}
    present = [int(v) for v in stored]
    findings = [Finding.from_json(f) for f in record["findings"] if f.get("case") == case]
    if case not in record["cases"]:
        return [], [f"audit: {case} was not audited (ctspine-zarr audit STORE --case {case})"]
    if not findings:
        return [], [f"audit: no finding ({record.get('time', '')})"]
    notes = [f"{f.severity} | {f.check}: {f.detail}" for f in findings]
    return finding_marks(findings, present), notes


def picture_name(case: str) -> str:
    """The file name of a case's picture (the id, percent-encoded where needed)."""
    return urllib.parse.quote(case, safe="-_.~") + ".png"


def write_pictures(
    location: StoreLike,
    findings: Iterable[Finding] | pd.DataFrame,
    out: str | os.PathLike[str],
    *,
    storage_options: dict[str, Any] | None = None,
    heading: str = "",
) -> list[Path]:
    """Write a PNG per flagged case and an ``index.html`` listing the findings.

    Parameters
    ----------
    location
        Path, URL or zarr store of the store.
    findings
        The findings (an audit's or the recorded ones).
    out
        The folder (created if missing).
    storage_options
        fsspec options for a URL.
    heading
        A line for the top of the page (what was audited, when).

    Returns
    -------
    list of Path
        The PNGs, then ``index.html``.
    """
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    by_case: dict[str, list[Finding]] = {}
    for f in as_findings(findings):
        by_case.setdefault(f.case, []).append(f)
    written = []
    for case, found in by_case.items():
        fig = audit_figure(location, case, found, storage_options=storage_options)
        path = target / picture_name(case)
        fig.savefig(path, format="png", dpi=fig.dpi, facecolor=fig.get_facecolor())
        written.append(path)
    page = target / "index.html"
    page.write_text(_page(location, by_case, heading), "utf-8")
    written.append(page)
    return written


def _page(location: StoreLike, by_case: dict[str, list[Finding]], heading: str) -> str:
    shown = repr(location) if isinstance(location, Store) else os.fspath(location)
    esc = html.escape
    rows = []
    for case, found in by_case.items():
        link = urllib.parse.quote(picture_name(case))
        for f in found:
            rows.append(
                f'<tr class="{esc(f.severity)}"><td><a href="{link}">{esc(case)}</a></td>'
                f"<td>{esc(f.check)}</td><td>{esc(_names(f.labels))}</td>"
                f"<td>{esc(f.severity)}</td><td>{esc(f.detail)}</td></tr>"
            )
    pictures = [
        f'<h2 id="{esc(case)}">{esc(case)}</h2><a href="{urllib.parse.quote(picture_name(case))}">'
        f'<img src="{urllib.parse.quote(picture_name(case))}" alt="{esc(case)}" width="640"></a>'
        for case in by_case
    ]
    n, m = sum(len(v) for v in by_case.values()), len(by_case)
    summary = f"{n} finding{'s' * (n != 1)} in {m} case{'s' * (m != 1)}"
    return "\n".join(
        [
            "<!doctype html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>Label audit of {esc(shown)}</title>",
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}"
            "tr.error td:nth-child(4){color:#c00;font-weight:bold}</style></head><body>",
            f"<h1>Label audit of {esc(shown)}</h1>",
            f"<p>{esc(summary)}{'. ' + esc(heading) if heading else ''}</p>",
            "<table><tr><th>case</th><th>check</th><th>labels</th><th>severity</th>"
            "<th>detail</th></tr>",
            *rows,
            "</table>",
            *pictures,
            "</body></html>",
            "",
        ]
    )
