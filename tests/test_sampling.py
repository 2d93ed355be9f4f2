"""Training datasets as numpy sequences: lengths, filters, contents, reads, patches; no torch."""

from __future__ import annotations

import importlib
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from zarr.abc.store import RangeByteRequest, SuffixByteRequest

import ctspine_zarr
from ctspine_zarr.io import slicereader
from ctspine_zarr.io.store import case_group, forget
from ctspine_zarr.sampling import (
    PAD_IMAGE,
    PatchSequence,
    SliceSequence,
    VolumeSequence,
    parse_vertebra,
)
from ctspine_zarr.vertebrae import VERTEBRA_LABELS


@pytest.fixture(scope="module")
def catalogue(store: Path):
    return ctspine_zarr.open(store)


@pytest.fixture(scope="module")
def index_of(store: Path, catalogue) -> dict[str, np.ndarray]:
    """The stored ``slice_vertebrae`` of every case."""
    return {
        case: np.asarray(case_group(store, case)["slice_vertebrae"][...])
        for case in catalogue.ctspine.case_ids()
    }


def _volume(catalogue, case: str) -> tuple[np.ndarray, np.ndarray]:
    vol = catalogue.ctspine.volume(case)
    return vol.image.values, vol.label.values


def _shared_vertebra(catalogue) -> int:
    """A label held by some cases but not all."""
    counts = catalogue.has_vertebra.values.sum(axis=0)
    column = int(np.flatnonzero((counts > 0) & (counts < catalogue.sizes["case"]))[0])
    return VERTEBRA_LABELS[column]


# -- lengths and filters ----------------------------------------------------------------------


@pytest.mark.parametrize("split", ["train", "validation", "test", "unassigned", None])
def test_slice_and_volume_lengths_follow_the_split(store: Path, catalogue, split) -> None:
    keep = np.ones(catalogue.sizes["case"], bool)
    if split is not None:
        keep = catalogue.split.values.astype(object) == split
    slices = SliceSequence(store, split)
    assert len(slices) == int(catalogue.n_slices.values[keep].sum())
    volumes = VolumeSequence(store, split)
    assert len(volumes) == int(keep.sum())
    assert list(volumes.case_ids) == list(catalogue.case.values.astype(object)[keep])


def test_foreground_only_counts_slices_of_the_stored_index(store: Path, index_of) -> None:
    seq = SliceSequence(store, None, foreground_only=True)
    assert len(seq) == sum(int(v.any(axis=1).sum()) for v in index_of.values())


def test_vertebra_filter_by_label_and_name(store: Path, catalogue, index_of) -> None:
    label = _shared_vertebra(catalogue)
    column = VERTEBRA_LABELS.index(label)
    holding = [c for c, v in index_of.items() if v[:, column].any()]
    by_label = SliceSequence(store, None, vertebra=label)
    name = ctspine_zarr.vertebrae.VERTEBRA_NAMES[label]
    by_name = SliceSequence(store, None, vertebra=name.lower())
    assert by_label.case_ids == by_name.case_ids == tuple(sorted(holding))
    assert len(by_label) == sum(index_of[c].shape[0] for c in holding)
    only = SliceSequence(store, None, vertebra=name, foreground_only=True)
    assert len(only) == sum(int(index_of[c][:, column].sum()) for c in holding)
    for i in range(0, len(only), 7):
        item = only[i]
        assert index_of[item["patient_id"]][item["slice_index"], column]
        assert (item["segmentation"] == label).any()


def test_source_filter(store: Path, catalogue) -> None:
    source = str(catalogue.source.values[0])
    seq = VolumeSequence(store, None, source=source)
    expected = catalogue.case.values.astype(object)[
        catalogue.source.values.astype(object) == source
    ]
    assert list(seq.case_ids) == list(expected)
    both = VolumeSequence(store, None, source=[source, str(catalogue.source.values[-1])])
    assert len(both) > len(seq)


def test_bad_filters_are_refused(store: Path) -> None:
    with pytest.raises(ValueError, match="split"):
        SliceSequence(store, "training")
    with pytest.raises(ValueError, match="source"):
        SliceSequence(store, None, source="NOPE")
    with pytest.raises(ValueError, match="vertebra"):
        SliceSequence(store, None, vertebra="L9")
    assert parse_vertebra("L3") == parse_vertebra(22) == parse_vertebra("22") == 22
    assert parse_vertebra("sacrum") == 26


