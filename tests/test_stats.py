"""Dataset statistics: every number against plain numpy on the full arrays.

The reference below reads whole arrays and computes each statistic the obvious numpy way;
``compute_stats`` must agree exactly (counts, extents, min/max, percentiles, integer means)
or to float rounding (std: exact there, float64 rounding in numpy).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import ctspine_zarr
from ctspine_zarr import stats as S
from ctspine_zarr.cli import _cmd_stats
from ctspine_zarr.cliargs import stats_arguments
from ctspine_zarr.io.store import case_group, open_root
from ctspine_zarr.stats.cases import _RANK, _CaseMeta, finalize_case
from ctspine_zarr.stats.kernels import _DRAW_CHUNK
from ctspine_zarr.testing.synthetic import make_raw_tree
from ctspine_zarr.vertebrae import ANATOMICAL_ORDER, VERTEBRA_NAMES
from ctspine_zarr.viz.plots import vertebra_colours, write_stats_plots

ORDER = ANATOMICAL_ORDER
SAMPLES = 3000  # nnU-Net samples per case in most tests (small: the reference draws them too)


# --------------------------------------------------------------------------------------------
# The numpy reference
# --------------------------------------------------------------------------------------------


def _arrays(store: Any, case: str) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    group = case_group(store, case)
    return np.asarray(group["image"][:]), np.asarray(group["label"][:]), dict(group.attrs)


def reference_vertebrae(image: np.ndarray, label: np.ndarray, affine, spacing) -> list[dict]:
    rows = []
    values_present = [int(v) for v in np.unique(label) if v > 0]
    for value in sorted(values_present, key=lambda v: (_RANK.get(v, 1000 + v), v)):
        mask = label == value
        vals = image[mask]
        vals = vals[np.isfinite(vals)]
        z, y, x = np.nonzero(mask)
        mean_xyz = np.array([np.mean(x), np.mean(y), np.mean(z)])
        world = np.asarray(affine)[:3, :3] @ mean_xyz + np.asarray(affine)[:3, 3]
        rows.append(
            {
                "label": value,
                "voxels": int(mask.sum()),
                "volume_ml": int(mask.sum()) * spacing[0] * spacing[1] * spacing[2] / 1000.0,
                "hu_voxels": int(vals.size),
                "hu_mean": float(np.mean(vals)),
                "hu_std": float(np.std(vals)),
                "hu_min": float(np.min(vals)),
                "hu_max": float(np.max(vals)),
                "hu_p005": float(np.percentile(vals, 0.5)),
                "hu_p50": float(np.percentile(vals, 50.0)),
                "hu_p995": float(np.percentile(vals, 99.5)),
                "z_start": int(z.min()),
                "z_stop": int(z.max()) + 1,
                "z_extent_slices": int(z.max()) + 1 - int(z.min()),
                "z_extent_mm": (int(z.max()) + 1 - int(z.min())) * spacing[0],
                "centroid_x_mm": world[0],
                "centroid_y_mm": world[1],
                "centroid_z_mm": world[2],
            }
        )
    return rows


def check_vertebrae(got: pd.DataFrame, ref: list[dict], *, integer: bool = True) -> None:
    assert list(got["label"]) == [r["label"] for r in ref]
    for (_, row), r in zip(got.iterrows(), ref, strict=True):
        for key in ("voxels", "hu_voxels", "z_start", "z_stop", "z_extent_slices"):
            assert row[key] == r[key], key
        for key in ("hu_min", "hu_max", "hu_p005", "hu_p50", "hu_p995", "volume_ml"):
            assert row[key] == r[key], (key, row[key], r[key])
        assert row["z_extent_mm"] == pytest.approx(r["z_extent_mm"], rel=1e-15)
        if integer:
            assert row["hu_mean"] == r["hu_mean"]
        else:
            assert row["hu_mean"] == pytest.approx(r["hu_mean"], rel=1e-6)
        assert row["hu_std"] == pytest.approx(r["hu_std"], rel=1e-12 if integer else 1e-6)
        for key in ("centroid_x_mm", "centroid_y_mm", "centroid_z_mm"):
            assert row[key] == pytest.approx(r[key], rel=1e-12, abs=1e-9), key


def numpy_summary(values: np.ndarray) -> dict[str, float]:
    return {
        "mean": float(np.mean(values)),
        "median": float(np.percentile(values, 50.0)),
        "std": float(np.std(values)),
        "min": float(np.min(values)),
        "max": float(np.max(values)),
        "percentile_99_5": float(np.percentile(values, 99.5)),
        "percentile_00_5": float(np.percentile(values, 0.5)),
        "n_voxels": int(values.size),
    }


def check_summary(got: dict[str, Any], ref: dict[str, float]) -> None:
    for key, value in ref.items():
        if key == "std":
            assert got[key] == pytest.approx(value, rel=1e-12), key
        elif key == "mean":
            assert got[key] == pytest.approx(value, rel=1e-15), key
        else:
            assert got[key] == value, key


def nnunet_sample(fg: np.ndarray, n: int, seed: int = S.NNUNET_SEED) -> np.ndarray:
    """nnU-Net v2's ``collect_foreground_intensities`` draw for one case."""
    rs = np.random.RandomState(seed)
    return rs.choice(fg, n, replace=True) if fg.size else np.empty(0, fg.dtype)


