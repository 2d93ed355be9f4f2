"""Write a run of ``python -m benchmarks`` into docs/performance.md: its headline ratios.

``python -m benchmarks --quick --json run.json`` measures; this reports::

    python -m benchmarks.report run.json [--docs docs/performance.md]

It replaces the part of the page between the two marker lines below (appending them the first
time) with the run's date, commit, machine, the headline ratios beside their targets
(``benchmarks/targets.toml``) and the load of every section. The rest of the page is left as is.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import fmt_seconds, markdown_table

BEGIN = "<!-- begin: written by python -m benchmarks.report; do not edit by hand -->"
END = "<!-- end: written by python -m benchmarks.report -->"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "performance.md"


def machine_text(machine: Mapping[str, Any]) -> str:
    """One line: CPUs, model, platform, Python and the main library versions."""
    versions = machine.get("versions", {})
    libs = ", ".join(
        f"{name} {versions[name]}"
        for name in ("zarr", "dask", "numpy", "nibabel", "datasets", "torch")
        if versions.get(name)
    )
    return (
        f"{machine.get('cpu_count')} CPUs ({machine.get('cpu_model')}), "
        f"{machine.get('platform')}, Python {machine.get('python')}; {libs}"
    )


def section(payload: Mapping[str, Any]) -> str:
    """The markdown of one run, between the markers."""
    code = payload.get("code", {})
    commit = str(code.get("commit"))[:7]
    changed = len(code.get("changed") or [])
    loads = payload.get("machine", {}).get("load_average")
    rows = [[r["id"], r["description"], r["measured"], r["target"]] for r in payload["ratios"]]
    timings = [
        [key, fmt_seconds(s["seconds"]), str(s["load_start"]), str(s["load_end"])]
        for key, s in payload["sections"].items()
    ]
    failed = [key for key, s in payload["sections"].items() if s.get("error")]
    lines = [
        BEGIN,
        "",
        f"`{payload['command']}`, {payload.get('date', 'date not recorded')}, commit {commit}"
        + (f" ({changed} files changed in the working tree)" if changed else "")
        + f", on {machine_text(payload.get('machine', {}))}. Load average (1/5/15 min) "
        f"{loads} at the start, {payload.get('load_average_end')} at the end; the whole run "
        f"took {fmt_seconds(payload.get('wall_s'))}.",
        "",
        markdown_table(["#", "ratio", "measured", "target"], rows, align="llll"),
        "",
        "Sections, their wall time and the 1-minute load average at their start and end:",
        "",
        markdown_table(["section", "wall", "load at start", "at end"], timings),
    ]
    if failed:
        lines += ["", f"Sections that failed in this run: {', '.join(failed)}."]
    return "\n".join([*lines, "", END])


def write(payload: Mapping[str, Any], docs: Path) -> None:
    """Replace the marked part of ``docs`` with the run (append it when not there yet)."""
    text = docs.read_text(encoding="utf-8")
    new = section(payload)
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = head + new + tail
    else:
        text = text.rstrip("\n") + "\n\n" + new + "\n"
    docs.write_text(text, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    """Read the run's JSON and write its section of the page."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__)
    parser.add_argument("run", type=Path, help="the --json file of python -m benchmarks")
    parser.add_argument("--docs", type=Path, default=DOCS, help="the page to write into")
    args = parser.parse_args(argv)
    payload = json.loads(args.run.read_text(encoding="utf-8"))
    write(payload, args.docs)
    print(f"wrote the run of {payload.get('date')} into {args.docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
