"""A discoverable ctspine-zarr with one progress style (issue #17, 4, 5 and 6).

The case list, the help of every option, the README's examples against the demo store, the
demo's closing snippet, progress on stderr, and plot titles; through the real command in a
child process wherever a user would see it.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from clirun import CHILD_TIMEOUT, cli, cli_each, error_lines

import ctspine_zarr
from ctspine_zarr.cli import build_parser
from ctspine_zarr.info import case_table
from ctspine_zarr.vertebrae import ANATOMICAL_ORDER, VERTEBRA_NAMES

REPO = Path(__file__).resolve().parents[1]


def _catalogue_rows(store: Path) -> dict[str, tuple[str, str, int]]:
    ds = ctspine_zarr.open(store)
    return {
        str(c): (str(s), str(src), int(n))
        for c, s, src, n in zip(
            ds["case"].values,
            ds["split"].values,
            ds["source"].values,
            ds["n_slices"].values,
            strict=True,
        )
    }


def _vertebra_range(store: Path, case: str) -> tuple[str, int]:
    """The range of vertebrae in the case's label voxels (``"C3-L5"``) and how many."""
    label = ctspine_zarr.open(store).ctspine.label(case).values
    present = {int(v) for v in np.unique(label)} & set(ANATOMICAL_ORDER)
    names = [VERTEBRA_NAMES[v] for v in ANATOMICAL_ORDER if v in present]
    if not names:
        return "", 0
    return (names[0] if len(names) == 1 else f"{names[0]}-{names[-1]}"), len(names)


# --------------------------------------------------------------------------------------------
# ctspine-zarr cases
# --------------------------------------------------------------------------------------------


def test_cases_lists_every_case_with_split_source_slices_and_vertebrae(store: Path) -> None:
    done = cli("cases", store, "--json")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    records = json.loads(done.stdout)
    rows = _catalogue_rows(store)
    assert [r["case"] for r in records] == ctspine_zarr.open(store).ctspine.case_ids()
    for record in records:
        split, source, slices = rows[record["case"]]
        assert (record["split"], record["source"], record["slices"]) == (split, source, slices)
        vertebrae, count = _vertebra_range(store, record["case"])
        assert (record["vertebrae"], record["n_vertebrae"]) == (vertebrae, count)
        assert (
            record["slices"] == ctspine_zarr.open(store).ctspine.volume(record["case"]).sizes["z"]
        )


def test_cases_filters_by_split_and_source_as_a_table(store: Path) -> None:
    rows = _catalogue_rows(store)
    train = [c for c, (split, _, _) in rows.items() if split == "train"]
    assert train
    source = rows[train[0]][1]
    table, listed = cli_each(
        ("cases", store, "--split", "train"),
        ("cases", store, "--split", "train", "--split", "test", "--source", source, "--json"),
    )
    assert table.returncode == 0, table.stderr
    header, *lines = table.stdout.strip().splitlines()
    assert header.split() == ["case", "split", "source", "slices", "vertebrae", "n_vertebrae"]
    assert [line.split()[0] for line in lines] == train
    both = [c for c, (s, src, _) in rows.items() if s in ("train", "test") and src == source]
    assert [r["case"] for r in json.loads(listed.stdout)] == both


def test_cases_names_the_known_sources_and_says_when_nothing_matches(store: Path) -> None:
    rows = _catalogue_rows(store)
    sources = sorted({src for _, src, _ in rows.values()})
    held = [s for s in ("COLONOG", "HNSCC-3DCT-RT", "MSD-T10", "COVID-19") if s in sources]
    source = next(
        src for src in sources if all(s != "test" or x != src for s, x, _ in rows.values())
    )
    matches = (((), ""), (("--json",), "[]"))
    bad_source, bad_split, *empty = cli_each(
        ("cases", store, "--source", "NOPE"),
        ("cases", store, "--split", "trian"),
        *(("cases", store, "--split", "test", "--source", source, *extra) for extra, _ in matches),
    )
    lines = error_lines(bad_source, "cases")
    assert lines == [
        "ctspine-zarr cases: error: unknown source 'NOPE'; the sources are COLONOG, "
        "HNSCC-3DCT-RT, MSD-T10, COVID-19"
        + ("" if len(sources) == 4 else f" (the store holds {', '.join(held)})")
    ]
    lines = error_lines(bad_split, "cases")
    assert lines == [
        "ctspine-zarr cases: error: unknown split 'trian'; the splits are train, validation, "
        "test, unassigned; did you mean 'train'?"
    ]
    for (_, printed), done in zip(matches, empty, strict=True):
        assert done.returncode == 0
        assert done.stdout.strip() == printed
        assert done.stderr == f"no case matches (the store holds {len(rows)})\n"


