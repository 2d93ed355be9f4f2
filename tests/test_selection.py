"""One way to select cases (issue #17, item 2): the accessor, the loaders, the statistics, the
export and the commands take the same split, source and vertebra filters, with the same
defaults (every case), lists everywhere, and the same error for an unknown value.

The command-line tests run ``ctspine-zarr`` in a child process, as a user would.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
from clirun import cli, cli_each, error_lines

import ctspine_zarr
from ctspine_zarr.errors import CaseNotFoundError, SelectionError
from ctspine_zarr.info import case_table
from ctspine_zarr.io.export import export_cases, to_nifti
from ctspine_zarr.sampling import PatchSequence, SliceSequence, VolumeSequence
from ctspine_zarr.schema import SOURCES, SPLITS
from ctspine_zarr.selection import case_positions, select, selected_ids
from ctspine_zarr.stats import build_graph, compute_stats
from ctspine_zarr.testing.synthetic import make_raw_tree
from ctspine_zarr.vertebrae import VERTEBRA_NAMES

L3 = 22

UNKNOWN_SPLIT = "unknown split 'nope'; the splits are train, validation, test, unassigned"
UNKNOWN_SOURCE = "unknown source 'NOPE'; the sources are COLONOG, HNSCC-3DCT-RT, MSD-T10, COVID-19"


@pytest.fixture(scope="module")
def spine_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store whose L3 cases lie in several splits (taller cases than the session store's)."""
    root = tmp_path_factory.mktemp("selection")
    make_raw_tree(root / "raw", n_cases=8, shape=(16, 16), n_slices=(60, 120), seed=5)
    report = ctspine_zarr.ingest(root / "raw", root / "store.zarr", workers=2)
    assert report.ok, report.summary()
    return root / "store.zarr"


def _rows(store: Path) -> dict[str, tuple[str, str, set[int], int]]:
    """Per case, from the catalogue's own columns: split, source, labels held, slices."""
    ds = xr.open_zarr(store)
    labels = [int(v) for v in ds.vertebra.values]
    return {
        str(c): (str(split), str(source), {labels[i] for i in np.flatnonzero(has)}, int(n))
        for c, split, source, has, n in zip(
            ds.case.values,
            ds.split.values,
            ds.source.values,
            ds.has_vertebra.values,
            ds.n_slices.values,
            strict=True,
        )
    }


def _expected(
    store: Path,
    split: tuple[str, ...] | None = None,
    source: tuple[str, ...] | None = None,
    labels: tuple[int, ...] | None = None,
) -> list[str]:
    return [
        case
        for case, (s, src, held, _) in _rows(store).items()
        if (split is None or s in split)
        and (source is None or src in source)
        and (labels is None or held & set(labels))
    ]


# --------------------------------------------------------------------------------------------
# Defaults: every case, everywhere
# --------------------------------------------------------------------------------------------


def test_every_reader_selects_every_case_by_default(store: Path) -> None:
    every = list(_rows(store))
    ds = ctspine_zarr.open(store)
    assert ds.ctspine.case_ids() == every
    assert ds.ctspine.select().case.values.tolist() == every
    assert list(SliceSequence(store).case_ids) == every  # was split="train"
    assert list(VolumeSequence(store).case_ids) == every
    patches = PatchSequence(store, patch_size=(4, 8, 8), samples_per_epoch=2, seed=0)
    assert list(patches.case_ids) == every
    assert [meta.case for meta in build_graph(store, fingerprint_samples=None).metas] == every
    assert case_table(ds)["case"].tolist() == every
    assert len(SliceSequence(store)) == sum(n for *_, n in _rows(store).values())


def test_slice_sequence_of_l3_holds_the_l3_cases_of_every_split(spine_store: Path) -> None:
    """The issue's row: SliceDataset(store, vertebra="L3") gave 0 items, silently."""
    rows = _rows(spine_store)
    holding = [case for case, (_, _, held, _) in rows.items() if L3 in held]
    assert len({rows[c][0] for c in holding}) > 1, "the fixture's L3 cases must span splits"
    seq = SliceSequence(spine_store, vertebra="L3")
    assert list(seq.case_ids) == holding
    assert len(seq) == sum(rows[c][3] for c in holding)
    fg = SliceSequence(spine_store, vertebra="L3", foreground_only=True)
    assert len(fg) and all((item["segmentation"] == L3).any() for item in fg[:])


