"""The ``audit`` command of ``ctspine-zarr``, and ``synth``, whose ``--defects`` makes trees
to audit. :mod:`ctspine_zarr.cli` adds them to its commands; nothing else imports this."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from . import cliargs

__all__ = ["add_audit", "add_synth"]

#: The audit's checks (kept here so that ``--help`` needs no import of the audit package).
_CHECKS = ("order", "gap", "fragments", "size", "overlap")


def _cmd_audit(args: argparse.Namespace) -> int:
    from .audit import audit_store, record_audit
    from .audit.pictures import write_pictures

    options = cliargs.storage_options(args.storage_options)
    result = audit_store(
        args.store,
        split=args.split,
        source=args.source,
        vertebra=args.vertebra,
        cases=args.cases,
        checks=args.checks,
        storage_options=options,
        scheduler=args.scheduler,
        workers=args.workers,
        progress=not args.quiet,
        min_fragment_voxels=args.min_fragment_voxels,
    )
    # with --json -, stdout is the JSON document alone; the rest goes to stderr
    say = (lambda line: print(line, file=sys.stderr)) if args.json == "-" else print
    if args.json == "-":
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(result.describe())
    if args.json and args.json != "-":
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result.to_json(), fh, indent=2)
            fh.write("\n")
        say(f"wrote {args.json}")
    if not args.no_record and str(args.store).lower().startswith(("http://", "https://")):
        say(f"the findings are not recorded: {args.store} is read-only over HTTP")
    elif not args.no_record:
        record_audit(args.store, result, storage_options=options)
        say(f"recorded the findings in {args.store} (audit/zarr.json)")
    if args.out:
        info = result.info
        heading = (
            f"Audit version {info['version']} of {info['time']} ({info['created_by']}): "
            f"{len(result.cases)} cases, checks {', '.join(result.checks)}"
        )
        written = write_pictures(
            args.store, result.findings, args.out, storage_options=options, heading=heading
        )
        say(f"wrote {len(written) - 1} pictures and index.html to {args.out}")
    return 1 if result.findings else 0


def add_audit(sub: Any) -> None:
    """Add ``ctspine-zarr audit`` to the subcommands."""
    p = sub.add_parser(
        "audit",
        help="check every label map against anatomy (order, gap, fragments, size, overlap)",
        description="Check every case's vertebra labels against anatomy: vertebrae out of "
        "cranio-caudal order, a vertebra missing between labelled ones, a label in "
        "disconnected pieces, a volume far outside its level's, nested or crowded slices. "
        "Prints one line per finding and records them in the store (audit/zarr.json: "
        "`info` counts them, `show --audit` marks them, case_ids(exclude_flagged=True) "
        "leaves the flagged cases out).",
        problems="findings were reported",
    )
    p.add_argument("store", help="path or fsspec URL of the store")
    p.add_argument(
        "--json",
        metavar="FILE",
        help="also write the findings as JSON to FILE ('-': print the JSON instead of the "
        "table; default: none)",
    )
    cliargs.add_selection(p)
    p.add_argument(
        "--case",
        action="append",
        dest="cases",
        metavar="ID",
        help="only this case (repeatable; default: every case)",
    )
    p.add_argument(
        "--check",
        action="append",
        dest="checks",
        choices=_CHECKS,
        help="only this check (repeatable; default: every check)",
    )
    cliargs.add_workers(
        p,
        "tasks at a time on this machine: threads, processes or LocalCluster workers "
        "(default: the CPUs)",
    )
    p.add_argument(
        "--scheduler",
        default="threads",
        type=cliargs.scheduler,
        help="threads, processes, sync, distributed (a new LocalCluster of --workers "
        "processes), or the address of a dask.distributed scheduler (tcp://host:8786)",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="write a picture per flagged case (sagittal view, labels named, problems "
        "circled) and an index.html listing the findings into DIR (default: none)",
    )
    p.add_argument(
        "--no-record",
        action="store_true",
        help="do not record the findings in the store (a store over HTTP, read-only, is "
        "never written)",
    )
    p.add_argument(
        "--min-fragment-voxels",
        type=cliargs.count,
        default=100,
        metavar="N",
        help="fragments: report pieces besides a label's largest holding more voxels",
    )
    cliargs.add_location_options(p, quiet=True)
    p.set_defaults(func=_cmd_audit)


def _cmd_synth(args: argparse.Namespace) -> int:
    from .testing.synthetic import make_raw_tree

    cases = make_raw_tree(
        args.dir,
        n_cases=args.cases,
        shape=(args.shape[0], args.shape[1]),
        n_slices=(args.slices[0], args.slices[1]),
        seed=args.seed,
        defects=args.defects or (),
    )
    print(f"wrote {len(cases)} cases under {args.dir}")
    for case in cases:
        for defect in case.defects:
            print(f"  {defect.kind} defect in {case.case_id}: {defect.description}")
    if any(case.defects for case in cases):
        print(f"the defects are listed in {args.dir}/metadata/defects.json")
    return 0


def add_synth(sub: Any) -> None:
    """Add ``ctspine-zarr synth`` to the subcommands."""
    p = sub.add_parser(
        "synth",
        help="write a CTSpine1K-like raw tree",
        description="Write a raw tree laid out as CTSpine1K's (rawdata/, metadata/ with "
        "the split file) with synthetic spine CT cases, for trying and testing.",
    )
    p.add_argument("dir", help="folder to write the raw tree into")
    p.add_argument("--cases", type=cliargs.positive_int, default=6, help="number of cases")
    p.add_argument(
        "--shape",
        type=cliargs.positive_int,
        nargs=2,
        default=(512, 512),
        metavar=("Y", "X"),
        help="in-plane size of every case, in voxels",
    )
    p.add_argument(
        "--slices",
        type=cliargs.positive_int,
        nargs=2,
        default=(40, 120),
        metavar=("MIN", "MAX"),
        help="range of the number of axial slices per case",
    )
    p.add_argument("--seed", type=cliargs.seed, default=0, help="random seed of the cases")
    p.add_argument(
        "--defects",
        nargs="+",
        type=cliargs.defect,
        metavar="KIND[:CASE]",
        help="inject label defects for the audit to find: order, gap, fragments, size or "
        "overlap, into case number CASE (0 is the first written; default: the first case "
        "that can take it), or 'all' for one of each (default: none)",
    )
    p.set_defaults(func=_cmd_synth)
