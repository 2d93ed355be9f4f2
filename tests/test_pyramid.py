"""Downsampled levels (issue #16, item 3): values, resume, metadata, show, CLI and verify."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
import zarr
from conftest import CountingStore

import ctspine_zarr
from ctspine_zarr.cli import main
from ctspine_zarr.errors import CaseNotFoundError, StoreError, StoreLockedError
from ctspine_zarr.io.levels import level_paths
from ctspine_zarr.io.location import Location
from ctspine_zarr.schema import image_encoding, label_compressors
from ctspine_zarr.testing.synthetic import make_volume, write_case, write_split_file
from ctspine_zarr.write import pyramid
from ctspine_zarr.write.downsample import build_levels
from ctspine_zarr.write.lock import WriterLock
from ctspine_zarr.write.pyramid import add_levels, register_levels

#: Where an ingested case keeps its label levels: datasets 1 and 2 of its OME label image.
LBL = {f: level_paths(f, label_image=True)[1] for f in (2, 4)}

ODD = "odd"  # random voxels, sizes that no factor divides, ties between labels
SPINE = "spine"  # a synthetic torso: smooth anatomy to compare pictures


# --------------------------------------------------------------------------------------------
# Stores
# --------------------------------------------------------------------------------------------


def _odd_volume() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(16)
    shape = (37, 19, 21)  # z crosses a shard (32 slices); none is a multiple of 2 or 4
    image = rng.integers(-1024, 2500, shape).astype(np.int16)
    label = np.zeros(shape, dtype=np.uint8)
    # coarse blobs of two labels drawn at random: many 2x2x2 and 4x4x4 blocks tie
    label[2:30, 3:15, 4:18] = rng.choice(np.array([0, 0, 20, 21], np.uint8), (28, 12, 14))
    label[33:, 15:, 17:] = 22  # in the far corner: the edge blocks hold fewer voxels
    label[34, 2, 2] = 200  # a value outside 1..28, alone in its blocks
    return image, label


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store of two cases, without levels (never modified: tests copy it)."""
    root = tmp_path_factory.mktemp("pyramid")
    raw = root / "raw"
    image, label = _odd_volume()
    cases = [
        write_case(
            raw, ODD, "COLONOG", image_zyx=image, label_zyx=label, spacing_zyx=(2.5, 0.8, 0.7)
        )
    ]
    hu, mask = make_volume(shape_zyx=(44, 64, 60), spacing_zyx=(2.0, 1.2, 1.2), seed=3)
    cases.append(
        write_case(raw, SPINE, "MSD-T10", image_zyx=hu, label_zyx=mask, spacing_zyx=(2.0, 1.2, 1.2))
    )
    write_split_file(
        raw / "metadata" / "data_split.txt", {"trainset": [c.image_path.name for c in cases]}
    )
    store = root / "s.zarr"
    report = ctspine_zarr.ingest(raw, store, workers=1, scheduler="sync", progress=False)
    assert report.ok, report.summary()
    return store


def _copy(store: Path, target: Path) -> Path:
    shutil.copytree(store, target)
    return target


