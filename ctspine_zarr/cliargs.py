"""The argument parsing of ``ctspine-zarr``: one-line usage errors, defaults in the help,
and argument types that refuse a bad value before anything runs.

Every subcommand's parser is a :class:`Parser`: a usage error is one line naming the
argument and the value, plus a hint to ``--help``, and exit code 2 (never the whole usage
text); its help shows every option's default (:class:`HelpFormatter`). The types turn an
argument into its value or refuse it, so that a bad ``--workers`` or ``--storage-options``
stops the command before it reads or writes anything.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any, Literal, NoReturn

__all__ = [
    "SELECTION_OPTIONS",
    "HelpFormatter",
    "Parser",
    "add_selection",
    "count",
    "dataset_id",
    "defect",
    "fingerprint_samples",
    "json_options",
    "port",
    "positive_int",
    "scheduler",
    "seed",
    "selection",
    "workers",
]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show each option's default after its help, unless the help already tells it.

    Flags (on when given) and options without a default (``None``, described in their
    help) show none.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default is None
            or default is argparse.SUPPRESS
            or action.nargs == 0
            or not action.option_strings
        ):
            return text
        shown = " ".join(map(str, default)) if isinstance(default, list | tuple) else default
        return f"{text} (default: {str(shown).replace('%', '%%')})"


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line and a hint, exit code 2.

    Every parser (the subcommands' too) shows the defaults in its help, lists the exit
    codes in its epilog (``problems``: what exit code 1 means, if the command uses it), and
    takes ``--debug``.
    """

    #: The parsers of the subcommands, by name (``build_parser`` fills it).
    commands: dict[str, argparse.ArgumentParser]

    def __init__(self, *args: Any, problems: str = "", **kwargs: Any) -> None:
        from .clierrors import exit_codes

        self.commands = {}
        kwargs.setdefault("formatter_class", HelpFormatter)
        kwargs.setdefault("epilog", exit_codes(problems))
        super().__init__(*args, **kwargs)
        self.add_argument(
            "--debug",
            action="store_true",
            default=argparse.SUPPRESS,  # a subcommand's default must not hide the main one's
            help="show the traceback of an error instead of one line (also: CTSPINE_DEBUG=1)",
        )

    def error(self, message: str) -> NoReturn:
        """Print ``PROG: error: MESSAGE`` and where the help is to stderr, exit 2."""
        self.exit(2, f"{self.prog}: error: {message}\n(see: {self.prog} --help)\n")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        """Exit with ``status`` after printing ``message`` to stderr."""
        if message:
            sys.stderr.write(message)
        raise SystemExit(status)


