"""The README's audit picture: one page ``ctspine-zarr audit --out`` writes for a flagged case.

What it shows: ``docs/audit-case.png``, a synthetic case (not patient data) of a small tree
written with ``synth --defects all`` (8 cases, 192 x 192 in-plane, 60-100 slices, seed 4),
whose L2 and L3 labels were swapped: the mid-sagittal CT, every vertebra seen from the
patient's left and named, the two swapped ones circled and flagged in the legend, and the
finding written under the picture.

Checks (exits 1 with a message when one fails): the audit finds exactly the injected
defects of the checks it can run on 8 cases (``size`` needs 8 whole vertebrae per level);
the order case's page is written and is under 120 kB.

Rerun from the repository root::

    python docs/screenshots/audit_case.py [--out docs/audit-case.png] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import ctspine_zarr
from ctspine_zarr.audit import audit_store
from ctspine_zarr.audit.pictures import audit_figure
from ctspine_zarr.testing.synthetic import make_raw_tree


def main() -> int:
    """Make the picture; return 0, or 1 when a check fails."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/audit-case.png", help="the PNG to write")
    parser.add_argument("--workdir", help="keep the raw tree and the store here")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="ctspine-audit-picture-"))
    raw, store = work / "raw", work / "s.zarr"
    cases = make_raw_tree(
        raw, n_cases=8, shape=(192, 192), n_slices=(60, 100), seed=4, defects=["all"]
    )
    report = ctspine_zarr.ingest(raw, store, workers=2)
    if not report.ok:
        print(report.summary())
        return 1
    result = audit_store(store)
    expected = {(c.case_id, d.kind, d.labels) for c in cases for d in c.defects}
    expected = {e for e in expected if e[1] != "size"}
    found = {(f.case, f.check, f.labels) for f in result.findings}
    if found != expected:
        print(f"the audit found {sorted(found)}, not the injected {sorted(expected)}")
        return 1
    (case,) = [c for c in cases if c.defects and c.defects[0].kind == "order"]
    findings = [f for f in result.findings if f.case == case.case_id]
    fig = audit_figure(store, case.case_id, findings, dpi=90)
    fig.savefig(args.out, format="png", dpi=fig.dpi, facecolor=fig.get_facecolor())
    size = Path(args.out).stat().st_size
    if size > 120_000:
        print(f"{args.out}: {size} bytes, more than 120 kB")
        return 1
    print(f"wrote {args.out} ({size} bytes): {case.case_id}, {case.defects[0].description}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