def test_index_bounds(store: Path) -> None:
    seq = SliceSequence(store, "validation")
    assert seq[-1]["slice_index"] == seq[len(seq) - 1]["slice_index"]
    with pytest.raises(IndexError):
        seq[len(seq)]
    assert [it["slice_index"] for it in seq[2:5]] == [2, 3, 4]


# -- contents ---------------------------------------------------------------------------------


def test_slice_items_equal_the_store(store: Path, catalogue) -> None:
    seq = SliceSequence(store, None)
    rng = np.random.default_rng(0)
    for i in [0, len(seq) - 1, *rng.integers(0, len(seq), 12).tolist()]:
        item = seq[i]
        case = item["patient_id"]
        image, label = _volume(catalogue, case)
        z = item["slice_index"]
        assert item["index"] == seq.case_ids.index(case)
        assert item["image"].dtype == np.float32 and item["segmentation"].dtype == np.int64
        np.testing.assert_array_equal(item["image"], image[z].astype(np.float32))
        np.testing.assert_array_equal(item["segmentation"], label[z])
        row = catalogue.sel(case=case)
        np.testing.assert_array_equal(
            item["spacing"], [row.spacing_z.item(), row.spacing_y.item(), row.spacing_x.item()]
        )
        np.testing.assert_array_equal(
            item["affine"], catalogue.ctspine.volume(case).attrs["affine"]
        )
    raw = SliceSequence(store, None, image_dtype=None, segmentation_dtype=None)[0]
    assert raw["image"].dtype == np.int16 and raw["segmentation"].dtype == np.uint8


def test_volume_items_equal_the_store(store: Path, catalogue) -> None:
    seq = VolumeSequence(store, None)
    for i in range(len(seq)):
        item = seq[i]
        image, label = _volume(catalogue, item["patient_id"])
        np.testing.assert_array_equal(item["image"], image.astype(np.float32))
        np.testing.assert_array_equal(item["segmentation"], label)