def _typed(name: str, convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from ``convert``; its ValueError becomes the usage error's text."""

    def parse(text: str) -> Any:
        try:
            return convert(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    parse.__name__ = name  # argparse names the type in its fallback message
    return parse


def _whole(text: str, least: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"must be {what}, but is {text!r}") from None
    if value < least:
        raise ValueError(f"must be {what}, but is {value}")
    return value


def _workers(text: str) -> int:
    return _whole(text, 1, "a whole number of at least 1")


def _positive_int(text: str) -> int:
    return _whole(text, 1, "a whole number of at least 1")


def _tile(text: str) -> int:
    return _whole(text, 0, "0 (whole slices) or a tile size of at least 1")


def _seed(text: str) -> int:
    value = _whole(text, 0, "a whole number from 0 to 2**32 - 1")
    if value >= 2**32:
        raise ValueError(f"must be a whole number from 0 to 2**32 - 1, but is {value}")
    return value


def _port(text: str) -> int:
    value = _whole(text, 0, "a TCP port from 0 to 65535")
    if value > 65535:
        raise ValueError(f"must be a TCP port from 0 to 65535, but is {value}")
    return value


def _dataset_id(text: str) -> int:
    value = _whole(text, 1, "a whole number from 1 to 999")
    if value > 999:
        raise ValueError(f"must be a whole number from 1 to 999, but is {value}")
    return value


def _scheduler(text: str) -> str:
    from .parallel import SCHEDULERS

    if text in SCHEDULERS or "://" in text:
        return text
    raise ValueError(
        f"must be one of {', '.join(SCHEDULERS)} or a scheduler address "
        f"(tcp://host:8786), but is {text!r}"
    )


def _count(text: str) -> int:
    return _whole(text, 0, "a whole number of at least 0")


def _defect(text: str) -> str:
    from .testing.synthetic.defects import parse_defects

    parse_defects([text])
    return text


def _json_options(text: str) -> dict[str, Any]:
    try:
        options = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"must be a JSON object ({err}), but is {text!r}") from None
    if not isinstance(options, dict):
        raise ValueError(f"must be a JSON object ({{...}}), but is {text!r}")
    return options


def _fingerprint_samples(text: str) -> int | Literal["nnunet"] | None:
    if text.lower() == "nnunet":
        return "nnunet"
    if text.lower() in ("none", "off", "0"):
        return None
    return _whole(text, 0, "'nnunet', a number of voxels per case or 'none'")


#: ``--workers N``: at least 1.
workers = _typed("workers", _workers)
#: A whole number of at least 1 (cases, sizes).
positive_int = _typed("positive whole number", _positive_int)
#: A whole number of at least 0 (a threshold).
count = _typed("whole number", _count)
#: ``synth --defects``: ``KIND[:CASE]`` or ``all``.
defect = _typed("defect", _defect)
#: A random seed: 0 to 2**32 - 1 (numpy's RandomState takes no other).
seed = _typed("seed", _seed)
#: ``ingest --tile``: 0 or a positive tile size
tile = _typed("tile", _tile)
#: A TCP port, 0 to 65535 (0: a free one).
port = _typed("port", _port)
#: ``--dataset-id``: nnU-Net's dataset id, 1 to 999.
dataset_id = _typed("dataset id", _dataset_id)
#: ``--scheduler``: a local scheduler's name, ``distributed`` or an address.
scheduler = _typed("scheduler", _scheduler)
#: ``--storage-options``: a JSON object.
json_options = _typed("JSON object", _json_options)
#: ``--fingerprint-samples``: ``nnunet``, a number, or ``none``.
fingerprint_samples = _typed("fingerprint samples", _fingerprint_samples)


def storage_options(options: str | dict[str, Any] | None) -> dict[str, Any] | None:
    """The options of ``--storage-options`` (parsed and checked by argparse already)."""
    if not options:
        return None
    return options if isinstance(options, dict) else json_options(options)


def add_output(parser: argparse.ArgumentParser, description: str, *, old_option: bool) -> None:
    """The output path: the last positional argument of every command that writes files.

    With ``old_option``, ``--out PATH`` (the form ``show`` and ``stats`` took before) is still
    accepted, hidden from the help, so the positional argument is optional to argparse.
    """
    if old_option:
        parser.add_argument("out", nargs="?", help=description)
        parser.add_argument("--out", dest="out_option", help=argparse.SUPPRESS)
    else:
        parser.add_argument("out", help=description)


def output(args: argparse.Namespace) -> str | None:
    """The output path of ``args``, from the positional argument or the old ``--out``."""
    given = {path for path in (args.out, getattr(args, "out_option", None)) if path}
    if len(given) > 1:
        raise ValueError(f"two output paths: {sorted(given)}")
    return given.pop() if given else None


def add_location_options(
    parser: argparse.ArgumentParser, *, raw: bool = False, quiet: bool = False
) -> None:
    """Add ``--storage-options`` (and ``--raw-storage-options``, ``--quiet``) to ``parser``."""
    parser.add_argument(
        "--storage-options",
        type=json_options,
        metavar="JSON",
        help="fsspec options for a STORE URL, as a JSON object (credentials, endpoint_url, "
        "connect_timeout, read_timeout, max_attempts; default: none, the environment's "
        "credentials)",
    )
    if raw:
        parser.add_argument(
            "--raw-storage-options",
            type=json_options,
            metavar="JSON",
            help="fsspec options for a RAW URL, as a JSON object (default: none)",
        )
    if quiet:
        parser.add_argument("--quiet", action="store_true", help="no progress bar on stderr")


def _names(text: str) -> list[str]:
    """``a,b`` as ``["a", "b"]``: an option's comma list (blanks dropped)."""
    return [name.strip() for name in text.split(",") if name.strip()]


#: The options that select cases, as :func:`add_selection` adds them (``dest``: flag).
SELECTION_OPTIONS = {"split": "--split", "source": "--source", "vertebra": "--vertebra"}


def add_selection(parser: argparse.ArgumentParser, *, vertebra: bool = True) -> None:
    """Add ``--split``, ``--source`` (and ``--vertebra``): repeatable, or comma lists.

    Every command that selects cases takes them the same way, and hands them to the one
    selection of the library (:mod:`ctspine_zarr.selection`), which refuses an unknown value
    naming the valid ones: a one-line error, exit code 2.
    """
    from .schema import SOURCES, SPLITS

    parser.add_argument(
        "--split",
        action="extend",
        type=_names,
        metavar="SPLIT",
        help=f"only the cases of this split: {', '.join(SPLITS)} (repeat it, or give a comma "
        "list, for several; default: every case)",
    )
    parser.add_argument(
        "--source",
        action="extend",
        type=_names,
        metavar="SOURCE",
        help=f"only the cases of this source, e.g. {', '.join(SOURCES[:2])} (repeatable, or a "
        "comma list; default: every case)",
    )
    if vertebra:
        parser.add_argument(
            "--vertebra",
            action="extend",
            type=_names,
            metavar="V",
            help="only the cases holding this vertebra, a name (L3) or VerSe label (22) "
            "(repeatable, or a comma list: any of them; default: every case)",
        )


def selection(args: argparse.Namespace) -> dict[str, list[str] | None]:
    """The selection a command line gives: ``split``, ``source``, ``vertebra`` keywords."""
    return {name: getattr(args, name, None) for name in SELECTION_OPTIONS}


def add_workers(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument("--workers", type=workers, metavar="N", help=text)


def stats_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``ctspine-zarr stats`` to ``parser``."""
    from .stats import NNUNET_SEED

    parser.add_argument("store", help="path or fsspec URL of the store")
    add_output(
        parser,
        "folder for vertebrae.parquet, cases.parquet, fingerprint.json, summary.json, "
        "hu_histograms.parquet and the PNG plots (default: print the summary only)",
        old_option=True,
    )
    add_selection(parser)
    parser.add_argument(
        "--case",
        action="append",
        dest="cases",
        metavar="ID",
        help="only this case (repeatable; default: every case)",
    )
    add_workers(
        parser,
        "tasks at a time on this machine: threads, processes or LocalCluster workers "
        "(default: the CPUs)",
    )
    parser.add_argument(
        "--scheduler",
        default="threads",
        type=scheduler,
        help="threads, processes, sync, distributed (a new LocalCluster of "
        "--workers processes), or the address of a dask.distributed scheduler "
        "(tcp://host:8786)",
    )
    parser.add_argument(
        "--fingerprint-samples",
        default="nnunet",
        type=fingerprint_samples,
        metavar="N",
        help="nnU-Net sampled fingerprint: 'nnunet' (10e7 // cases per case), "
        "a number per case, or 'none'",
    )
    parser.add_argument("--seed", type=seed, default=NNUNET_SEED, help="nnU-Net sampling seed")
    parser.add_argument(
        "--write-to-store",
        action="store_true",
        help="also record the results in the store's root attrs (key 'stats')",
    )
    parser.add_argument("--no-plots", action="store_true", help="write no PNG plots")
    add_location_options(parser, quiet=True)
