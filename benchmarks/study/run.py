"""Run the selected sections and write the report: markdown on stdout, JSON, markdown file.

The report gives every section's tables and, at the end, the headline ratios beside the
targets of ``benchmarks/targets.toml``. It judges nothing: docs/performance.md reads them.
"""

from __future__ import annotations

import datetime
import os
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.common import (
    NOISE_NOTE,
    fmt_seconds,
    git_state,
    machine_info,
    machine_lines,
    markdown_table,
    work_directory,
    write_json,
)
from benchmarks.study.bytes import section_bytes
from benchmarks.study.config import (
    PACKAGES,
    REPORT_ORDER,
    SECTIONS,
    Config,
    load1,
    log,
    parse_args,
)
from benchmarks.study.conversion import section_conversion
from benchmarks.study.loader import section_loader
from benchmarks.study.patch import section_patch
from benchmarks.study.realct import section_realct
from benchmarks.study.results import Section, targets
from benchmarks.study.scale import section_scale
from benchmarks.study.slices import section_slices
from benchmarks.study.stats import section_stats
from benchmarks.study.volume import section_volume
from benchmarks.study.workspace import Workspace

REPO = Path(__file__).resolve().parents[2]

SECTION_FUNCS: dict[str, tuple[str, Callable[[Workspace, Section], None]]] = {
    "conversion": ("Conversion and ingest time", section_conversion),
    "bytes": ("Bytes on disk", section_bytes),
    "slices": ("Random slice-pair latency", section_slices),
    "loader": ("Training DataLoader throughput", section_loader),
    "volume": ("Whole-volume read", section_volume),
    "patch": ("3D patch read", section_patch),
    "stats": ("Statistics", section_stats),
    "realct": ("Real CT slices (pydicom-data)", section_realct),
    "scale": ("Scale: 1,005 cases", section_scale),
}


def run_sections(ws: Workspace) -> dict[str, Section]:
    """Run the selected sections in order; a failing section is reported, the others run."""
    done: dict[str, Section] = {}
    for key in SECTIONS:
        if key not in ws.cfg.sections:
            continue
        title, func = SECTION_FUNCS[key]
        sec = Section(key, title, load_start=load1())
        log(f"section {key}: start (load {sec.load_start})")
        start = time.perf_counter()
        try:
            func(ws, sec)
        except Exception as err:  # noqa: BLE001 - report it, run the other sections
            sec.error = f"{type(err).__name__}: {err}"
            sec.data["traceback"] = traceback.format_exc()
            log(f"section {key}: FAILED\n{sec.data['traceback']}")
        sec.seconds = time.perf_counter() - start
        sec.load_end = load1()
        log(f"section {key}: {sec.seconds:.1f} s")
        done[key] = sec
    return done


def ratios_table(sections: dict[str, Section]) -> tuple[str, list[dict[str, Any]]]:
    """The headline ratios of every section, in the order of the targets file."""
    known = targets()
    order = {goal_id: n for n, goal_id in enumerate(known)}
    measured = sorted(
        (r for s in sections.values() for r in s.ratios), key=lambda r: order.get(r.id, len(order))
    )
    rows = []
    payload = []
    for r in measured:
        target = known.get(r.id)
        text = target.description if target else "(no target in benchmarks/targets.toml)"
        goal = target.text() if target else ""
        rows.append([r.id, text, r.measured, goal])
        payload.append({**asdict(r), "description": text, "target": goal})
    table = markdown_table(["#", "ratio", "measured", "target"], rows, align="llll")
    return table, payload