def test_torch_slice_dataset_selects_as_the_sequences(spine_store: Path) -> None:
    pytest.importorskip("torch", reason="torch is not installed")
    from ctspine_zarr.torch import SliceDataset

    rows = _rows(spine_store)
    assert list(SliceDataset(spine_store, vertebra="L3").case_ids) == [
        case for case, (_, _, held, _) in rows.items() if L3 in held
    ]
    assert list(SliceDataset(spine_store).case_ids) == list(rows)
    with pytest.raises(SelectionError, match=UNKNOWN_SPLIT):
        SliceDataset(spine_store, split="nope")


# --------------------------------------------------------------------------------------------
# An unknown split or source raises everywhere, naming the valid ones
# --------------------------------------------------------------------------------------------


def _everywhere(store: Path, tmp_path: Path) -> dict[str, Callable[..., Any]]:
    ds = ctspine_zarr.open(store)
    return {
        "case_ids": ds.ctspine.case_ids,
        "select": ds.ctspine.select,
        "xr.open_zarr select": xr.open_zarr(store).ctspine.select,
        "SliceSequence": lambda **kw: SliceSequence(store, **kw),
        "VolumeSequence": lambda **kw: VolumeSequence(store, **kw),
        "PatchSequence": lambda **kw: PatchSequence(store, patch_size=(4, 8, 8), **kw),
        "compute_stats": lambda **kw: compute_stats(store, fingerprint_samples=None, **kw),
        "ds.ctspine.stats": lambda **kw: ds.ctspine.stats(fingerprint_samples=None, **kw),
        "export_cases": lambda **kw: export_cases(store, tmp_path / "exported", **kw),
        "case_table": lambda **kw: case_table(ds, **kw),
    }


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"split": "nope"}, UNKNOWN_SPLIT),
        ({"split": ["train", "nope"]}, UNKNOWN_SPLIT),
        ({"source": "NOPE"}, UNKNOWN_SOURCE),
        ({"source": ("COLONOG", "NOPE"), "split": "train"}, UNKNOWN_SOURCE),
        ({"vertebra": ["L3", "L9"]}, "unknown vertebra 'L9'; the vertebrae are C1, C2,"),
    ],
)
def test_an_unknown_value_raises_everywhere_naming_the_valid_ones(
    store: Path, tmp_path: Path, given: dict[str, Any], message: str
) -> None:
    for name, call in _everywhere(store, tmp_path).items():
        with pytest.raises(SelectionError) as raised:
            call(**given)
        assert isinstance(raised.value, ValueError), name
        assert str(raised.value).startswith(message), (name, str(raised.value))
    assert not (tmp_path / "exported").exists()  # refused before anything was written


def test_the_message_names_what_the_store_holds_and_the_closest_name(store: Path) -> None:
    ds = ctspine_zarr.open(store)
    source = str(ds.source.values[0])
    one = ds.ctspine.select(source=source)
    with pytest.raises(SelectionError) as raised:
        one.ctspine.case_ids(source="NOPE")
    assert str(raised.value) == f"{UNKNOWN_SOURCE} (the store holds {source})"
    held = [s for s in SPLITS if s in set(one.split.values.tolist())]
    with pytest.raises(SelectionError) as raised:
        one.ctspine.case_ids(split="trian")
    shown = "" if held == list(SPLITS) else f" (the store holds {', '.join(held)})"
    assert str(raised.value) == (
        f"unknown split 'trian'; the splits are {', '.join(SPLITS)}{shown}; did you mean 'train'?"
    )
    with pytest.raises(SelectionError, match="did you mean 'COLONOG'"):
        ds.ctspine.case_ids(source="colonog")


def test_a_known_name_without_cases_selects_nothing_quietly(store: Path) -> None:
    ds = ctspine_zarr.open(store)
    source = str(ds.source.values[0])
    alone = ds.ctspine.select(source=source)
    missing = next(s for s in SOURCES if s != source)
    assert alone.ctspine.case_ids(source=missing) == []  # a CTSpine1K source: valid, no case
    assert alone.ctspine.select(source=missing).sizes["case"] == 0


# --------------------------------------------------------------------------------------------
# Lists everywhere
# --------------------------------------------------------------------------------------------


