"""``ctspine-zarr``: thin commands over the library functions. Nothing imports this module."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from .errors import CTSpineError
from .schema import IMAGE_CODEC_CHOICES, SPLITS


def _storage_options(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        options = json.loads(text)
    except json.JSONDecodeError as err:
        raise SystemExit(f"--storage-options must be a JSON object, but: {err}") from err
    if not isinstance(options, dict):
        raise SystemExit(f"--storage-options must be a JSON object, but is {text!r}")
    return options


def _add_output(parser: argparse.ArgumentParser, description: str, *, old_option: bool) -> None:
    """The output path: the last positional argument of every command that writes files.

    With ``old_option``, ``--out PATH`` (the form ``show`` and ``stats`` took before) is still
    accepted, hidden from the help, so the positional argument is optional to argparse.
    """
    if old_option:
        parser.add_argument("out", nargs="?", help=description)
        parser.add_argument("--out", dest="out_option", help=argparse.SUPPRESS)
    else:
        parser.add_argument("out", help=description)


def _output(args: argparse.Namespace) -> str | None:
    """The output path of ``args``, from the positional argument or the old ``--out``."""
    given = {path for path in (args.out, getattr(args, "out_option", None)) if path}
    if len(given) > 1:
        raise SystemExit(f"ctspine-zarr {args.command}: error: two output paths: {sorted(given)}")
    return given.pop() if given else None


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
        storage_options=_storage_options(args.storage_options),
        raw_storage_options=_storage_options(args.raw_storage_options),
        codec=args.codec,
        progress=not args.quiet,
        announce=lambda line: print(line, file=sys.stderr),
    )
    print(report.summary())
    return 0 if report.ok else 1


def _cmd_info(args: argparse.Namespace) -> int:
    from .info import describe
    from .io.store import open_catalogue

    ds = open_catalogue(args.store, storage_options=_storage_options(args.storage_options))
    print(describe(ds, location=args.store))
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


def _cmd_export(args: argparse.Namespace) -> int:
    from .io.export import to_nifti

    return _report_written(
        "export",
        lambda: to_nifti(
            args.store,
            args.case,
            args.out,
            label=args.label,
            storage_options=_storage_options(args.storage_options),
        ),
        (ValueError,),
    )


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
        raise SystemExit(
            "ctspine-zarr show: error: give the PNG file to write: show STORE CASE OUT.png"
        )
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
            storage_options=_storage_options(args.storage_options),
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


def _samples_option(text: str) -> int | Literal["nnunet"] | None:
    if text.lower() == "nnunet":
        return "nnunet"
    if text.lower() in ("none", "off", "0"):
        return None
    try:
        return int(text)
    except ValueError:
        raise SystemExit(
            f"--fingerprint-samples must be 'nnunet', a number or 'none', but is {text!r}"
        ) from None


def _cmd_stats(args: argparse.Namespace) -> int:
    """Run ``ctspine-zarr stats`` with parsed ``args``; print a summary; return 0."""
    from .stats import STORE_ATTR, compute_stats

    options = _storage_options(args.storage_options)
    result = compute_stats(
        args.store,
        split=args.split,
        cases=args.cases,
        storage_options=options,
        scheduler=args.scheduler,
        workers=args.workers,
        progress=not args.quiet,
        fingerprint_samples=_samples_option(str(args.fingerprint_samples)),
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


def _cmd_synth(args: argparse.Namespace) -> int:
    from .testing.synthetic import make_raw_tree

    cases = make_raw_tree(
        args.dir,
        n_cases=args.cases,
        shape=(args.shape[0], args.shape[1]),
        n_slices=(args.slices[0], args.slices[1]),
        seed=args.seed,
    )
    print(f"wrote {len(cases)} cases under {args.dir}")
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
    print(f"\nopen it with:  xr.open_zarr({str(store)!r}).ctspine")
    return 0 if report.ok else 1


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


def _add_location_options(
    parser: argparse.ArgumentParser, *, raw: bool = False, quiet: bool = False
) -> None:
    """Add ``--storage-options`` (and ``--raw-storage-options``, ``--quiet``) to ``parser``."""
    parser.add_argument("--storage-options", help="fsspec options for STORE, as JSON")
    if raw:
        parser.add_argument("--raw-storage-options", help="fsspec options for RAW, as JSON")
    if quiet:
        parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_ingest(sub: Any) -> None:
    p = sub.add_parser(
        "ingest",
        help="rewrite a raw CTSpine1K tree into a Zarr store",
        description="Rewrite a raw CTSpine1K tree into a Zarr store. Exit codes: 0 every case "
        "stored, 1 some cases refused or failed (the others stored), 2 nothing done (bad "
        "location, another ingest running, bad arguments).",
    )
    p.add_argument("raw", help="folder (or URL) holding rawdata/ and metadata/")
    p.add_argument("store", help="path or fsspec URL of the store")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="cases at a time, and threads of their shared encoder (default: CPUs)",
    )
    p.add_argument(
        "--scheduler",
        default="threads",
        help="threads (default), processes or sync for a local dask scheduler; a scheduler "
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
        "--codec",
        default="default",
        choices=IMAGE_CODEC_CHOICES,
        help="image codec: default (Blosc zstd, any Zarr reader, fastest) or compact "
        "(lossless JPEG-LS, about 2/3 of the bytes, ~5x slower to decode, readers need "
        "ctspine-zarr[compact]); see docs/codecs.md",
    )
    _add_location_options(p, raw=True, quiet=True)
    p.set_defaults(func=_cmd_ingest)


def _add_info(sub: Any) -> None:
    p = sub.add_parser("info", help="print the catalogue summary of a store")
    p.add_argument("store")
    _add_location_options(p)
    p.set_defaults(func=_cmd_info)


def _add_export(sub: Any) -> None:
    p = sub.add_parser("export", help="write a case back to NIfTI with its original header")
    p.add_argument("store")
    p.add_argument("case")
    _add_output(p, "output .nii or .nii.gz path", old_option=False)
    p.add_argument("--label", action="store_true", help="export the label map, not the image")
    _add_location_options(p)
    p.set_defaults(func=_cmd_export)


def _add_verify(sub: Any) -> None:
    p = sub.add_parser("verify", help="check every chunk, the metadata and the catalogue")
    p.add_argument("store")
    p.add_argument("--against", metavar="RAW", help="also compare every case with its source")
    _add_location_options(p, raw=True, quiet=True)
    p.set_defaults(func=_cmd_verify)


def _add_show(sub: Any) -> None:
    p = sub.add_parser("show", help="write a quick-look PNG of a case: planes, labels, legend")
    p.add_argument("store")
    p.add_argument("case")
    p.add_argument(
        "--z", type=int, metavar="K", help="axial slice (default: middle of the labelled slices)"
    )
    p.add_argument("--plane", choices=("axial", "coronal", "sagittal", "all"), default="all")
    p.add_argument(
        "--window", default="bone", help="bone (W 1800, L 400), soft (W 400, L 40) or W,L in HU"
    )
    p.add_argument(
        "--full-resolution",
        action="store_true",
        help="read the coronal and sagittal cuts from every full-resolution slice, not from "
        "the case's 2x level (written by `ctspine-zarr pyramid`)",
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
        "is missing. Exit codes: 0 every case has its levels, 1 some cases failed (the others "
        "have them), 2 nothing done (not a ctspine store, an unknown case, another writer).",
    )
    p.add_argument("store", help="path or fsspec URL of the store")
    p.add_argument("--case", action="append", dest="cases", help="only this case (repeatable)")
    p.add_argument("--workers", type=int, default=None, help="cases at a time (default: the CPUs)")
    _add_location_options(p, quiet=True)
    p.set_defaults(func=_cmd_pyramid)


def _stats_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``ctspine-zarr stats`` to ``parser``."""
    from .stats import NNUNET_SEED

    parser.add_argument("store", help="path or fsspec URL of the store")
    _add_output(
        parser,
        "folder for vertebrae.parquet, cases.parquet, fingerprint.json, summary.json, "
        "hu_histograms.parquet and the PNG plots (default: print the summary only)",
        old_option=True,
    )
    parser.add_argument(
        "--split",
        action="append",
        choices=SPLITS,
        help="only cases of this split (repeatable; default: every case)",
    )
    parser.add_argument("--case", action="append", dest="cases", help="only this case (repeatable)")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="tasks at a time on this machine: threads, processes or LocalCluster workers "
        "(default: the CPUs)",
    )
    parser.add_argument(
        "--scheduler",
        default="threads",
        help="threads (default), processes, sync, distributed (a new LocalCluster of "
        "--workers processes), or the address of a dask.distributed scheduler "
        "(tcp://host:8786)",
    )
    parser.add_argument(
        "--fingerprint-samples",
        default="nnunet",
        help="nnU-Net sampled fingerprint: 'nnunet' (10e7 // cases per case, the default), "
        "a number per case, or 'none'",
    )
    parser.add_argument("--seed", type=int, default=NNUNET_SEED, help="nnU-Net sampling seed")
    parser.add_argument(
        "--write-to-store",
        action="store_true",
        help="also record the results in the store's root attrs (key 'stats')",
    )
    parser.add_argument("--no-plots", action="store_true", help="write no PNG plots")
    _add_location_options(parser, quiet=True)