def test_zarr_fallback_and_store_api_paths_give_the_same_items(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lean = SliceSequence(store, None)
    url = SliceSequence(f"local://{store}", None)  # fsspec store: reads through the zarr API
    picks = [0, 3, 40, len(lean) - 1]
    expected = lean.getitems(picks)
    monkeypatch.setattr(slicereader.ShardLayout, "of", classmethod(lambda cls, array: None))
    forget(store)  # readers are cached per process: make new ones
    fallback = SliceSequence(store, None).getitems(picks)  # zarr.Array.__getitem__
    for a, b, c in zip(expected, url.getitems(picks), fallback, strict=True):
        for key in ("image", "segmentation"):
            np.testing.assert_array_equal(a[key], b[key])
            np.testing.assert_array_equal(a[key], c[key])


def test_transform_is_applied(store: Path) -> None:
    seq = SliceSequence(store, None, transform=lambda item: item["image"].mean())
    assert isinstance(seq[0], np.floating)


# -- reads ------------------------------------------------------------------------------------


def _chunk_reads(reads, case: str, array: str) -> list[tuple[str, object]]:
    prefix = f"cases/{case}/{array}/c/"
    return [(k, r) for k, r, _ in reads if k.startswith(prefix)]


def test_a_slice_item_reads_one_chunk_per_array(counting_store) -> None:
    seq = SliceSequence(counting_store, None)
    case = max(seq.case_ids, key=lambda c: int(seq.shapes[seq.case_ids.index(c), 0]))
    first = int(np.flatnonzero(seq.item_case == seq.case_ids.index(case))[0])
    seq[first]  # opens the case (its metadata document) and caches shard 0's index
    counting_store.reads.clear()
    i = first + 33  # slice 33: in the second shard
    item = seq[i]
    assert item["slice_index"] == 33
    for array in ("image", "label"):
        reads = _chunk_reads(counting_store.reads, case, array)
        assert [k for k, _ in reads] == [f"cases/{case}/{array}/c/1/0/0"] * 2
        assert isinstance(reads[0][1], SuffixByteRequest)  # the shard index, once
        assert isinstance(reads[1][1], RangeByteRequest)  # the slice's chunk
    assert len(counting_store.reads) == 4
    counting_store.reads.clear()
    seq[i + 1]  # same shard: the index is cached, one chunk per array
    assert all(isinstance(r, RangeByteRequest) for _, r, _ in counting_store.reads)
    assert len(counting_store.reads) == 2


def test_a_patch_decodes_only_the_tiles_it_touches(counting_tiled_store, monkeypatch) -> None:
    from ctspine_zarr.io.shardformat import ShardLayout

    decoded: list[str] = []
    original = ShardLayout.decode_chunk

    def counting(layout, data, scratch):  # type: ignore[no-untyped-def]
        decoded.append(layout.prefix.rsplit("/", 1)[1])
        return original(layout, data, scratch)

    monkeypatch.setattr(ShardLayout, "decode_chunk", counting)
    size = (6, 16, 16)
    seq = PatchSequence(counting_tiled_store, None, patch_size=size, samples_per_epoch=12, seed=4)
    from conftest import STORE_TILE as tile

    n_foreground = 0
    for i in range(len(seq)):
        for j in range(len(seq.case_ids)):
            seq._arrays(j)
        counting_tiled_store.reads.clear()
        decoded.clear()
        item = seq[i]
        case = item["patient_id"]
        shape = [int(v) for v in seq.shapes[item["index"]]]
        start = [int(v) for v in item["patch_start"]]
        lo = [max(s, 0) for s in start]
        hi = [min(s + n, m) for s, n, m in zip(start, size, shape, strict=True)]
        tiles = (hi[0] - lo[0]) * len(range(lo[1] // tile, -(-hi[1] // tile)))
        tiles *= len(range(lo[2] // tile, -(-hi[2] // tile)))
        # the image: exactly the tiles of the patch box; the label: those of a random patch,
        # at most the whole slices of the z range for a foreground one (the region its
        # window may move to)
        assert decoded.count("image") == tiles
        if item["foreground"]:
            n_foreground += 1
            per_slice = -(-shape[1] // tile) * -(-shape[2] // tile)
            assert tiles <= decoded.count("label") <= (hi[0] - lo[0]) * per_slice
        else:
            assert decoded.count("label") == tiles
        # only the shards of the z range are read
        shards = {f"{s}/0/0" for s in range(lo[0] // 32, (hi[0] - 1) // 32 + 1)}
        for array in ("image", "label"):
            reads = _chunk_reads(counting_tiled_store.reads, case, array)
            assert {k.rsplit("/c/", 1)[1] for k, _ in reads} <= shards
        assert all(k.startswith(f"cases/{case}/") for k, *_ in counting_tiled_store.reads)
    assert 0 < n_foreground < len(seq)


def test_a_volume_reads_each_shard_once(counting_store, catalogue) -> None:
    seq = VolumeSequence(counting_store, None)
    seq._arrays(0)
    counting_store.reads.clear()
    item = seq[0]
    n_shards = -(-item["image"].shape[0] // 32)
    reads = _chunk_reads(counting_store.reads, item["patient_id"], "image")
    assert len(reads) == n_shards and all(r is None for _, r in reads)


# -- pickling, processes ----------------------------------------------------------------------


def test_pickles_without_open_arrays(store: Path) -> None:
    seq = SliceSequence(store, None, foreground_only=True)
    before = seq[5]
    case = seq._arrays(int(before["index"]))  # opened in this process, cached in the module
    assert case is seq._arrays(int(before["index"]))
    data = pickle.dumps(seq)
    assert len(data) < 20_000  # the sequence carries no reader, array or shard index
    copy = pickle.loads(data)
    np.testing.assert_array_equal(copy[5]["image"], before["image"])


def test_a_forked_child_opens_its_own_arrays(store: Path) -> None:
    import multiprocessing

    seq = SliceSequence(store, None)
    expected = seq[7]["image"]  # the parent opened the case: its readers are cached
    ctx = multiprocessing.get_context("fork")
    queue = ctx.SimpleQueue()
    child = ctx.Process(target=_read_in_child, args=(seq, 7, queue))  # inherited, not pickled
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    reopened, got = queue.get()
    assert reopened
    np.testing.assert_array_equal(got, expected)


def _read_in_child(seq: SliceSequence, i: int, queue) -> None:
    parents = list(slicereader._readers.entries.values())  # inherited from the parent process
    item = seq[i]
    mine = seq._arrays(int(item["index"]))
    queue.put((bool(parents) and all(mine is not r for r in parents), item["image"]))


# -- patches ----------------------------------------------------------------------------------


def _patches(store: Path, **kwargs) -> PatchSequence:
    options = {"patch_size": (8, 16, 16), "samples_per_epoch": 60, "seed": 11}
    return PatchSequence(store, None, **{**options, **kwargs})


def test_patches_are_deterministic_under_a_seed(store: Path) -> None:
    a, b = _patches(store), _patches(store)
    items_a = a.getitems(range(len(a)))
    for i in (0, 17, 59):  # item i does not depend on the items read before it
        for key in ("image", "segmentation", "patch_start"):
            np.testing.assert_array_equal(b[i][key], items_a[i][key])
    other = _patches(store, seed=12)
    assert any(
        not np.array_equal(other[i]["patch_start"], items_a[i]["patch_start"]) for i in range(10)
    )
    copy = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(copy[3]["image"], items_a[3]["image"])
    a.set_epoch(1)
    assert a.epoch == 1
    moved = [not np.array_equal(a[i]["patch_start"], items_a[i]["patch_start"]) for i in range(10)]
    assert any(moved)
    a.set_epoch(0)
    np.testing.assert_array_equal(a[3]["image"], items_a[3]["image"])


@pytest.mark.parametrize("fraction", [0.0, 0.33, 1.0])
def test_foreground_fraction_is_exact_and_patches_hold_their_vertebra(
    store: Path, fraction: float
) -> None:
    seq = _patches(store, foreground_fraction=fraction, samples_per_epoch=90)
    for epoch in (0, 1):
        seq.set_epoch(epoch)
        items = seq.getitems(range(len(seq)))
        flags = np.array([it["foreground"] for it in items])
        assert flags.sum() == round(fraction * 90)
        np.testing.assert_array_equal(flags, seq.is_foreground(epoch))
        for it in items:
            assert it["image"].shape == it["segmentation"].shape == (8, 16, 16)
            if it["foreground"]:
                assert it["vertebra"] in VERTEBRA_LABELS
                assert (it["segmentation"] == it["vertebra"]).any()
        with_spine = np.mean([(it["segmentation"] > 0).any() for it in items])
        assert with_spine >= fraction - 0.02


def test_foreground_patches_of_one_vertebra(store: Path, catalogue) -> None:
    label = _shared_vertebra(catalogue)
    seq = _patches(store, vertebra=label, foreground_fraction=0.5, patch_size=(3, 8, 8))
    for it in seq.getitems(range(len(seq))):
        if it["foreground"]:
            assert it["vertebra"] == label and (it["segmentation"] == label).any()


def test_patch_contents_equal_the_store_and_pad_outside(store: Path, catalogue) -> None:
    seq = _patches(store, patch_size=(64, 20, 100), samples_per_epoch=8)
    for it in seq.getitems(range(len(seq))):
        image, label = _volume(catalogue, it["patient_id"])
        start = it["patch_start"]
        size = np.array(it["image"].shape)
        padded_image = np.full(np.array(image.shape) + 2 * size, PAD_IMAGE, np.float32)
        padded_label = np.zeros_like(padded_image, dtype=np.int64)
        inner = tuple(slice(s, s + n) for s, n in zip(size, image.shape, strict=True))
        padded_image[inner], padded_label[inner] = image, label
        window = tuple(slice(s + n, s + n + m) for s, n, m in zip(start, size, size, strict=True))
        np.testing.assert_array_equal(it["image"], padded_image[window])
        np.testing.assert_array_equal(it["segmentation"], padded_label[window])
        assert start[0] < 0 and start[2] < 0  # larger than the volume: centred and padded


def test_patch_arguments_are_checked(store: Path) -> None:
    with pytest.raises(ValueError, match="patch_size"):
        PatchSequence(store, None, patch_size=(8, 8))
    with pytest.raises(ValueError, match="foreground_fraction"):
        PatchSequence(store, None, patch_size=(8, 8, 8), foreground_fraction=1.5)


# -- without torch ----------------------------------------------------------------------------


def test_torch_module_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.delitem(sys.modules, "ctspine_zarr.torch", raising=False)
    with pytest.raises(ImportError, match=r"pip install 'ctspine_zarr\[torch\]'"):
        importlib.import_module("ctspine_zarr.torch")


def test_package_and_sequences_work_without_torch(store: Path) -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import ctspine_zarr\n"
        "from ctspine_zarr.sampling import SliceSequence\n"
        f"seq = SliceSequence({str(store)!r}, None)\n"
        "assert seq[0]['image'].shape == (40, 48)\n"
        "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