def test_lists_are_accepted_everywhere_and_any_of_them_matches(
    spine_store: Path, tmp_path: Path
) -> None:
    rows = _rows(spine_store)
    sources = sorted({src for _, src, _, _ in rows.values()})[:2]
    labels = (L3, 1)
    for given, expected in (
        ({"split": ["train", "test"]}, _expected(spine_store, split=("train", "test"))),
        ({"split": ("validation",)}, _expected(spine_store, split=("validation",))),
        ({"source": sources}, _expected(spine_store, source=tuple(sources))),
        ({"vertebra": ["L3", 1]}, _expected(spine_store, labels=labels)),
        ({"vertebra": np.array([22, 1])}, _expected(spine_store, labels=labels)),
        (
            {"split": ["train", "unassigned"], "source": sources, "vertebra": ["l3", "C1"]},
            _expected(spine_store, ("train", "unassigned"), tuple(sources), labels),
        ),
    ):
        ds = ctspine_zarr.open(spine_store)
        assert ds.ctspine.case_ids(**given) == expected, given
        assert ds.ctspine.select(**given).case.values.tolist() == expected, given
        assert list(SliceSequence(spine_store, **given).case_ids) == expected, given
        assert list(VolumeSequence(spine_store, **given).case_ids) == expected, given
        graph = build_graph(spine_store, fingerprint_samples=None, **given)
        assert [meta.case for meta in graph.metas] == expected, given
        assert case_table(ds, **given)["case"].tolist() == expected, given
    some = _expected(spine_store, split=("train", "test"))
    written = export_cases(spine_store, tmp_path / "out", split=["train", "test"])
    assert [p.name for p in written] == [f"{case}.nii.gz" for case in some]


def test_patches_and_foreground_slices_take_any_of_several_vertebrae(spine_store: Path) -> None:
    labels = {L3, 19}  # L3 and T12
    patches = PatchSequence(
        spine_store,
        vertebra=["L3", "T12"],
        patch_size=(3, 8, 8),
        samples_per_epoch=8,
        foreground_fraction=1.0,
        seed=3,
    )
    assert list(patches.case_ids) == _expected(spine_store, labels=tuple(labels))
    for item in patches[:]:
        assert item["vertebra"] in labels and (item["segmentation"] == item["vertebra"]).any()
    slices = SliceSequence(spine_store, vertebra=("L3", "T12"), foreground_only=True)
    assert all(set(np.unique(item["segmentation"])) & labels for item in slices[:])
    assert patches.vertebra == (L3, 19) and patches.label is None
    assert SliceSequence(spine_store, vertebra="L3").vertebra == L3


# --------------------------------------------------------------------------------------------
# ds.ctspine.select: the catalogue Dataset, fewer cases
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("opener", [ctspine_zarr.open, xr.open_zarr])
def test_select_returns_the_catalogue_dataset_subset(spine_store: Path, opener) -> None:
    ds = opener(spine_store)
    sub = ds.ctspine.select(split=["train", "validation"], vertebra="L3")
    expected = _expected(spine_store, split=("train", "validation"), labels=(L3,))
    assert expected and len(expected) < ds.sizes["case"]
    assert isinstance(sub, xr.Dataset)
    positions = [list(_rows(spine_store)).index(c) for c in expected]
    xr.testing.assert_identical(sub, ds.isel(case=positions))
    assert set(sub.data_vars) == set(ds.data_vars) and sub.attrs == ds.attrs
    assert sub.ctspine.case_ids() == expected
    assert sub.ctspine.case_ids(split="train") == [
        c for c in expected if c in _expected(spine_store, split=("train",))
    ]
    vol = sub.ctspine.volume(expected[0])
    np.testing.assert_array_equal(vol.label.values, ds.ctspine.volume(expected[0]).label.values)
    assert sub.sel(vertebra_name="L3").has_vertebra.values.all()
    other = next(c for c in _rows(spine_store) if c not in expected)
    with pytest.raises(CaseNotFoundError):
        sub.ctspine.volume(other)
    assert sub.ctspine.stats(fingerprint_samples=None).cases["case"].tolist() == expected


def test_select_by_ids_keeps_their_order_and_names_an_unknown_one(store: Path) -> None:
    ds = ctspine_zarr.open(store)
    ids = ds.ctspine.case_ids()
    picked = [ids[2], ids[0], ids[2]]
    assert selected_ids(ds, cases=picked) == [ids[2], ids[0]]
    assert case_positions(ds, cases=picked).tolist() == [2, 0]
    assert select(ds, cases=picked).case.values.tolist() == [ids[2], ids[0]]
    with pytest.raises(CaseNotFoundError, match="no case 'nope'"):
        select(ds, cases=["nope"])
    assert ds.ctspine.case_ids(split={"train"}) == ds.ctspine.case_ids(split="train")
    with pytest.raises(TypeError, match="split must be a str or a sequence of str"):
        ds.ctspine.case_ids(split=3)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# The commands: repeated values or comma lists, one-line errors
# --------------------------------------------------------------------------------------------


