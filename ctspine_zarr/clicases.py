"""The commands of ``ctspine-zarr`` that work on a selection of cases: ``cases`` and ``export``.

Both select as every command does (``--split``, ``--source``, ``--vertebra``: repeatable or
comma lists, :func:`ctspine_zarr.cliargs.add_selection`), through the library's one
selection (:mod:`ctspine_zarr.selection`). Only :mod:`ctspine_zarr.cli` imports this module.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from . import cliargs

__all__ = ["add_cases", "add_export"]


def _cmd_cases(args: argparse.Namespace) -> int:
    from .info import case_table
    from .io.store import open_catalogue

    ds = open_catalogue(args.store, storage_options=cliargs.storage_options(args.storage_options))
    table = case_table(ds, **cliargs.selection(args))
    if args.json:
        print(json.dumps(json.loads(table.to_json(orient="records")), indent=2))
    elif len(table):
        print(table.to_string(index=False))
    if not len(table):
        print(f"no case matches (the store holds {ds.sizes.get('case', 0)})", file=sys.stderr)
    return 0


def add_cases(sub: Any) -> None:
    """Add the ``cases`` command to the subparsers ``sub``."""
    p = sub.add_parser(
        "cases",
        help="list the case ids with split, source, slices and vertebrae",
        description="List the cases of a store, one per line: id, split, source, slices, "
        "the range of vertebrae present (C3-L5) and how many. Reads the catalogue only.",
    )
    p.add_argument("store", help="path or fsspec URL of the store")
    cliargs.add_selection(p)
    p.add_argument("--json", action="store_true", help="print a JSON array of records")
    cliargs.add_location_options(p)
    p.set_defaults(func=_cmd_cases)


_EXPORT_USAGE = (
    "ctspine-zarr export [options] STORE CASE OUT\n"
    "       ctspine-zarr export [options] STORE FOLDER "
    "(--split SPLIT | --source SOURCE | --vertebra V | --all)"
)


def _cmd_export(args: argparse.Namespace) -> int:
    from .io.export import export_cases, to_nifti

    options = cliargs.storage_options(args.storage_options)
    chosen = cliargs.selection(args)
    if not args.all and all(value is None for value in chosen.values()):
        if args.out is None:
            raise ValueError(
                "give the file to write (export STORE CASE OUT), or a folder and the cases "
                "to export into it (export STORE FOLDER --split test; --all for every case)"
            )
        path = to_nifti(args.store, args.case, args.out, label=args.label, storage_options=options)
        print(f"wrote {path}")
        return 0
    if args.out is not None:
        flags = [flag for name, flag in cliargs.SELECTION_OPTIONS.items() if chosen[name]]
        raise ValueError(
            f"{' '.join(flags or ['--all'])} exports the cases into a folder: give STORE and "
            f"FOLDER, not a case and a file ({args.case} {args.out})"
        )
    from .io.store import open_catalogue
    from .parallel import progress_bar
    from .selection import selected_ids

    ds = open_catalogue(args.store, storage_options=options)
    ids = selected_ids(ds, **chosen)
    if not ids:
        print(f"no case matches (the store holds {ds.sizes.get('case', 0)})", file=sys.stderr)
        return 0
    bar = progress_bar(len(ids), desc="export", enabled=not args.quiet)
    try:
        written = export_cases(
            args.store,
            args.case,
            cases=ids,
            label=args.label,
            storage_options=options,
            on_done=lambda _: bar.update(),
        )
    finally:
        bar.close()
    n = len(written)
    kind = ("label map" if args.label else "image") + ("s" if n != 1 else "")
    print(f"wrote {n} {kind} to {args.case}")
    return 0


def add_export(sub: Any) -> None:
    """Add the ``export`` command to the subparsers ``sub``."""
    p = sub.add_parser(
        "export",
        help="write a case, or a selection of cases, back to NIfTI with the original header",
        usage=_EXPORT_USAGE,
        description="Write a case's image (or label map) back to the NIfTI file it was "
        "ingested from: the original header, voxel order and values. Given a selection of "
        "cases instead of a case id (split, source, vertebra or all: the options below), "
        "write each case selected into FOLDER (created if missing) as <case>.nii.gz, or "
        "as <case>_seg.nii.gz for label maps.",
    )
    p.add_argument("store", help="path or fsspec URL of the store")
    p.add_argument(
        "case",
        metavar="CASE | FOLDER",
        help="case id (ctspine-zarr cases STORE lists them); with a selection, the folder",
    )
    p.add_argument(
        "out",
        nargs="?",
        metavar="OUT",
        help="output .nii or .nii.gz path of the case (its folder must exist)",
    )
    p.add_argument("--label", action="store_true", help="export the label map, not the image")
    cliargs.add_selection(p)
    p.add_argument("--all", action="store_true", help="export every case into FOLDER")
    cliargs.add_location_options(p, quiet=True)
    p.set_defaults(func=_cmd_export)
