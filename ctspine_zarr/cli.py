"""``ctspine-zarr``: thin commands over the library functions. Nothing imports this module."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import cliargs, cliaudit, clicases
from .clierrors import explain, remotes_of
from .clinnunet import add_export_nnunet
from .errors import use_command_line_names
from .schema import IMAGE_CODEC_CHOICES, TILE

# the helpers every command uses, under the names the commands call them by
_storage_options, _output = cliargs.storage_options, cliargs.output
_add_output, _add_location_options = cliargs.add_output, cliargs.add_location_options


def _cmd_ingest(args: argparse.Namespace) -> int:
    from .write.ingest import ingest

    report = ingest(
        args.raw,
        args.store,
        workers=args.workers,
        scheduler=args.scheduler,
        overwrite=args.overwrite,
        force_clear=args.force_clear,
        repair=args.repair,
        add=args.add,
        storage_options=_storage_options(args.storage_options),
        raw_storage_options=_storage_options(args.raw_storage_options),
        codec=args.codec,
        tile=args.tile,
        progress=not args.quiet,
        announce=lambda line: print(line, file=sys.stderr),
    )
    print(report.summary())
    if not args.pyramid:
        return 0 if report.ok else 1
    from .write.pyramid import add_levels

    options = _storage_options(args.storage_options)
    levels = add_levels(
        args.store, workers=args.workers, storage_options=options, progress=not args.quiet
    )
    print(levels.summary())
    return 0 if report.ok and levels.ok else 1


def _cmd_info(args: argparse.Namespace) -> int:
    from .audit import describe_record
    from .info import describe
    from .io.store import open_catalogue
    from .selection import describe_selection, select

    options = _storage_options(args.storage_options)
    ds = open_catalogue(args.store, storage_options=options)
    chosen = cliargs.selection(args)
    selected = describe_selection(**chosen)
    heading = f"{args.store} ({selected})" if selected else args.store
    subset = select(ds, **chosen)
    print(describe(subset, location=heading))
    ids = [str(c) for c in subset["case"].values]
    print(describe_record(args.store, storage_options=options, cases=ids))
    return 0


def _report_written(
    command: str, write: Callable[[], Path], errors: tuple[type[Exception], ...]
) -> int:
    """Run ``write`` and print the path it wrote (0), or one of ``errors`` as an error (2)."""
    try:
        path = write()
    except errors as err:
        print(f"ctspine-zarr {command}: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from .write.verify import verify

    report = verify(
        args.store,
        against=args.against,
        storage_options=_storage_options(args.storage_options),
        raw_storage_options=_storage_options(args.raw_storage_options),
        progress=not args.quiet,
    )
    print(report.summary())
    return 0 if report.ok else 1


def _cmd_show(args: argparse.Namespace) -> int:
    from .viz.show import save_case_png

    out = _output(args)
    if out is None:
        raise ValueError("give the PNG file to write: show STORE CASE OUT.png")
    options = _storage_options(args.storage_options)
    marks: Any = ([], [])
    if args.audit:
        from .audit.pictures import case_marks

        marks = case_marks(args.store, args.case, storage_options=options)
    return _report_written(
        "show",
        lambda: save_case_png(
            args.store,
            args.case,
            out,
            z=args.z,
            plane=args.plane,
            window=args.window,
            level=0 if args.full_resolution else None,
            storage_options=options,
            marks=marks[0],
            names=args.audit,
            notes=marks[1],
        ),
        (ValueError, IndexError),
    )


def _cmd_pyramid(args: argparse.Namespace) -> int:
    from .write.pyramid import add_levels

    try:
        report = add_levels(
            args.store,
            cases=args.cases,
            workers=args.workers,
            storage_options=_storage_options(args.storage_options),
            progress=not args.quiet,
        )
    except ValueError as err:
        print(f"ctspine-zarr pyramid: error: {err}", file=sys.stderr)
        return 2
    print(report.summary())
    return 0 if report.ok else 1


def _cmd_stats(args: argparse.Namespace) -> int:
    """Run ``ctspine-zarr stats`` with parsed ``args``; print a summary; return 0."""
    from .stats import STORE_ATTR, compute_stats

    options = _storage_options(args.storage_options)
    result = compute_stats(
        args.store,
        split=args.split,
        source=args.source,
        vertebra=args.vertebra,
        cases=args.cases,
        storage_options=options,
        scheduler=args.scheduler,
        workers=args.workers,
        progress=not args.quiet,
        fingerprint_samples=args.fingerprint_samples,
        fingerprint_seed=args.seed,
    )
    print(result.describe())
    out = _output(args)
    if out:
        written = result.to_dir(out)
        if not args.no_plots:
            from .viz.plots import write_stats_plots

            written.extend(write_stats_plots(result, out))
        print(f"wrote {len(written)} files to {out}")
    if args.write_to_store:
        result.to_store(args.store, storage_options=options)
        print(f"recorded the statistics in {args.store} (root attrs {STORE_ATTR!r})")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .info import describe
    from .io.store import open_catalogue
    from .testing.synthetic import make_raw_tree
    from .write.ingest import ingest

    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="ctspine-demo-"))
    raw, store = base / "raw", base / "ctspine1k.zarr"
    print(f"1/3 synthesising {args.cases} CTSpine1K-like cases under {raw}")
    make_raw_tree(raw, n_cases=args.cases, shape=(args.size, args.size), seed=args.seed)
    print(f"2/3 ingesting into {store}")
    report = ingest(raw, store, workers=args.workers, progress=not args.quiet)
    print(report.summary())
    print("3/3 the catalogue")
    print(describe(open_catalogue(store), location=str(store)))
    print(f"\nlist its cases:  ctspine-zarr cases {shlex.quote(str(store.absolute()))}")
    print(f"open it in Python:  {_python_snippet(store.absolute())}")
    return 0 if report.ok else 1


def _python_snippet(store: Path) -> str:
    """A command line that opens ``store`` in this Python and prints its case ids."""
    code = (
        f"import ctspine_zarr; ds = ctspine_zarr.open({json.dumps(str(store))}); "
        "print(ds.ctspine.case_ids())"
    )
    found = shutil.which("python")
    same = found is not None and os.path.realpath(found) == os.path.realpath(sys.executable)
    python = "python" if same else shlex.quote(sys.executable)
    return f"{python} -c {shlex.quote(code)}"


def _cmd_serve(args: argparse.Namespace) -> int:
    import urllib.parse

    from .io.serve import serve_store
    from .io.store import is_url, open_catalogue

    if is_url(args.store):
        print(
            f"ctspine-zarr serve: error: {args.store}: serve publishes a local store; a store "
            "in object storage is served by its own HTTP endpoint",
            file=sys.stderr,
        )
        return 2
    cases = open_catalogue(args.store).ctspine.case_ids()
    example = urllib.parse.quote(cases[0], safe="") if cases else "<id>"

    def announce(url: str) -> None:
        print(f"serving {args.store} at {url} (Ctrl-C to stop)", flush=True)
        print(f"  python:       ctspine_zarr.open({url!r})", flush=True)
        print(f"  neuroglancer: zarr3://{url}cases/{example}/image/", flush=True)

    try:
        serve_store(args.store, host=args.host, port=args.port, verbose=args.log, announce=announce)
    except OSError as err:
        print(
            f"ctspine-zarr serve: error: cannot listen on {args.host}:{args.port}: {err} "
            "(choose another --port; 0 picks a free one)",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    return 0


def _add_ingest(sub: Any) -> None:
    p = sub.add_parser(
        "ingest",
        help="rewrite a raw CTSpine1K tree into a Zarr store",
        description="Rewrite a raw CTSpine1K tree into a Zarr store. A rerun resumes: it "
        "skips the cases already stored and unchanged, and moves those whose split the split "
        "file changed. A store made from another raw tree takes RAW's cases only with --add.",
        problems="some cases were refused or failed (the others are stored)",
    )
    p.add_argument("raw", help="folder (or URL) holding rawdata/ and metadata/")
    p.add_argument("store", help="path or fsspec URL of the store")
    cliargs.add_workers(
        p, "cases at a time, and threads of their shared encoder (default: the CPUs)"
    )
    p.add_argument(
        "--scheduler",
        default="threads",
        type=cliargs.scheduler,
        help="threads, processes or sync for a local dask scheduler; a scheduler "
        "address (tcp://host:8786) to run the cases on an existing dask.distributed cluster",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="rewrite every case and drop the cases RAW no longer holds; only a ctspine store "
        "or an empty location is overwritten, beside the current version (readers keep the "
        "old state until the switch)",
    )
    p.add_argument(
        "--force-clear",
        action="store_true",
        help="delete whatever else STORE holds (the files are named first); without it a "
        "location that is neither empty nor a ctspine store is refused",
    )
    p.add_argument(
        "--repair",
        action="store_true",
        help="decode and check every stored case, and rewrite the damaged ones (a plain "
        "rerun checks metadata and shard indexes only)",
    )
    p.add_argument(
        "--add",
        action="store_true",
        help="add RAW's cases to a store made from another raw tree (without it such a "
        "store is refused, naming how the trees differ; the same tree again needs none)",
    )
    p.add_argument(
        "--codec",
        default="default",
        choices=IMAGE_CODEC_CHOICES,
        help="image codec: default (Blosc zstd, any Zarr reader, fastest) or compact "
        "(lossless JPEG-LS, about 2/3 of the bytes, ~5x slower to decode, readers need "
        "ctspine-zarr[compact]); see docs/codecs.md",
    )
    p.add_argument(
        "--tile",
        type=cliargs.tile,
        default=TILE,
        metavar="N",
        help="in-plane size of the image and label inner chunks: 0 (default) keeps one whole "
        "axial slice per chunk; N stores (1, N, N) tiles of each slice, so that a 3D patch "
        "decodes only the tiles it touches (--tile 128 for patch training: 1.5x faster "
        "patches, slower whole-slice and plain-xarray reads); see docs/chunk-layout.md",
    )
    p.add_argument(
        "--pyramid",
        action="store_true",
        help="then write the 2x and 4x levels of every case lacking them (as the pyramid "
        "command does; a rerun restores those of the cases it rewrote)",
    )
    _add_location_options(p, raw=True, quiet=True)
    p.set_defaults(func=_cmd_ingest)


def _add_info(sub: Any) -> None:
    p = sub.add_parser(
        "info",
        help="print the catalogue summary of a store",
        description="Print the catalogue summary of a store (or of the cases selected): "
        "cases per split and source, slices, spacing, vertebrae, codecs. The case ids: "
        "ctspine-zarr cases STORE.",
    )
    p.add_argument("store", help="path or fsspec URL of the store")
    cliargs.add_selection(p)
    _add_location_options(p)
    p.set_defaults(func=_cmd_info)


def _add_verify(sub: Any) -> None:
    p = sub.add_parser(
        "verify",
        help="check every chunk, the metadata and the catalogue",
        description="Check every chunk's checksum, the metadata and the catalogue of a "
        "store (and, with --against, every case against its source files).",
        problems="problems were found (listed on stdout)",
    )
    p.add_argument("store", help="path or fsspec URL of the store")
    p.add_argument(
        "--against",
        metavar="RAW",
        help="also compare every case with its source files in RAW (default: the store only)",
    )
    _add_location_options(p, raw=True, quiet=True)
    p.set_defaults(func=_cmd_verify)


def _add_show(sub: Any) -> None:
    p = sub.add_parser(
        "show",
        help="write a quick-look PNG of a case: planes, labels, legend",
        description="Write a quick-look PNG of a case: axial, coronal and sagittal planes "
        "with the vertebra labels in their colours and a legend.",
    )
    p.add_argument("store", help="path or fsspec URL of the store")
    p.add_argument("case", help="case id (ctspine-zarr cases STORE lists them)")
    p.add_argument(
        "--z", type=int, metavar="K", help="axial slice (default: middle of the labelled slices)"
    )
    p.add_argument(
        "--plane",
        choices=("axial", "coronal", "sagittal", "all"),
        default="all",
        help="the plane(s) to draw",
    )
    p.add_argument(
        "--window", default="bone", help="bone (W 1800, L 400), soft (W 400, L 40) or W,L in HU"
    )
    p.add_argument(
        "--full-resolution",
        action="store_true",
        help="read the coronal and sagittal cuts from every full-resolution slice, not from "
        "the case's 2x level (written by `ctspine-zarr pyramid`)",
    )
    p.add_argument(
        "--audit",
        action="store_true",
        help="circle the labels the store's recorded audit flagged, name every vertebra and "
        "write the findings under the picture (run `ctspine-zarr audit STORE` first)",
    )
    _add_output(p, "the PNG file to write", old_option=True)
    _add_location_options(p)
    p.set_defaults(func=_cmd_show)


def _add_pyramid(sub: Any) -> None:
    p = sub.add_parser(
        "pyramid",
        help="write 2x and 4x downsampled levels of every case (for browsing)",
        description="Write 2x and 4x downsampled levels (image by block mean, labels by block "
        "mode, 64^3 chunks) of every complete case that lacks them; a rerun writes only what "
        "is missing.",
        problems="some cases failed (the others have their levels)",
    )
    p.add_argument("store", help="path or fsspec URL of the store")
    p.add_argument(
        "--case",
        action="append",
        dest="cases",
        help="only this case (repeatable; default: every case)",
    )
    cliargs.add_workers(p, "cases at a time (default: the CPUs)")
    _add_location_options(p, quiet=True)
    p.set_defaults(func=_cmd_pyramid)


def _add_stats(sub: Any) -> None:
    p = sub.add_parser(
        "stats",
        help="per-vertebra and per-case statistics, split summaries, HU fingerprint",
        description="Compute per-vertebra and per-case statistics, split summaries and the "
        "HU fingerprint in one dask graph; print a summary, and write tables and plots to "
        "OUT.",
    )
    cliargs.stats_arguments(p)
    p.set_defaults(func=_cmd_stats)


def _add_demo(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="synthesise a raw tree, ingest it and print the catalogue",
        description="Synthesise a small CTSpine1K-like raw tree, ingest it and print the "
        "catalogue, then how to list its cases and open it in Python.",
        problems="some cases were refused or failed",
    )
    p.add_argument("dir", nargs="?", help="working folder (default: a new temporary one)")
    p.add_argument("--cases", type=cliargs.positive_int, default=6, help="number of cases")
    p.add_argument(
        "--size", type=cliargs.positive_int, default=256, help="in-plane size of the cases"
    )
    p.add_argument("--seed", type=cliargs.seed, default=0, help="random seed of the cases")
    cliargs.add_workers(p, "cases ingested at a time (default: the CPUs)")
    p.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=_cmd_demo)


def _add_serve(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a local store over HTTP (Range requests, CORS) for viewers and readers",
        description="Serve a local store read-only over HTTP, with Range requests and the "
        "CORS headers browser viewers need, until Ctrl-C. The store's root is the server's "
        "root: ctspine_zarr.open('http://HOST:PORT/'), and neuroglancer opens a case's image "
        "as zarr3://http://HOST:PORT/cases/<id>/image/.",
        epilog="exit status: 0 stopped by Ctrl-C; 2 an error stopped it (the store or the "
        "port: one line on stderr says which; --debug shows the traceback).",
    )
    p.add_argument("store", help="local folder of the store")
    p.add_argument("--port", type=cliargs.port, default=8000, help="TCP port (0: a free one)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (127.0.0.1: this machine only; 0.0.0.0: every interface)",
    )
    p.add_argument("--log", action="store_true", help="log every request to stderr")
    p.set_defaults(func=_cmd_serve)


#: The commands, in the order ``--help`` lists them: each adds its parser to the subparsers.
_COMMANDS: tuple[Callable[[Any], None], ...] = (
    _add_ingest,
    _add_info,
    clicases.add_cases,
    clicases.add_export,
    add_export_nnunet,
    _add_verify,
    _add_show,
    _add_pyramid,
    _add_stats,
    cliaudit.add_audit,
    _add_serve,
    cliaudit.add_synth,
    _add_demo,
)


def build_parser() -> cliargs.Parser:
    """Return the argument parser of ``ctspine-zarr``."""
    parser = cliargs.Parser(
        prog="ctspine-zarr",
        description="CTSpine1K as a cloud-ready, slice-chunked Zarr store.",
        problems="the command found problems (see each command's --help)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in _COMMANDS:
        add_command(sub)
    parser.commands = dict(sub.choices)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ctspine-zarr`` with ``argv`` (default: the command line); return the exit code.

    Every error is one line on stderr (two with a hint) and an exit code (2; 130 for
    Ctrl-C): see :mod:`ctspine_zarr.clierrors`. ``--debug`` or ``CTSPINE_DEBUG=1`` shows
    the traceback instead.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if getattr(args, "out", "") is None and len(extra) == 1 and not extra[0].startswith("-"):
        # an optional last positional (``stats STORE --split train OUT``): argparse takes
        # positionals in groups, so one given after the options comes back unrecognised
        args.out, extra = extra[0], []
    if extra:
        parser.commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    debug = getattr(args, "debug", False) or os.environ.get("CTSPINE_DEBUG", "") not in ("", "0")
    named = use_command_line_names(True)
    try:
        return int(args.func(args))
    except (Exception, KeyboardInterrupt) as err:
        explained = explain(err, command=args.command, argv=argv, remotes=remotes_of(args))
        if debug:
            traceback.print_exc()
        for line in explained.lines(args.command):
            print(line, file=sys.stderr)
        return explained.code
    finally:
        use_command_line_names(named)


if __name__ == "__main__":
    sys.exit(main())