@pytest.fixture(scope="module")
def leveled(pristine: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The store with its levels (read-only for the tests)."""
    store = _copy(pristine, tmp_path_factory.mktemp("leveled") / "s.zarr")
    report = add_levels(store, workers=2)
    assert report.ok and report.count("added") == 2, report.summary()
    return store


def _full(store: Path, case: str) -> tuple[np.ndarray, np.ndarray]:
    group = zarr.open_group(store / "cases" / case, mode="r")
    return np.asarray(group["image"][...]), np.asarray(group["label"][...])


def _reference(image: np.ndarray, label: np.ndarray, f: int) -> tuple[np.ndarray, np.ndarray]:
    """Block mean (rounded half to even) and mode of the non-zero labels, block by block."""
    mean, mode, _ = _reference_ties(image, label, f)
    return mean, mode


def _reference_ties(
    image: np.ndarray, label: np.ndarray, f: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """:func:`_reference`, and the number of blocks where two labels tie."""
    shape = tuple(-(-n // f) for n in image.shape)
    mean = np.zeros(shape, image.dtype)
    mode = np.zeros(shape, np.uint8)
    ties = 0
    for i, j, k in itertools.product(*(range(n) for n in shape)):
        block = (slice(i * f, i * f + f), slice(j * f, j * f + f), slice(k * f, k * f + f))
        mean[i, j, k] = np.rint(image[block].astype(np.float64).mean())
        values = label[block][label[block] > 0]
        if values.size:
            found, counts = np.unique(values, return_counts=True)
            mode[i, j, k] = found[counts == counts.max()].min()
            ties += int((counts == counts.max()).sum() > 1)
    return mean, mode, ties


def _listing(store: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(store)): (p.stat().st_mtime_ns, p.stat().st_size)
        for p in store.rglob("*")
        if p.is_file()
    }


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", [ODD, SPINE])
def test_levels_are_the_block_mean_and_mode(leveled: Path, case: str) -> None:
    image, label = _full(leveled, case)
    group = zarr.open_group(leveled / "cases" / case, mode="r")
    ties = 0
    for f in (2, 4):
        mean, mode, tied = _reference_ties(image, label, f)
        stored_image = group[f"levels/{f}/image"]
        stored_label = group[LBL[f]]
        assert stored_image.dtype == image.dtype and stored_label.dtype == np.uint8
        assert stored_image.shape == tuple(-(-n // f) for n in image.shape)
        np.testing.assert_array_equal(stored_image[...], mean)
        np.testing.assert_array_equal(stored_label[...], mode)
        assert stored_image.attrs["downsample"] == f
        assert stored_image.chunks == tuple(min(64, n) for n in stored_image.shape)
        assert stored_image.metadata.dimension_names == ("z", "y", "x")
        ties += tied
    assert ties > 0 or case == SPINE
    if case == ODD:  # the lone voxel of 200 wins its blocks: background never outvotes it
        assert group[LBL[2]][17, 1, 1] == 200 and group[LBL[4]][8, 0, 0] == 200


def test_ties_go_to_the_smaller_label_and_zero_only_to_empty_blocks() -> None:
    label = np.zeros((4, 4, 4), np.uint8)
    label[0, 0, 0], label[0, 0, 1] = 9, 7  # one voxel each in the first 2x2x2 block: a tie
    label[2:4, 2:4, 2] = 5  # 4 voxels of 5 against 4 of 0 in the last block
    image = np.zeros((4, 4, 4), np.int16)
    images, labels = build_levels(
        (4, 4, 4), image.dtype, lambda a, b: (image[a:b], label[a:b]), shards=32, factors=(2, 4)
    )
    assert labels[2][0, 0, 0] == 7 and labels[2][1, 1, 1] == 5
    assert (labels[2] > 0).sum() == 2
    assert labels[4][0, 0, 0] == 5  # 4 voxels of 5 beat one of 7 and one of 9


def test_float_means_keep_floats_and_wrong_boxes_are_not_trusted() -> None:
    rng = np.random.default_rng(1)
    image = rng.normal(size=(9, 7, 5)).astype(np.float32)
    image[8, 6, 4] = np.nan
    label = np.zeros(image.shape, np.uint8)
    label[6:9, 0:3, 0:3] = 3
    boxes = {3: [0, 4, 4, 1, 5, 5]}  # says label 3 is elsewhere
    images, labels = build_levels(
        image.shape,
        image.dtype,
        lambda a, b: (image[a:b], label[a:b]),
        shards=4,
        factors=(2, 4),
        boxes=boxes,
    )
    assert images[2].dtype == np.float32
    np.testing.assert_allclose(images[2][0, 0, 0], image[:2, :2, :2].mean(), rtol=1e-6)
    np.testing.assert_allclose(images[4][2, 1, 1], image[8:, 4:, 4:].mean(), rtol=1e-6)
    assert np.isnan(images[2][4, 3, 2]) and not np.isnan(images[2][4, 3, 1])
    np.testing.assert_array_equal(labels[2], _reference(image, label, 2)[1])
    with pytest.raises(ValueError, match="factors"):
        build_levels((2, 2, 2), image.dtype, lambda a, b: (image, label), shards=1, factors=(2, 8))


# --------------------------------------------------------------------------------------------
# Resume and metadata
# --------------------------------------------------------------------------------------------


def test_rerun_is_a_no_op(leveled: Path, tmp_path: Path) -> None:
    store = _copy(leveled, tmp_path / "s.zarr")
    before = _listing(store)
    report = add_levels(store)
    assert report.ok and report.count("present") == 2 and report.count("added") == 0
    assert _listing(store) == before


def _fail(*args: Any, **kwargs: Any) -> Any:
    raise OSError("disk full")


def test_a_failed_case_keeps_its_document_and_the_rerun_resumes(
    pristine: Path, leveled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _copy(pristine, tmp_path / "s.zarr")
    document = (store / "cases" / ODD / "zarr.json").read_bytes()

    monkeypatch.setattr(pyramid, "_write_groups", _fail)  # after the arrays, before the switch
    report = add_levels(store, cases=[ODD], workers=1)
    assert not report.ok and report.count("failed") == 1
    assert "OSError: disk full" in report.summary()
    assert (store / "cases" / ODD / "levels" / "2" / "image").is_dir()  # leftovers...
    assert (store / "cases" / ODD / "zarr.json").read_bytes() == document  # ...unreferenced
    assert ctspine_zarr.verify(store).ok
    monkeypatch.undo()
    report = add_levels(store, workers=1)
    assert report.ok and report.count("added") == 2
    for case in (ODD, SPINE):
        ours = zarr.open_group(store / "cases" / case, mode="r")
        theirs = zarr.open_group(leveled / "cases" / case, mode="r")
        for path in ("levels/2/image", LBL[4]):
            np.testing.assert_array_equal(ours[path][...], theirs[path][...])


def test_the_case_document_registers_the_levels(leveled: Path, pristine: Path) -> None:
    before = json.loads((pristine / "cases" / ODD / "zarr.json").read_bytes())
    after = json.loads((leveled / "cases" / ODD / "zarr.json").read_bytes())
    ome = after["attributes"].pop("ome")
    before_ome = before["attributes"].pop("ome")
    assert after["attributes"] == {**before["attributes"], "levels": [2, 4]}
    datasets = ome["multiscales"][0]["datasets"]
    assert datasets[0] == before_ome["multiscales"][0]["datasets"][0]  # level 0 unchanged
    assert [d["path"] for d in datasets] == ["image", "levels/2/image", "levels/4/image"]
    new = set(after["consolidated_metadata"]["metadata"]) - set(
        before["consolidated_metadata"]["metadata"]
    )
    assert new == {
        "levels",
        "levels/2",
        "levels/2/image",
        LBL[2],
        "levels/4",
        "levels/4/image",
        LBL[4],
    }
    own = json.loads(
        (leveled / "cases" / ODD / "levels" / "2" / "image" / "zarr.json").read_bytes()
    )
    assert after["consolidated_metadata"]["metadata"]["levels/2/image"] == own


def test_readers_opened_before_keep_reading_and_an_ingest_rerun_keeps_the_levels(
    pristine: Path, tmp_path: Path
) -> None:
    shutil.copytree(pristine.parent / "raw", tmp_path / "raw")
    store = _copy(pristine, tmp_path / "s.zarr")
    ds = ctspine_zarr.open(store)
    volume = ds.ctspine.volume(SPINE)
    before = ds.ctspine.slice(SPINE, 20)["image"].values
    assert add_levels(store).ok
    # the handles opened before read on: the arrays and shard indexes they hold are untouched
    np.testing.assert_array_equal(ds.ctspine.slice(SPINE, 20)["image"].values, before)
    np.testing.assert_array_equal(volume["image"].isel(z=20).values, before)
    np.testing.assert_array_equal(volume["label"].values, _full(store, SPINE)[1])
    report = ctspine_zarr.ingest(tmp_path / "raw", store, workers=1, scheduler="sync")
    assert report.ok and report.count("skipped") == 2, report.summary()  # intact with levels
    assert zarr.open_group(store / "cases" / SPINE, mode="r").attrs["levels"] == [2, 4]
    assert ctspine_zarr.verify(store).ok
    assert add_levels(store).count("present") == 2


def test_the_root_entries_of_the_cases_follow_their_documents(
    pristine: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _copy(pristine, tmp_path / "s.zarr")
    root = (store / "zarr.json").read_bytes()
    assert add_levels(store, cases=[ODD]).ok
    assert (store / "zarr.json").read_bytes() == root  # the root repeats nothing that changed
    # a root that repeats the attribute the levels change gets its entry of the case updated
    from ctspine_zarr.io import catalogue

    monkeypatch.setattr(catalogue, "ROOT_CASE_ATTRS", (*catalogue.ROOT_CASE_ATTRS, "levels"))
    assert add_levels(store).ok
    members = json.loads((store / "zarr.json").read_bytes())["consolidated_metadata"]["metadata"]
    before = json.loads(root)["consolidated_metadata"]["metadata"]
    assert list(members) == list(before)  # same entries in the same order: catalogue first
    assert members[f"cases/{SPINE}"]["attributes"]["levels"] == [2, 4]
    assert "levels" not in members[f"cases/{ODD}"]["attributes"]  # not rewritten this time
    assert {k: v for k, v in members.items() if not k.startswith("cases/")} == {
        k: v for k, v in before.items() if not k.startswith("cases/")
    }


def test_generic_readers_see_the_case_and_its_levels(leveled: Path) -> None:
    case = xr.open_zarr(leveled / "cases" / ODD)
    assert case["image"].dims == case["label"].dims == ("z", "y", "x")
    assert case["image"].shape == (37, 19, 21)
    assert "levels" not in case.variables
    level = xr.open_zarr(leveled / "cases" / ODD / "levels" / "2")
    assert set(level.data_vars) == {"image"}  # its label level is in the OME label image
    assert level["image"].shape == (19, 10, 11) and level.attrs["downsample"] == 2
    assert level.attrs["spacing_zyx"] == pytest.approx([5.0, 1.6, 1.4])
    group = zarr.open_group(leveled / "cases" / ODD, mode="r")
    assert group[LBL[4]].shape == (10, 5, 6)
    assert ctspine_zarr.open(leveled).ctspine.volume(ODD)["image"].shape == (37, 19, 21)


def _ome(path: str, scale: list[float], translation: list[float]) -> dict[str, Any]:
    return {
        "version": "0.5",
        "multiscales": [
            {
                "axes": [{"name": a, "type": "space", "unit": "millimeter"} for a in "zyx"],
                "datasets": [
                    {
                        "path": path,
                        "coordinateTransformations": [
                            {"type": "scale", "scale": scale},
                            {"type": "translation", "translation": translation},
                        ],
                    }
                ],
            }
        ],
    }


def test_register_levels_without_an_ome_block() -> None:
    document = {
        "zarr_format": 3,
        "node_type": "group",
        "attributes": {"case_id": "a", "complete": True},
        "consolidated_metadata": {"kind": "inline", "must_understand": False, "metadata": {}},
    }
    members = {"levels": {"node_type": "group"}, "levels/2/image": {"node_type": "array"}}
    out = register_levels(document, members, {2: "levels/2/image", 4: "levels/4/image"})
    assert out["attributes"] == {"case_id": "a", "complete": True, "levels": [2, 4]}
    assert out["consolidated_metadata"]["metadata"] == members
    assert list(out) == ["zarr_format", "node_type", "attributes", "consolidated_metadata"]
    assert document["attributes"] == {"case_id": "a", "complete": True}  # not changed
    assert document["consolidated_metadata"]["metadata"] == {}


def test_register_levels_appends_ome_datasets_at_the_centre_of_the_blocks() -> None:
    document = {
        "zarr_format": 3,
        "node_type": "group",
        "attributes": {"ome": _ome("image", [2.5, 0.8, 0.7], [-10.0, 20.0, 30.0])},
        "consolidated_metadata": {"kind": "inline", "must_understand": False, "metadata": {}},
    }
    paths = {2: "levels/2/image", 4: "levels/4/image"}
    out = register_levels(document, {}, paths)
    datasets = out["attributes"]["ome"]["multiscales"][0]["datasets"]
    assert [d["path"] for d in datasets] == ["image", "levels/2/image", "levels/4/image"]
    two, four = (d["coordinateTransformations"] for d in datasets[1:])
    assert two[0] == {"type": "scale", "scale": pytest.approx([5.0, 1.6, 1.4])}
    assert two[1]["translation"] == pytest.approx([-10 + 1.25, 20 + 0.4, 30 + 0.35])
    assert four[0]["scale"] == pytest.approx([10.0, 3.2, 2.8])
    assert four[1]["translation"] == pytest.approx([-10 + 3.75, 20 + 1.2, 30 + 1.05])
    assert out["attributes"]["levels"] == [2, 4]
    assert len(document["attributes"]["ome"]["multiscales"][0]["datasets"]) == 1
    again = register_levels(out, {}, paths)  # registering twice replaces, never duplicates
    assert again == out
    label = register_levels(
        {"attributes": {"ome": _ome("0", [1.0, 1.0, 1.0], [0.0, 0.0, 0.0])}},
        {"1": {}},
        {2: "1", 4: "2"},
        record=False,
    )
    assert "levels" not in label["attributes"] and "consolidated_metadata" not in label
    assert [d["path"] for d in label["attributes"]["ome"]["multiscales"][0]["datasets"]] == [
        "0",
        "1",
        "2",
    ]


def test_a_label_image_gets_its_levels_as_datasets_1_and_2(pristine: Path, tmp_path: Path) -> None:
    store = _copy(pristine, tmp_path / "s.zarr")  # an ingest writes the OME label image
    assert add_levels(store, cases=[ODD]).ok
    case = store / "cases" / ODD
    assert not (case / "levels" / "2" / "label").exists()
    group = zarr.open_group(case, mode="r")
    image, label = _full(store, ODD)
    for f, index in ((2, 1), (4, 2)):
        np.testing.assert_array_equal(
            group[f"labels/vertebrae/{index}"][...], _reference(image, label, f)[1]
        )
    own = json.loads((case / "labels" / "vertebrae" / "zarr.json").read_bytes())
    datasets = own["attributes"]["ome"]["multiscales"][0]["datasets"]
    assert [d["path"] for d in datasets] == ["0", "1", "2"]
    (scale0,), (origin0,) = (
        [d["coordinateTransformations"][0]["scale"] for d in datasets[:1]],
        [d["coordinateTransformations"][1]["translation"] for d in datasets[:1]],
    )
    assert datasets[1]["coordinateTransformations"][1]["translation"] == pytest.approx(
        [t + s / 2 for t, s in zip(origin0, scale0, strict=True)]  # the centre of a 2x2x2 block
    )
    document = json.loads((case / "zarr.json").read_bytes())
    members = document["consolidated_metadata"]["metadata"]
    assert members["labels/vertebrae"] == own
    assert {"labels/vertebrae/1", "labels/vertebrae/2", "levels/2/image"} <= set(members)
    assert "levels/2/label" not in members
    paths = [d["path"] for d in document["attributes"]["ome"]["multiscales"][0]["datasets"]]
    assert paths == ["image", "levels/2/image", "levels/4/image"]
    from ctspine_zarr.viz.show import read_views

    (view,) = read_views(store, ODD, plane="coronal", y=7)
    assert view.downsample == 2
    expected = np.repeat(np.repeat(group["labels/vertebrae/1"][:, 3, :], 2, 0), 2, 1)[:37, :21]
    np.testing.assert_array_equal(view.label, expected[::-1, ::-1])
    assert ctspine_zarr.verify(store).ok
    assert add_levels(store).count("present") == 1  # and the other case is added


# --------------------------------------------------------------------------------------------
# Pictures
# --------------------------------------------------------------------------------------------


def _chunk_keys(reads: list[tuple[str, object, int | None]], case: str) -> set[str]:
    return {key for key, _, _ in reads if key.startswith(f"cases/{case}/") and "/c/" in key}


def test_show_reads_the_sagittal_cut_from_the_level(leveled: Path) -> None:
    pytest.importorskip("matplotlib")
    from ctspine_zarr.viz.show import read_views

    counting = CountingStore(zarr.storage.LocalStore(leveled, read_only=True))
    try:
        (full,) = read_views(counting, SPINE, plane="sagittal", level=0)
        full_keys = _chunk_keys(counting.reads, SPINE)
        counting.reads.clear()
        (view,) = read_views(counting, SPINE, plane="sagittal")
        level_keys = _chunk_keys(counting.reads, SPINE)
        level_reads = [r for r in counting.reads if "/levels/2/" in r[0] or LBL[2] in r[0]]
    finally:
        ctspine_zarr.io.store.forget(counting)
    assert {k.split("/c/")[0] for k in full_keys} == {
        f"cases/{SPINE}/image",
        f"cases/{SPINE}/label",
    }
    assert {k.split("/c/")[0] for k in level_keys} == {
        f"cases/{SPINE}/levels/2/image",
        f"cases/{SPINE}/{LBL[2]}",
    }
    assert len(level_reads) == 4  # per array: the shard index, then the chunks in one read
    assert (view.downsample, full.downsample) == (2, 1)
    assert view.image.shape == full.image.shape and view.pixel_mm == full.pixel_mm
    assert (view.index, view.position_mm, view.letters) == (
        full.index,
        full.position_mm,
        full.letters,
    )
    level = zarr.open_group(leveled / "cases" / SPINE, mode="r")["levels/2/image"]
    cut = np.repeat(np.repeat(level[:, :, full.index // 2], 2, 0), 2, 1)[:44, :64]
    np.testing.assert_array_equal(view.image, cut[::-1, ::-1])
    # the same anatomy: close to the full-resolution cut, and the same vertebrae
    assert np.corrcoef(view.image.ravel(), full.image.ravel())[0, 1] > 0.8
    assert set(np.unique(view.label)) == set(np.unique(full.label))


def test_pictures_from_a_level_have_the_full_resolution_size(leveled: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from ctspine_zarr.viz.show import plot_case

    fast = plot_case(leveled, SPINE)
    slow = plot_case(leveled, SPINE, level=0)
    assert fast.canvas.get_width_height() == slow.canvas.get_width_height()
    titles = [ax.get_title() for ax in fast.axes if ax.images]
    assert ["2x level" in t for t in titles] == [False, True, True]
    assert not any("level" in ax.get_title() for ax in slow.axes)
    coarse = ctspine_zarr.open(leveled).ctspine.plot(SPINE, plane="coronal", level=4)
    (ax,) = [ax for ax in coarse.axes if ax.images]
    assert "4x level" in ax.get_title()
    with pytest.raises(ValueError, match="level must be"):
        plot_case(leveled, SPINE, level=3)


def _sharded(store: Any, name: str, data: np.ndarray, **options: Any) -> zarr.Array:
    array = zarr.create_array(
        store,
        name=name,
        shape=data.shape,
        dtype=data.dtype,
        fill_value=0,
        config={"write_empty_chunks": True},
        **options,
    )
    array[...] = data
    return array


def test_read_cuts_equals_zarr_across_chunks_and_shards(tmp_path: Path) -> None:
    from ctspine_zarr.io.levelreader import read_cuts

    rng = np.random.default_rng(5)
    data = rng.integers(-1000, 1000, (13, 11, 9)).astype(np.int16)
    local = zarr.storage.LocalStore(tmp_path / "a.zarr")
    encoding = image_encoding("default")
    sharded = _sharded(local, "s", data, chunks=(4, 4, 4), shards=(8, 8, 8), **encoding)
    plain = _sharded(local, "p", data, chunks=(4, 4, 4))  # not the levels' layout: zarr reads
    labels = _sharded(
        local,
        "l",
        (data % 7).astype(np.uint8),
        chunks=(4, 4, 4),
        shards=(8, 8, 8),
        compressors=label_compressors(),
    )
    cuts = [(a, 1, y) for a in (sharded, plain, labels) for y in range(11)]
    cuts += [(a, 2, x) for a in (sharded, plain, labels) for x in range(9)]
    for (array, axis, at), got in zip(cuts, read_cuts(cuts), strict=True):
        expected = array[:, at, :] if axis == 1 else array[:, :, at]
        np.testing.assert_array_equal(got, expected)
        assert got.dtype == array.dtype
    # two rounds: the shard indexes, then the chunks, near ones of a shard in one request
    counting = CountingStore(zarr.storage.LocalStore(tmp_path / "a.zarr", read_only=True))
    image = zarr.open_array(counting, path="s", mode="r")
    counting.reads.clear()
    read_cuts([(image, 2, 5)])
    assert len(counting.reads) == 2 * 4  # 4 shards (2 x 2 along z, y): index, then chunks
    # damage is an error naming the shard, never fill values
    shard = tmp_path / "a.zarr" / "s" / "c" / "0" / "0" / "0"
    raw = bytearray(shard.read_bytes())
    raw[10] ^= 0xFF
    shard.write_bytes(bytes(raw))
    with pytest.raises(ctspine_zarr.errors.DamagedStoreError, match="s/c/0/0/0: chunk"):
        read_cuts([(sharded, 1, 0)])
    shard.unlink()
    with pytest.raises(
        ctspine_zarr.errors.DamagedStoreError, match="s/c/0/0/0: the shard is missing"
    ):
        read_cuts([(sharded, 1, 0)])


def test_without_levels_show_reads_full_resolution(pristine: Path) -> None:
    pytest.importorskip("matplotlib")
    from ctspine_zarr.viz.show import read_views

    views = read_views(pristine, SPINE)
    assert [v.downsample for v in views] == [1, 1, 1]
    with pytest.raises(ValueError, match="has no 2x level.*ctspine-zarr pyramid"):
        read_views(pristine, SPINE, plane="sagittal", level=2)


# --------------------------------------------------------------------------------------------
# Command line, lock, verify, S3
# --------------------------------------------------------------------------------------------


def test_cli_pyramid_exit_codes(
    pristine: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = _copy(pristine, tmp_path / "s.zarr")
    assert main(["pyramid", str(store), "--quiet", "--case", SPINE]) == 0
    assert not (store / ".ctspine").exists()  # the writer's folder goes with the lock
    out = capsys.readouterr().out
    assert "1 given levels [2, 4], 0 had them, 0 failed" in out and "% of their cases" in out
    monkeypatch.setattr(pyramid, "_write_groups", _fail)
    assert main(["pyramid", str(store), "--quiet"]) == 1
    assert f"failed     {ODD}: OSError: disk full" in capsys.readouterr().out
    monkeypatch.undo()
    assert main(["pyramid", str(store), "--quiet"]) == 0
    assert "1 given levels [2, 4], 1 had them" in capsys.readouterr().out
    not_a_store = tmp_path / "plain"
    not_a_store.mkdir()
    (not_a_store / "notes.txt").write_text("hello")
    for bad, message in (
        (tmp_path / "missing.zarr", "missing.zarr: no Zarr v3 store there"),
        (not_a_store, "plain: no Zarr v3 store there"),
    ):
        assert main(["pyramid", str(bad)]) == 2
        err = capsys.readouterr().err
        assert (
            err.count("\n") == 1
            and message in err
            and err.startswith("ctspine-zarr pyramid: error:")
        )
    assert not (tmp_path / "missing.zarr").exists()
    assert main(["pyramid", str(store), "--case", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:  # argparse refuses the value before anything runs
        main(["pyramid", str(store), "--workers", "0"])
    assert usage.value.code == 2 and "--workers" in capsys.readouterr().err
    assert (
        main(
            [
                "show",
                str(store),
                SPINE,
                "--plane",
                "sagittal",
                "--full-resolution",
                str(tmp_path / "a.png"),
            ]
        )
        == 0
    )


def test_cli_pyramid_on_a_read_only_http_store_says_so(
    pristine: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ctspine_zarr.io.serve import serve_directory

    with serve_directory(pristine.parent) as server:
        assert main(["pyramid", f"{server.url}/{pristine.name}", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"{server.url}/{pristine.name}: cannot write to this store" in err
    assert (
        not (pristine / ".ctspine").exists() and not (pristine / "cases" / ODD / "levels").exists()
    )


def test_a_held_lock_refuses_the_command(pristine: Path, tmp_path: Path) -> None:
    store = _copy(pristine, tmp_path / "s.zarr")
    with WriterLock(Location.resolve(store)):
        with pytest.raises(StoreLockedError, match="another ingest"):
            add_levels(store)
        assert (store / ".ctspine" / "lock").exists()  # the holder's lock is left alone
    assert not (store / "cases" / ODD / "levels").exists()
    with pytest.raises(CaseNotFoundError):
        add_levels(store, cases=["nope"])
    zarr.create_group(zarr.storage.LocalStore(tmp_path / "other.zarr"))
    with pytest.raises(StoreError, match="other.zarr: a Zarr store, but not a ctspine store"):
        add_levels(tmp_path / "other.zarr")


def test_verify_passes_with_levels_and_finds_damaged_ones(leveled: Path, tmp_path: Path) -> None:
    report = ctspine_zarr.verify(leveled)
    assert report.ok and report.problems == [], report.summary()
    store = _copy(leveled, tmp_path / "s.zarr")
    shard = store / "cases" / ODD / "levels" / "2" / "image" / "c" / "0" / "0" / "0"
    data = bytearray(shard.read_bytes())
    data[len(data) // 3] ^= 0xFF
    shard.write_bytes(bytes(data))
    (store / "cases" / SPINE / LBL[4] / "c" / "0" / "0" / "0").unlink()
    problems = {(p.case_id, p.array, p.kind) for p in ctspine_zarr.verify(store).problems}
    assert problems == {(ODD, "levels/2/image", "checksum"), (SPINE, LBL[4], "missing")}


def test_levels_on_s3(leveled: Path, pristine: Path, s3) -> None:  # type: ignore[no-untyped-def]
    import s3fs

    bucket, options, _ = s3
    url = f"{bucket}/s.zarr"
    s3fs.S3FileSystem(**options).put(str(pristine), url, recursive=True)
    report = add_levels(url, storage_options=options, workers=2)
    assert report.ok and report.count("added") == 2, report.summary()
    assert add_levels(url, storage_options=options).count("present") == 2
    verified = ctspine_zarr.verify(url, storage_options=options)
    assert verified.ok, verified.summary()
    pytest.importorskip("matplotlib")
    from ctspine_zarr.viz.show import read_views

    remote = read_views(url, SPINE, storage_options=options)
    local = read_views(leveled, SPINE)
    assert [v.downsample for v in remote] == [1, 2, 2]
    for a, b in zip(remote, local, strict=True):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.label, b.label)
    assert not any(k.startswith(".ctspine") for k in s3fs.S3FileSystem(**options).find(url))


def test_the_report_counts_the_bytes_of_the_levels(pristine: Path, tmp_path: Path) -> None:
    store = _copy(pristine, tmp_path / "s.zarr")
    report = add_levels(store, cases=[SPINE])
    (outcome,) = report.outcomes
    levels = store / "cases" / SPINE / "levels"
    arrays = [levels / f / "image" for f in ("2", "4")]
    arrays += [store / "cases" / SPINE / LBL[f] for f in (2, 4)]
    on_disk = sum(p.stat().st_size for a in arrays for p in a.rglob("*") if p.is_file())
    assert outcome.level_bytes == on_disk
    assert 0 < outcome.level_bytes < 0.3 * outcome.case_bytes


def test_ingest_pyramid_writes_the_levels_and_restores_them_after_a_rewrite(
    tmp_path: Path,
) -> None:
    """``ingest --pyramid`` as a real process: levels for every case, again after a rewrite."""
    import subprocess
    import sys

    from clirun import ingest_command

    raw = tmp_path / "raw"
    image, label = _odd_volume()
    write_case(raw, ODD, "COLONOG", image_zyx=image, label_zyx=label, spacing_zyx=(2.5, 0.8, 0.7))
    hu, mask = make_volume(shape_zyx=(44, 64, 60), spacing_zyx=(2.0, 1.2, 1.2), seed=3)
    spine = write_case(
        raw, SPINE, "MSD-T10", image_zyx=hu, label_zyx=mask, spacing_zyx=(2.0, 1.2, 1.2)
    )
    names = [f"{ODD}.nii.gz", spine.image_path.name]
    write_split_file(raw / "metadata" / "data_split.txt", {"trainset": names})
    store = tmp_path / "s.zarr"

    def run(*command: str) -> str:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def levels_match(case: str) -> None:
        group = zarr.open_group(store / "cases" / case, mode="r")
        assert group.attrs["levels"] == [2, 4]
        full_image, full_label = _full(store, case)
        for f in (2, 4):
            image_path, label_path = level_paths(f, label_image="labels" in group)
            mean, mode = _reference(full_image, full_label, f)
            np.testing.assert_array_equal(group[image_path][...], mean)
            np.testing.assert_array_equal(group[label_path][...], mode)

    out = run(*ingest_command(raw, store, "--pyramid"))
    assert "cases      2 given levels [2, 4], 0 had them, 0 failed" in out, out
    for case in (ODD, SPINE):
        levels_match(case)
    before = _full(store, ODD)[0]
    # a changed source: the rerun rewrites that case, which drops its levels, and writes
    # them again from the new voxels; the unchanged case keeps its levels
    write_case(
        raw, ODD, "COLONOG", image_zyx=image + 7, label_zyx=label, spacing_zyx=(2.5, 0.8, 0.7)
    )
    out = run(*ingest_command(raw, store, "--pyramid"))
    assert "cases      1 given levels [2, 4], 1 had them, 0 failed" in out, out
    np.testing.assert_array_equal(_full(store, ODD)[0], before + 7)
    levels_match(ODD)
    levels_match(SPINE)
    run(sys.executable, "-m", "ctspine_zarr.cli", "verify", str(store))