def test_case_table_reads_only_the_catalogue(counting_store) -> None:  # type: ignore[no-untyped-def]
    ds = ctspine_zarr.open(counting_store)
    counting_store.reads.clear()
    table = case_table(ds)
    assert len(table) == ds.sizes["case"]
    keys = {key for key, _, _ in counting_store.reads}
    assert keys and not any(key.startswith("cases/") for key in keys), sorted(keys)


# --------------------------------------------------------------------------------------------
# --help
# --------------------------------------------------------------------------------------------


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {"": parser, **sub.choices}


def _help_block(text: str, action: argparse.Action) -> str:
    """The lines of ``--help`` that describe ``action``, whitespace collapsed."""
    lines = text.splitlines()
    first = next(
        i for i, line in enumerate(lines) if line.lstrip().startswith(action.option_strings[0])
    )
    block = [lines[first]]
    for line in lines[first + 1 :]:
        if not line.startswith(" " * 6) or not line.strip():
            break
        block.append(line)
    return " ".join(" ".join(block).split())


@pytest.mark.parametrize("name", list(_commands()))
def test_every_option_has_help_and_shows_its_default(name: str) -> None:
    parser = _commands()[name]
    text = parser.format_help()
    for action in parser._actions:
        if not action.option_strings or action.help == argparse.SUPPRESS:
            continue
        block = _help_block(text, action)
        words = block.split(maxsplit=2 if action.nargs != 0 else 1)
        assert action.help and len(words) > 1, (name, block)
        if action.nargs != 0 and not isinstance(action, argparse._HelpAction):
            assert "default" in block, (name, block)
    epilog = " ".join(text[text.index("exit status:") :].split())
    assert epilog.startswith("exit status: 0 ")
    assert ("130 interrupted (Ctrl-C)" in epilog) != (name == "serve"), epilog
    assert "2 an error stopped it" in epilog


def test_synth_and_demo_help_show_every_default() -> None:
    helps = (
        (
            "synth",
            [
                "--cases CASES number of cases (default: 6)",
                "(default: 512 512)",
                "(default: 40 120)",
                "--seed SEED random seed of the cases (default: 0)",
            ],
        ),
        (
            "demo",
            [
                "(default: 6)",
                "(default: 256)",
                "(default: 0)",
                "--workers N cases ingested at a time (default: the CPUs)",
            ],
        ),
    )
    runs = cli_each(*((command, "--help") for command, _ in helps))
    for (command, expected), done in zip(helps, runs, strict=True):
        assert done.returncode == 0
        text = " ".join(done.stdout.split())
        for fragment in expected:
            assert fragment in text, (command, fragment)


# --------------------------------------------------------------------------------------------
# README and demo
# --------------------------------------------------------------------------------------------