def test_cases_takes_repeated_values_and_comma_lists_alike(spine_store: Path) -> None:
    rows = _rows(spine_store)
    sources = sorted({src for _, src, _, _ in rows.values()})[:2]
    expected = _expected(spine_store, ("train", "test"), tuple(sources), (L3, 1))
    listed, repeated = cli_each(
        (
            "cases", spine_store, "--split", "train,test", "--source", ",".join(sources),
            "--vertebra", "L3,C1", "--json",
        ),
        (
            "cases", spine_store, "--split", "train", "--split", "test", "--source", sources[0],
            "--source", sources[1], "--vertebra", "L3", "--vertebra", "1", "--json",
        ),
    )  # fmt: skip
    assert listed.returncode == repeated.returncode == 0, listed.stderr + repeated.stderr
    assert listed.stdout == repeated.stdout
    import json

    assert [r["case"] for r in json.loads(listed.stdout)] == expected


@pytest.mark.parametrize(
    ("command", "extra"),
    [
        ("cases", ()),
        ("info", ()),
        ("stats", ("--quiet",)),
        ("export", ("DIR",)),
    ],
)
def test_every_selecting_command_refuses_an_unknown_value_in_one_line(
    store: Path, tmp_path: Path, command: str, extra: tuple[str, ...]
) -> None:
    args = [str(tmp_path / "out") if a == "DIR" else a for a in extra]
    refusals = (
        ("--split", "train,nope", UNKNOWN_SPLIT),
        ("--source", "NOPE", UNKNOWN_SOURCE),
        ("--vertebra", "L9", "unknown vertebra 'L9'; the vertebrae are C1, C2, C3"),
    )
    runs = cli_each(*((command, store, *args, option, value) for option, value, _ in refusals))
    for (_, _, message), done in zip(refusals, runs, strict=True):
        lines = error_lines(done, command)
        assert lines[0].startswith(f"ctspine-zarr {command}: error: {message}"), lines
    assert not (tmp_path / "out").exists()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_export_writes_a_selection_into_a_folder(spine_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "test-cases"
    expected = _expected(spine_store, split=("validation", "test"))
    done, every = cli_each(  # both only read the store
        ("export", spine_store, out, "--split", "validation,test", "--label", "--quiet"),
        ("export", spine_store, tmp_path / "all", "--all", "--quiet"),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"wrote {len(expected)} label maps to {out}"
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{c}_seg.nii.gz" for c in expected)
    one = to_nifti(spine_store, expected[0], tmp_path / "one.nii.gz", label=True)
    assert _digest(out / f"{expected[0]}_seg.nii.gz") == _digest(one)
    assert every.returncode == 0, every.stderr
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == sorted(
        f"{c}.nii.gz" for c in _rows(spine_store)
    )


def test_export_says_which_form_it_takes(store: Path, tmp_path: Path) -> None:
    case = ctspine_zarr.open(store).ctspine.case_ids()[0]
    out = tmp_path / "x.nii.gz"
    split, no_out = cli_each(
        ("export", store, case, out, "--split", "train"), ("export", store, case)
    )
    lines = error_lines(split, "export")
    assert lines == [
        "ctspine-zarr export: error: --split exports the cases into a folder: give STORE and "
        f"FOLDER, not a case and a file ({case} {out})"
    ]
    lines = error_lines(no_out, "export")
    assert lines == [
        "ctspine-zarr export: error: give the file to write (export STORE CASE OUT), or a "
        "folder and the cases to export into it (export STORE FOLDER --split test; --all for "
        "every case)"
    ]
    done = cli("export", store, case, "--label", out)  # options before the last positional
    assert done.returncode == 0 and done.stdout.strip() == f"wrote {out}", done.stderr
    assert not (tmp_path / case).exists()


def test_info_summarises_a_selection(spine_store: Path) -> None:
    done = cli("info", spine_store, "--vertebra", "L3")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"ctspine store {spine_store} (holding {VERTEBRA_NAMES[L3]})"
    assert lines[1] == f"{len(_expected(spine_store, labels=(L3,)))} cases"


def test_the_framework_lists_default_to_every_case_too(store: Path) -> None:
    """MONAI's datalist and TorchIO's subjects_dataset select like every reader: all cases."""
    ids = ctspine_zarr.open(store).ctspine.case_ids()
    monai = pytest.importorskip("ctspine_zarr.monai", exc_type=ImportError)
    assert [d["case"] for d in monai.datalist(store)] == ids
    with pytest.raises(ValueError, match="unknown split 'nope'"):
        monai.datalist(store, split="nope")
    torchio = pytest.importorskip("ctspine_zarr.torchio", exc_type=ImportError)
    assert len(torchio.subjects_dataset(store)) == len(ids)
    assert len(torchio.subjects_dataset(store, split=["train", "test"])) == len(
        ctspine_zarr.open(store).ctspine.case_ids(split=["train", "test"])
    )