def _add_stats(sub: Any) -> None:
    p = sub.add_parser(
        "stats", help="per-vertebra and per-case statistics, split summaries, HU fingerprint"
    )
    _stats_arguments(p)
    p.set_defaults(func=_cmd_stats)


def _add_synth(sub: Any) -> None:
    p = sub.add_parser("synth", help="write a CTSpine1K-like raw tree")
    p.add_argument("dir")
    p.add_argument("--cases", type=int, default=6)
    p.add_argument("--shape", type=int, nargs=2, default=(512, 512), metavar=("Y", "X"))
    p.add_argument("--slices", type=int, nargs=2, default=(40, 120), metavar=("MIN", "MAX"))
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_synth)


def _add_demo(sub: Any) -> None:
    p = sub.add_parser("demo", help="synthesise a raw tree, ingest it and print the catalogue")
    p.add_argument("dir", nargs="?", help="working folder (default: a new temporary one)")
    p.add_argument("--cases", type=int, default=6)
    p.add_argument("--size", type=int, default=256, help="in-plane size of the cases")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_demo)


def _add_serve(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a local store over HTTP (Range requests, CORS) for viewers and readers",
        description="Serve a local store read-only over HTTP, with Range requests and the "
        "CORS headers browser viewers need, until Ctrl-C. The store's root is the server's "
        "root: ctspine_zarr.open('http://HOST:PORT/'), and neuroglancer opens a case's image "
        "as zarr3://http://HOST:PORT/cases/<id>/image/.",
    )
    p.add_argument("store", help="local folder of the store")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000; 0: a free one)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1, this machine only; 0.0.0.0: every "
        "interface)",
    )
    p.add_argument("--log", action="store_true", help="log every request to stderr")
    p.set_defaults(func=_cmd_serve)


#: The commands, in the order ``--help`` lists them: each adds its parser to the subparsers.
_COMMANDS: tuple[Callable[[Any], None], ...] = (
    _add_ingest,
    _add_info,
    _add_export,
    _add_verify,
    _add_show,
    _add_pyramid,
    _add_stats,
    _add_serve,
    _add_synth,
    _add_demo,
)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``ctspine-zarr``."""
    parser = argparse.ArgumentParser(
        prog="ctspine-zarr", description="CTSpine1K as a cloud-ready, slice-chunked Zarr store."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add_command in _COMMANDS:
        add_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ctspine-zarr`` with ``argv`` (default: the command line); return the exit code."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if getattr(args, "out", "") is None and len(extra) == 1 and not extra[0].startswith("-"):
        # an optional last positional (``stats STORE --split train OUT``): argparse takes
        # positionals in groups, so one given after the options comes back unrecognised
        args.out, extra = extra[0], []
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.func(args))
    except (CTSpineError, FileNotFoundError) as err:
        print(f"ctspine-zarr {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