#: What the ids of the synthetic cases look like (one per source).
_CASE_ID = re.compile(
    r"\b(?:liver_\d+|HN_P\d+|volume-covid19-A-\d+_ct|1\.3\.6\.1\.4\.1\.9328\.50\.4\.\d+)\b"
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """``ctspine-zarr demo DIR`` (the default cases; small in-plane, which keeps the ids)."""
    base = tmp_path_factory.mktemp("demo")
    done = cli("demo", base, "--size", "48", "--quiet")
    assert done.returncode == 0, done.stderr
    return base / "ctspine1k.zarr", done


def test_readme_examples_use_case_ids_of_the_demo_store(
    demo: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    store = demo[0]
    readme = (REPO / "README.md").read_text()
    held = set(ctspine_zarr.open(store).ctspine.case_ids())
    used = set(_CASE_ID.findall(readme))
    assert used and used <= held, used - held
    shown = re.search(
        r"^\$ ctspine-zarr cases ctspine1k.zarr --split train\n(.*?)```", readme, re.S | re.M
    )
    assert shown is not None
    done = cli("cases", store, "--split", "train")
    assert done.stdout == shown.group(1)
    assert "ctspine-zarr show ctspine1k.zarr " in readme and "`show STORE CASE OUT.png`" in readme


def test_the_demo_ends_with_a_snippet_that_runs(
    demo: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    store, done = demo
    last = done.stdout.rstrip().splitlines()[-1]
    prefix = "open it in Python:  "
    assert last.startswith(prefix), last
    ran = subprocess.run(
        last.removeprefix(prefix),
        shell=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=CHILD_TIMEOUT,
        check=False,
    )
    assert ran.returncode == 0 and ran.stderr == "", ran.stderr
    assert ran.stdout.strip() == repr(ctspine_zarr.open(store).ctspine.case_ids())
    assert f"list its cases:  ctspine-zarr cases {store}" in done.stdout


# --------------------------------------------------------------------------------------------
# Progress and plots
# --------------------------------------------------------------------------------------------


def _png_title(path: Path) -> str:
    from PIL import Image

    with Image.open(path) as image:
        return str(image.text["Title"])


def test_stats_progress_is_a_few_lines_on_stderr_and_plots_name_the_split(
    store: Path, tmp_path: Path
) -> None:
    rows = _catalogue_rows(store)
    n = sum(split == "train" for split, _, _ in rows.values())
    out = tmp_path / "stats"
    done = cli(
        "stats", store, out, "--split", "train", "--workers", "1", "--fingerprint-samples", "none"
    )
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stdout and "%|" not in done.stdout
    # stderr is a pipe: the bar's first and last states, not a redraw every 0.1 s
    assert done.stderr.count("\r") <= 3, done.stderr
    assert done.stderr.rstrip().splitlines()[-1].startswith("stats: 100%")
    assert f"| {n}/{n} [" in done.stderr and "case/s]" in done.stderr
    for name, title in (
        ("hu_histogram_by_level.png", "HU histogram per vertebra level"),
        ("volume_by_level.png", "Vertebra volume by level"),
        ("vertebrae_per_case.png", "Vertebrae per case"),
    ):
        assert _png_title(out / name) == f"{title} (split train: {n} cases)"
    done = cli("stats", store, tmp_path / "all", "--quiet", "--fingerprint-samples", "none")
    assert done.returncode == 0 and done.stderr == ""
    assert _png_title(tmp_path / "all" / "vertebrae_per_case.png") == (
        f"Vertebrae per case (all {len(rows)} cases)"
    )


def test_ingest_progress_is_the_same_bar(raw_tree: tuple[Path, list], tmp_path: Path) -> None:
    done = cli("ingest", raw_tree[0], tmp_path / "s.zarr", "--workers", "2")
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stdout and "%|" not in done.stdout
    assert done.stderr.count("\r") <= 3, done.stderr
    assert done.stderr.rstrip().splitlines()[-1].startswith("ingest: 100%")


def test_the_legend_of_vertebrae_per_case_is_beside_the_bars(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from ctspine_zarr.viz import plots

    figures = []
    real_save = plots._save
    monkeypatch.setattr(
        plots, "_save", lambda fig, path, title: figures.append(fig) or real_save(fig, path, title)
    )
    stats = ctspine_zarr.open(store).ctspine.stats(fingerprint_samples=None)
    plots.write_stats_plots(stats, tmp_path)
    fig = figures[2]
    FigureCanvasAgg(fig).draw()
    ax = fig.axes[0]
    legend = ax.get_legend()
    assert legend is not None
    box, frame = legend.get_window_extent(), ax.get_window_extent()
    assert box.x0 >= frame.x1  # right of the axes: over no bar
    assert box.x1 <= fig.bbox.x1 + 0.5  # and inside the picture