@pytest.fixture(scope="module")
def full(store: Path) -> dict[str, tuple[np.ndarray, np.ndarray, dict[str, Any], str]]:
    ds = ctspine_zarr.open(store)
    out = {}
    for case, split in zip(ds.case.values, ds.split.values, strict=True):
        image, label, attrs = _arrays(store, str(case))
        out[str(case)] = (image, label, attrs, str(split))
    return out


@pytest.fixture(scope="module")
def threaded(store: Path) -> S.DatasetStats:
    return S.compute_stats(store, progress=False, fingerprint_samples=SAMPLES)


# --------------------------------------------------------------------------------------------
# Histograms
# --------------------------------------------------------------------------------------------

_q = st.floats(min_value=0.0, max_value=100.0, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(
    hnp.arrays(
        dtype=np.int16,
        shape=st.integers(1, 300),
        elements=st.integers(-3000, 3000) | st.integers(0, 5),
    ),
    st.sampled_from([np.int16, np.uint8, np.int32]),
    st.lists(_q, min_size=1, max_size=5),
)
def test_integer_histogram_percentiles_equal_numpy(
    values: np.ndarray, dtype: type, qs: list[float]
) -> None:
    values = (np.abs(values) % 256 if dtype is np.uint8 else values).astype(dtype)
    h = S.Histogram.from_values(values)
    for q in [*qs, 0.0, 0.5, 50.0, 99.5, 100.0]:
        assert h.percentile(q) == np.percentile(values, q)
    assert h.mean() == np.mean(values)
    assert h.std() == pytest.approx(float(np.std(values)), rel=1e-12, abs=1e-12)
    assert (h.min(), h.max(), h.total) == (values.min(), values.max(), values.size)


@settings(max_examples=200, deadline=None)
@given(
    hnp.arrays(
        dtype=st.sampled_from([np.float32, np.float64]),
        shape=st.integers(1, 200),
        elements=st.floats(-1e4, 1e4, width=32) | st.sampled_from([0.5, -0.25, 3.0]),
    ),
    st.lists(_q, min_size=1, max_size=5),
)
def test_float_histogram_percentiles_equal_numpy(values: np.ndarray, qs: list[float]) -> None:
    h = S.Histogram.from_values(values)
    for q in [*qs, 0.5, 50.0, 99.5]:
        assert h.percentile(q) == float(np.percentile(values, q))
    assert (h.min(), h.max()) == (float(values.min()), float(values.max()))


def test_percentiles_on_many_random_seeds() -> None:
    for seed in range(200):
        rng = np.random.default_rng(seed)
        values = rng.integers(-1024, 3072, size=int(rng.integers(1, 5000))).astype(np.int16)
        h = S.Histogram.from_values(values)
        qs = rng.uniform(0, 100, 4)
        for q in (*qs, 0.5, 99.5):
            assert h.percentile(float(q)) == np.percentile(values, float(q))


def test_histograms_merge_exactly() -> None:
    rng = np.random.default_rng(1)
    parts = [rng.integers(-1024, 2000, size=n).astype(np.int16) for n in (1, 50, 700, 0, 3)]
    merged = S.merge_histograms(S.Histogram.from_values(p) for p in parts)
    whole = S.Histogram.from_values(np.concatenate(parts))
    np.testing.assert_array_equal(merged.values, whole.values)
    np.testing.assert_array_equal(merged.counts, whole.counts)
    floats = [rng.normal(size=n).astype(np.float32) for n in (5, 40)]
    fm = S.merge_histograms([S.Histogram.from_values(f) for f in floats])
    assert fm.percentile(50.0) == float(np.percentile(np.concatenate(floats), 50.0))
    assert S.merge_histograms([]).total == 0
    assert math.isnan(S.Histogram.empty().percentile(50.0))


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
@pytest.mark.parametrize(
    ("size", "n_overall", "n_split"),
    [
        (5000, 7000, _DRAW_CHUNK + 1000),  # many draws a voxel, more than one chunk of them
        (1 << 16, 1 << 16, 1 << 17),  # a power of two: no rejected draw
        ((1 << 16) + 1, 300, 2000),  # few draws: codes looked up per draw
        (4097, 9000, 5000),  # the split draws fewer than the overall group
        (_DRAW_CHUNK + 1, 2_000_000, 2_000_000),  # many voxels: looked up, not counted
    ],
)
def test_nnunet_samples_equal_random_state_choice(
    dtype: type, size: int, n_overall: int, n_split: int
) -> None:
    rng = np.random.default_rng(5)
    fg = rng.integers(-200, 1500, size).astype(dtype)
    if dtype is np.float32:
        fg = fg + np.float32(0.5)
        fg[[3, 77]] = np.nan
    first, both = S.nnunet_samples(fg, n_overall, n_split, seed=1234)
    drawn = nnunet_sample(fg, max(n_overall, n_split))
    for hist, sample in ((first, drawn[:n_overall]), (both, drawn)):
        sample = sample[np.isfinite(sample)]
        ref = S.Histogram.from_values(sample)
        np.testing.assert_array_equal(hist.values, ref.values)
        np.testing.assert_array_equal(hist.counts, ref.counts)
    empty = S.nnunet_samples(fg[:0], 10, 10)
    assert empty[0].total == empty[1].total == 0


def test_histogram_skips_nonfinite_values() -> None:
    values = np.array([1.5, np.nan, -np.inf, 2.5, np.inf, 1.5], dtype=np.float32)
    h = S.Histogram.from_values(values)
    assert h.total == 3 and h.percentile(50.0) == 1.5


# --------------------------------------------------------------------------------------------
# The tables against numpy
# --------------------------------------------------------------------------------------------


def test_vertebra_table_equals_numpy(threaded: S.DatasetStats, full) -> None:
    vt = threaded.vertebrae
    assert set(vt["case"]) == set(full)
    for case, (image, label, attrs, split) in full.items():
        ref = reference_vertebrae(image, label, attrs["affine"], attrs["spacing_zyx"])
        got = vt[vt["case"] == case]
        assert (got["split"] == split).all()
        assert list(got["name"]) == [VERTEBRA_NAMES[r["label"]] for r in ref]
        check_vertebrae(got, ref)


def test_case_table_equals_numpy(threaded: S.DatasetStats, full) -> None:
    ct = threaded.cases.set_index("case")
    assert list(ct.index) == sorted(full)
    for case, (image, label, attrs, split) in full.items():
        row = ct.loc[case]
        assert row["split"] == split
        assert (row["slices"], row["n_y"], row["n_x"]) == image.shape
        assert (row["spacing_z"], row["spacing_y"], row["spacing_x"]) == tuple(attrs["spacing_zyx"])
        assert row["hu_min"] == image.min() and row["hu_max"] == image.max()
        assert row["hu_mean"] == np.mean(image)
        assert row["hu_std"] == pytest.approx(float(np.std(image)), rel=1e-12)
        assert row["foreground_voxels"] == np.count_nonzero(label > 0)
        assert row["foreground_fraction"] == np.count_nonzero(label > 0) / label.size
        present = [v for v in ORDER if (label == v).any()]
        assert list(row["vertebrae"]) == present
        assert row["n_vertebrae"] == len(present)
        assert row["first_vertebra"] == VERTEBRA_NAMES[present[0]]
        assert row["last_vertebra"] == VERTEBRA_NAMES[present[-1]]
        assert row["has_l6"] == bool((label == 25).any())
        assert row["has_t13"] == bool((label == 28).any())
        assert row["nonfinite_voxels"] == 0
        assert tuple(int(row[c]) for c in S.BOX_COLUMNS) == _numpy_box(image)


def _numpy_box(image: np.ndarray) -> tuple[int, ...] | None:
    """The half-open box of the nonzero voxels, the way nnU-Net's crop finds it."""
    where = np.argwhere(image != 0)
    if not where.size:
        return None
    return (*where.min(axis=0).tolist(), *(where.max(axis=0) + 1).tolist())


@settings(max_examples=60, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 6), st.integers(1, 6), st.integers(1, 6)),
    pad=st.tuples(*[st.integers(0, 2)] * 6),
    z_offset=st.integers(0, 40),
    seed=st.integers(0, 2**16),
)
def test_nonzero_box_equals_numpy(shape, pad, z_offset, seed) -> None:  # type: ignore[no-untyped-def]
    """Zero borders of any width on any side, a sparse inside; blocks merge into the box."""
    rng = np.random.default_rng(seed)
    inner = rng.integers(-2, 3, size=shape).astype(np.int16)
    image = np.pad(inner, [(pad[0], pad[1]), (pad[2], pad[3]), (pad[4], pad[5])])
    expected = _numpy_box(image)
    box = S.nonzero_box(image, z_offset)
    if expected is None:
        assert box is None
    else:
        assert box == (
            expected[0] + z_offset,
            *expected[1:3],
            expected[3] + z_offset,
            *expected[4:],
        )
    halves = (
        [S.nonzero_box(image[:k], 0), S.nonzero_box(image[k:], k)] if (k := len(image) // 2) else []
    )
    if halves:
        assert S.merge_boxes(halves) == S.nonzero_box(image, 0)


def test_case_table_holds_the_nonzero_box(tmp_path: Path) -> None:
    """A case whose image has zero borders: the box of the case table is numpy's."""
    image = np.full((12, 10, 9), -1000, dtype=np.int16)
    image[:, :2] = 0
    image[:, :, -3:] = 0
    image[:4] = 0
    label = np.zeros(image.shape, dtype=np.uint8)
    label[6:9, 4:6, 3:5] = 22
    raw = tmp_path / "raw"
    from ctspine_zarr.testing.synthetic import write_case

    write_case(
        raw, "liver_1", "MSD-T10", image_zyx=image, label_zyx=label, spacing_zyx=(2.0, 1.0, 1.0)
    )
    ctspine_zarr.ingest(raw, tmp_path / "s.zarr", progress=False, workers=1)
    row = ctspine_zarr.open(tmp_path / "s.zarr").ctspine.stats(slices_per_task=5).cases.iloc[0]
    got = tuple(int(row[c]) for c in S.BOX_COLUMNS)
    assert got == _numpy_box(image) == (4, 2, 0, 12, 10, 6)


def test_catalogue_agrees_with_tables(threaded: S.DatasetStats, store: Path) -> None:
    ds = ctspine_zarr.open(store)
    ct = threaded.cases.set_index("case")
    for case in ds.case.values:
        sel = ds.sel(case=case)
        assert ct.loc[str(case), "n_vertebrae"] == int(sel.n_vertebrae)
        counts = {
            int(v): int(c) for v, c in zip(sel.vertebra.values, sel.voxel_count.values, strict=True)
        }
        got = threaded.vertebrae[threaded.vertebrae["case"] == str(case)]
        for label, voxels in zip(got["label"], got["voxels"], strict=True):
            assert counts[int(label)] == voxels


def test_fingerprint_exact_and_sampled_equal_numpy(threaded: S.DatasetStats, full) -> None:
    fp = threaded.fingerprint
    groups: dict[str, list[str]] = {"all": sorted(full)}
    for case, (*_, split) in full.items():
        groups.setdefault(split, []).append(case)
    assert set(fp["splits"]) == set(groups) - {"all"}
    for name, members in groups.items():
        entry = fp["all"] if name == "all" else fp["splits"][name]
        fg = [full[c][0][full[c][1] > 0] for c in sorted(members)]
        check_summary(entry["exact"], numpy_summary(np.concatenate(fg)))
        sample = np.concatenate([nnunet_sample(f, SAMPLES) for f in fg])
        check_summary(entry["nnunet"], numpy_summary(sample))
        assert entry["nnunet"]["samples_per_case"] == SAMPLES
        assert entry["nnunet"]["seed"] == 1234 and entry["n_cases"] == len(members)


def test_nnunet_rule_samples_total_over_cases_per_group(store: Path, full) -> None:
    total = 50_000.0
    result = S.compute_stats(store, progress=False, fingerprint_total=total, scheduler="sync")
    groups: dict[str, list[str]] = {"all": sorted(full)}
    for case, (*_, split) in full.items():
        groups.setdefault(split, []).append(case)
    for name, members in groups.items():
        n = int(total // len(members))
        entry = result.fingerprint["all" if name == "all" else "splits"]
        entry = entry if name == "all" else entry[name]
        assert entry["nnunet"]["samples_per_case"] == n
        fg = [full[c][0][full[c][1] > 0] for c in sorted(members)]
        sample = np.concatenate([nnunet_sample(f, n) for f in fg])
        check_summary(entry["nnunet"], numpy_summary(sample))


def test_summary_tables(threaded: S.DatasetStats, full) -> None:
    freq = threaded.summary["label_frequency"]
    all_freq = freq[freq["split"] == "all"].set_index("label")
    for label in range(1, 29):
        k = sum(bool((lab == label).any()) for _, lab, _, _ in full.values())
        assert all_freq.loc[label, "cases"] == k
        assert all_freq.loc[label, "fraction"] == k / len(full)
    counts = threaded.summary["vertebra_count"]
    assert counts[counts["split"] == "all"]["cases"].sum() == len(full)
    spacing = threaded.summary["spacing"].set_index(["split", "axis"])
    zs = [a["spacing_zyx"][0] for _, _, a, _ in full.values()]
    assert spacing.loc[("all", "z"), "median"] == np.median(zs)
    assert spacing.loc[("all", "z"), "max"] == max(zs)


# --------------------------------------------------------------------------------------------
# Same numbers, however it runs
# --------------------------------------------------------------------------------------------


def _same(a: S.DatasetStats, b: S.DatasetStats) -> None:
    pd.testing.assert_frame_equal(a.vertebrae, b.vertebrae)
    pd.testing.assert_frame_equal(a.cases, b.cases)
    assert json.dumps(a.fingerprint, sort_keys=True) == json.dumps(b.fingerprint, sort_keys=True)
    for key in a.summary:
        pd.testing.assert_frame_equal(a.summary[key], b.summary[key])


def test_small_blocks_and_sync_scheduler_give_the_same_numbers(
    store: Path, threaded: S.DatasetStats
) -> None:
    small = S.compute_stats(
        store, progress=False, fingerprint_samples=SAMPLES, slices_per_task=5, scheduler="sync"
    )
    _same(threaded, small)


def test_local_cluster_with_two_processes_gives_the_same_numbers(
    store: Path, threaded: S.DatasetStats
) -> None:
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        on_client = S.compute_stats(
            store, scheduler=client, progress=False, fingerprint_samples=SAMPLES, slices_per_task=16
        )
        by_address = S.compute_stats(
            store, scheduler=cluster.scheduler_address, progress=False, fingerprint_samples=SAMPLES
        )
        assert len(client.scheduler_info()["workers"]) == 2
    _same(threaded, on_client)
    _same(threaded, by_address)
    own_cluster = S.compute_stats(
        store, scheduler="distributed", workers=2, fingerprint_samples=SAMPLES
    )
    _same(threaded, own_cluster)


def test_task_count_is_linear_in_blocks(store: Path, full) -> None:
    n_cases = len(full)
    slices = [img.shape[0] for img, *_ in full.values()]
    for step in (32, 4, 1):
        graph = S.build_graph(store, slices_per_task=step)
        blocks = sum(math.ceil(n / step) for n in slices)
        assert graph.blocks == blocks
        n = graph.n_tasks()
        # one task per block, a merge per 8 partials of a case, one final task per case, and
        # a merge per 8 cases of a split (4 splits here)
        merges = sum(math.ceil(math.ceil(n_z / step) / 8) for n_z in slices if n_z > 8 * step)
        bound = blocks + merges + n_cases + 4
        assert blocks + n_cases <= n <= bound, (step, n, blocks)
    # the 1,005-case dataset of ~500 slices: 16 block tasks, 2 merges and 1 final task a case
    assert 1005 * (16 + 2 + 1) + 1005 // 8 + 4 < 20_000


# --------------------------------------------------------------------------------------------
# Selections, float images, background-only blocks
# --------------------------------------------------------------------------------------------


def test_split_and_case_selection(store: Path, threaded: S.DatasetStats) -> None:
    train = S.compute_stats(store, split="train", progress=False, fingerprint_samples=None)
    expected = threaded.cases[threaded.cases["split"] == "train"]
    assert list(train.cases["case"]) == list(expected["case"])
    assert "nnunet" not in train.fingerprint["all"]
    assert train.fingerprint["all"]["exact"] == threaded.fingerprint["splits"]["train"]["exact"]
    one = threaded.cases["case"].iloc[1]
    single = S.compute_stats(store, cases=[one], progress=False, fingerprint_samples=None)
    assert list(single.cases["case"]) == [one]
    with pytest.raises(ctspine_zarr.CaseNotFoundError):
        S.compute_stats(store, cases=["no-such-case"], progress=False)
    with pytest.raises(ValueError, match="split"):
        S.compute_stats(store, split="training", progress=False)
    none = S.compute_stats(store, cases=[], progress=False)
    assert len(none.cases) == 0 and len(none.vertebrae) == 0


def test_float_images_with_nonfinite_voxels(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    cases = make_raw_tree(raw, n_cases=2, shape=(24, 28), n_slices=(9, 12), seed=3)
    img = nib.load(cases[0].image_path)
    data = np.asanyarray(img.dataobj).astype(np.float32) + np.float32(0.25)
    lab = np.asanyarray(nib.load(cases[0].label_path).dataobj)
    inside = np.argwhere(lab > 0)
    data[tuple(inside[0])] = np.nan
    data[tuple(inside[-1])] = np.inf
    data[0, 0, 0] = -np.inf
    out = nib.Nifti1Image(data, img.affine, img.header)
    out.header.set_data_dtype(np.float32)
    out.header.set_slope_inter(1.0, 0.0)
    nib.save(out, cases[0].image_path)
    path = tmp_path / "float.zarr"
    report = ctspine_zarr.ingest(raw, path, workers=1, scheduler="sync", progress=False)
    assert report.ok, report.summary()
    result = S.compute_stats(path, progress=False, fingerprint_samples=500, slices_per_task=4)
    case = cases[0].case_id
    image, label, attrs = _arrays(path, case)
    assert image.dtype == np.float32
    row = result.cases.set_index("case").loc[case]
    finite = image[np.isfinite(image)]
    assert row["nonfinite_voxels"] == 3 and row["hu_voxels"] == finite.size
    assert row["hu_min"] == finite.min() and row["hu_max"] == finite.max()
    assert row["hu_mean"] == pytest.approx(float(np.mean(finite, dtype=np.float64)), rel=1e-12)
    assert row["hu_std"] == pytest.approx(float(np.std(finite, dtype=np.float64)), rel=1e-9)
    ref = reference_vertebrae(image, label, attrs["affine"], attrs["spacing_zyx"])
    check_vertebrae(result.vertebrae[result.vertebrae["case"] == case], ref, integer=False)
    assert sum(r["voxels"] - r["hu_voxels"] for r in ref) == 2
    fg = [image[label > 0]]
    other_image, other_label, _ = _arrays(path, cases[1].case_id)
    fg.append(other_image[other_label > 0].astype(np.float64))
    values = np.concatenate([f[np.isfinite(f)].astype(np.float64) for f in fg])
    exact = result.fingerprint["all"]["exact"]
    assert exact["n_voxels"] == values.size
    assert exact["median"] == float(np.percentile(values, 50.0))
    assert exact["percentile_99_5"] == float(np.percentile(values, 99.5))


@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.int8, np.uint8, np.int32])
def test_case_moments_of_every_integer_dtype(dtype: type) -> None:
    info = np.iinfo(dtype)
    rng = np.random.default_rng(2)
    image = rng.integers(info.min, int(info.max) + 1, size=(3, 5, 16)).astype(dtype)
    image.flat[:2] = (info.min, info.max)
    label = np.zeros(image.shape, np.uint8)
    label[1, 1:3, 4:9] = 7
    part = S.block_stats(image, label)
    lo, hi, mean, std = part.hu.stats()
    assert (lo, hi, mean) == (image.min(), image.max(), np.mean(image))
    assert std == pytest.approx(float(np.std(image.astype(np.float64))), rel=1e-12)
    assert part.labels[7].hist.percentile(99.5) == np.percentile(image[label == 7], 99.5)


def test_block_stats_of_background_and_other_labels() -> None:
    image = np.arange(2 * 3 * 8, dtype=np.int16).reshape(2, 3, 8) - 20
    label = np.zeros(image.shape, dtype=np.uint8)
    empty = S.block_stats(image, label, z_offset=7)
    assert empty.foreground == 0 and empty.labels == {} and empty.voxels == image.size
    label[1, 2, 3:6] = 40
    label[0, 0, 0] = 3
    part = S.block_stats(image, label, z_offset=7)
    assert sorted(part.labels) == [3, 40]
    assert part.labels[40].count == 3 and part.labels[40].z_start == 8
    assert part.labels[40].hist.percentile(50.0) == np.percentile(image[label == 40], 50.0)
    meta = _CaseMeta(
        "c", "train", "X", (9, 3, 8), (2.0, 1.0, 1.0), tuple(map(tuple, np.eye(4))), "int16"
    )
    group = finalize_case([empty, part], meta)
    assert group.cases[0]["other_labels"] == [40]
    assert group.cases[0]["vertebrae"] == [3] and group.cases[0]["first_vertebra"] == "C3"
    assert [r["name"] for r in group.vertebrae] == ["C3", "label 40"]


# --------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------


def test_to_dir_writes_tables_json_and_plots(threaded: S.DatasetStats, tmp_path: Path) -> None:
    written = threaded.to_dir(tmp_path / "out")
    assert {
        "vertebrae.parquet",
        "cases.parquet",
        "fingerprint.json",
        "summary.json",
        "hu_histograms.parquet",
    } == {p.name for p in written}
    pictures = write_stats_plots(threaded, tmp_path / "out")
    assert {
        "hu_histogram_by_level.png",
        "volume_by_level.png",
        "vertebrae_per_case.png",
    } == {p.name for p in pictures}
    names = {p.name for p in written + pictures}
    back = pd.read_parquet(tmp_path / "out" / "vertebrae.parquet")
    pd.testing.assert_frame_equal(back, threaded.vertebrae, check_dtype=False)
    cases = pd.read_parquet(tmp_path / "out" / "cases.parquet")
    assert [list(v) for v in cases["vertebrae"]] == [list(v) for v in threaded.cases["vertebrae"]]
    fingerprint = json.loads((tmp_path / "out" / "fingerprint.json").read_text())
    assert fingerprint["all"]["exact"] == threaded.fingerprint["all"]["exact"]
    hist = pd.read_parquet(tmp_path / "out" / "hu_histograms.parquet")
    assert hist["voxels"].sum() == threaded.fingerprint["all"]["exact"]["n_voxels"]
    for name in names:
        if name.endswith(".png"):
            assert (tmp_path / "out" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_write_to_store_keeps_the_other_attrs(
    store: Path, threaded: S.DatasetStats, tmp_path: Path
) -> None:
    copy = tmp_path / "copy.zarr"
    shutil.copytree(store, copy)
    before = dict(open_root(copy).attrs)
    threaded.to_store(copy)
    attrs = dict(open_root(copy).attrs)
    assert {k: v for k, v in attrs.items() if k != S.STORE_ATTR} == before
    recorded = attrs[S.STORE_ATTR]
    assert recorded["n_cases"] == len(threaded.cases)
    assert recorded["fingerprint"]["all"]["exact"] == threaded.fingerprint["all"]["exact"]
    assert set(recorded["cases"]) == set(threaded.cases["case"])
    ds = ctspine_zarr.open(copy)
    ds0 = ctspine_zarr.open(store)
    assert list(ds.case.values) == list(ds0.case.values)
    np.testing.assert_array_equal(ds.voxel_count.values, ds0.voxel_count.values)
    assert S.STORE_ATTR not in open_root(store).attrs


def test_command_line(store: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    parser = argparse.ArgumentParser()
    stats_arguments(parser)
    copy = tmp_path / "copy.zarr"
    shutil.copytree(store, copy)
    out = tmp_path / "stats"
    args = parser.parse_args(
        [
            str(copy),
            str(out),
            "--split",
            "train",
            "--scheduler",
            "sync",
            "--fingerprint-samples",
            "200",
            "--write-to-store",
            "--quiet",
        ]
    )
    assert _cmd_stats(args) == 0
    text = capsys.readouterr().out
    assert "cases" in text and "fingerprint" in text
    assert (out / "vertebrae.parquet").is_file() and (out / "volume_by_level.png").is_file()
    assert open_root(copy).attrs[S.STORE_ATTR]["split"] == ["train"]


def test_vertebra_colours_are_distinct() -> None:
    colours = vertebra_colours()
    assert sorted(colours) == list(range(1, 29))
    assert len(set(colours.values())) == 28
    assert all(c.startswith("#") and len(c) == 7 for c in colours.values())