def report(
    cfg: Config,
    ws: Workspace,
    sections: dict[str, Section],
    machine: dict[str, Any],
    code: dict[str, Any],
    load_end: list[float] | None,
    wall: float,
) -> tuple[str, dict[str, Any]]:
    """Return the markdown report and the JSON payload."""
    command = "python -m benchmarks" + (" --quick" if cfg.quick else "")
    changed = code.get("changed") or []
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# ctspine_zarr benchmark (`{command}`)",
        "",
        f"- date: {date}",
        *[f"- {line}" for line in machine_lines(machine)],
        f"- load average (1/5/15 min) at the end: {load_end}",
        f"- code: commit {str(code.get('commit'))[:10]}, {len(changed)} changed or new files "
        "in the working tree (others edit it concurrently; see the JSON)",
        f"- {NOISE_NOTE}",
        f"- run: {fmt_seconds(wall)} wall; sections: {', '.join(cfg.sections)}",
    ]
    if ws._cases is not None:
        cases = ws.cases
        lines.append(
            f"- data: {len(cases)} synthetic cases "
            f"(`ctspine_zarr.testing.synthetic.make_raw_tree`, seed {cfg.seed}), "
            f"{cfg.shape[0]}x{cfg.shape[1]} in-plane, {cfg.slices[0]}-"
            f"{cfg.slices[1]} slices per case ({sum(c.n_z for c in cases)} in all; "
            f"{', '.join(str(c.n_z) for c in cases)}); header variants: "
            f"{', '.join(c.variant for c in cases)}"
        )
    if ws.untimed:
        built = ", ".join(f"{k} {fmt_seconds(v)}" for k, v in ws.untimed.items())
        lines.append(f"- built untimed for the selected sections: {built}")
    number = 0
    for key in REPORT_ORDER:
        sec = sections.get(key)
        if sec is None:
            continue
        number += 1
        lines += ["", f"## {number}. {sec.title}", ""]
        if sec.error is not None:
            lines += [f"**FAILED**: `{sec.error}` (traceback in the JSON)", ""]
        lines += sec.lines
    ratios_md, ratios_json = ratios_table(sections)
    lines += [
        "",
        "## Headline ratios",
        "",
        "Ratios as in the sections; targets from `benchmarks/targets.toml`.",
        "",
        ratios_md,
        "",
        "## Section timings and machine load",
        "",
        markdown_table(
            ["section", "wall", "1-min load at start", "at end"],
            [
                [s.key, fmt_seconds(s.seconds), str(s.load_start), str(s.load_end)]
                for s in sections.values()
            ],
        ),
    ]
    text = "\n".join(lines)
    payload = {
        "benchmark": "ctspine_zarr suite",
        "command": command,
        "date": date,
        "settings": asdict(cfg),
        "machine": machine,
        "load_average_end": load_end,
        "code": code,
        "wall_s": wall,
        "untimed_builds_s": ws.untimed,
        "cases": [{**asdict(c), "n_z": c.n_z} for c in (ws.cases if ws._cases is not None else [])],
        "sections": {
            k: {
                "title": s.title,
                "seconds": s.seconds,
                "load_start": s.load_start,
                "load_end": s.load_end,
                "error": s.error,
                "data": s.data,
            }
            for k, s in sections.items()
        },
        "ratios": ratios_json,
        "report_markdown": text,
    }
    return text, payload


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the report, write JSON (and markdown); 1 if a section failed."""
    cfg, args = parse_args(argv)
    machine = machine_info(PACKAGES)
    code = git_state(REPO)
    with work_directory(args.workdir) as workdir:
        log(f"workdir {workdir}; sections {', '.join(cfg.sections)}")
        start = time.perf_counter()
        ws = Workspace(workdir, cfg)
        sections = run_sections(ws)
        ws.close()
        wall = time.perf_counter() - start
        try:
            load_end: list[float] | None = [round(x, 2) for x in os.getloadavg()]
        except OSError:
            load_end = None
        text, payload = report(cfg, ws, sections, machine, code, load_end, wall)
    print(text)
    if args.json is not None:
        json_path = args.json
    else:
        fd, name = tempfile.mkstemp(prefix="ctspine-bench-", suffix=".json")
        os.close(fd)
        json_path = Path(name)
    print(f"\nJSON: {write_json(json_path, payload).resolve()}")
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text + "\n", encoding="utf-8")
        print(f"markdown: {args.markdown.resolve()}")
    return 1 if any(s.error for s in sections.values()) else 0
