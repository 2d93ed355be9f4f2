"""The chunk-layout benchmark (issue #18): its lean prototype reads exactly what zarr reads.

Correctness only, never timings: the prototype reader (:mod:`benchmarks.chunk_layout.lean`)
must return zarr's values for slices and boxes of every candidate layout, whoever wrote the
shards (the prototype's writer in C order, zarr-python in Morton order), and the ``--quick``
run of the benchmark must go through on tiny inputs and delete only what it wrote.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr

from benchmarks.chunk_layout.data import Config, resolve
from benchmarks.chunk_layout.lean import LeanArray, create_like, read_many, shard_runs, write_tiled
from benchmarks.chunk_layout.run import main
from ctspine_zarr.schema import image_encoding, label_compressors

#: A small volume whose plane is not a multiple of any tile (partial edge tiles in y and x)
#: and whose last shard is partial (70 = 2 x 32 + 6 slices).
SHAPE = (70, 136, 200)


def _volumes(seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    image = (400 * np.sin(xx / 9.0) * np.cos(yy / 13.0) + 30 * zz).astype(np.int16)
    image += rng.integers(-40, 40, SHAPE, dtype=np.int16)
    label = np.zeros(SHAPE, np.uint8)
    label[(yy - 68) ** 2 + (xx - 100) ** 2 < 900] = 20
    label[10:40, 50:90, 150:200] = 21
    return image, label


def _sources(
    root: Path, image: np.ndarray, label: np.ndarray, codec: str
) -> tuple[zarr.Array, zarr.Array]:
    """The two arrays in today's layout (as the ingest creates them), written by zarr."""
    group = zarr.open_group(root, mode="w")
    common = {
        "chunks": (1, *SHAPE[1:]),
        "shards": (32, *SHAPE[1:]),
        "fill_value": 0,
        "config": {"write_empty_chunks": True},
    }
    source_image = group.create_array(
        "image", shape=SHAPE, dtype="int16", **image_encoding(codec), **common
    )
    source_label = group.create_array(
        "label", shape=SHAPE, dtype="uint8", compressors=label_compressors(), **common
    )
    source_image[...] = image
    source_label[...] = label
    return source_image, source_label


def _boxes(rng: np.random.Generator, n: int) -> list[tuple[tuple[int, int], ...]]:
    boxes = [
        ((28, 40), (60, 136), (60, 200)),  # crosses a shard border and tile borders
        ((62, 70), (0, 136), (190, 200)),  # the last, partial shard; partial edge tiles
        ((0, 70), (0, 136), (0, 200)),  # the whole volume
        ((31, 33), (127, 129), (63, 65)),  # 2 voxels across every border at once
    ]
    for _ in range(n):
        box = []
        for size in SHAPE:
            lo = int(rng.integers(0, size))
            box.append((lo, int(rng.integers(lo + 1, size + 1))))
        boxes.append(tuple(box))
    return boxes


LAYOUTS = Config().layouts  # every full-size candidate, (1, Y, X) included


@pytest.mark.parametrize("chunk", LAYOUTS, ids=[str(c) for c in LAYOUTS])
def test_the_lean_reader_returns_zarrs_values_for_every_candidate_layout(
    tmp_path: Path, chunk: tuple[int, int, int]
) -> None:
    image, label = _volumes()
    source_image, source_label = _sources(tmp_path / "today.zarr", image, label, "default")
    group = zarr.open_group(tmp_path / "candidate.zarr", mode="w")
    rng = np.random.default_rng(sum(chunk))
    boxes = _boxes(rng, 8)
    slices = (0, 31, 32, 63, 64, SHAPE[0] - 1)
    for writer in ("lean", "zarr"):
        arrays = []
        for name, source, data in (("image", source_image, image), ("label", source_label, label)):
            array = create_like(group, f"{writer}/{name}", source, resolve(chunk, data.shape))
            if writer == "lean":
                write_tiled(array, data, threads=2)
            else:
                array[...] = data  # zarr-python's own writer (Morton order in the shard)
            arrays.append(array)
        # what zarr reads, once per writer (it must be what was written)
        by_zarr = {
            box: [a[tuple(slice(lo, hi) for lo, hi in box)] for a in arrays]
            for box in [*boxes, *(((z, z + 1), (0, SHAPE[1]), (0, SHAPE[2])) for z in slices)]
        }
        for box, values in by_zarr.items():
            sel = tuple(slice(lo, hi) for lo, hi in box)
            assert np.array_equal(values[0], image[sel]) and np.array_equal(values[1], label[sel])
        for threads, gap in ((1, 0), (2, 0), (2, 1 << 20)):
            readers = [LeanArray(a, threads=threads, max_gap=gap) for a in arrays]
            for z in slices:
                expected = by_zarr[((z, z + 1), (0, SHAPE[1]), (0, SHAPE[2]))]
                for reader, values in zip(readers, expected, strict=True):
                    assert np.array_equal(reader.read_slice(z), values[0]), (writer, z)
            for box in boxes:
                shape = tuple(hi - lo for lo, hi in box)
                outs = [np.empty(shape, r.dtype) for r in readers]
                got = read_many([(r, box, o) for r, o in zip(readers, outs, strict=True)])
                for values, out, expected in zip(got, outs, by_zarr[box], strict=True):
                    assert values is out  # decoded into the preallocated array
                    assert np.array_equal(values, expected), (writer, threads, gap, box)


def test_the_lean_reader_decodes_compact_chunks_of_tiles(tmp_path: Path) -> None:
    pytest.importorskip("imagecodecs")
    image, label = _volumes(seed=5)
    source_image, _ = _sources(tmp_path / "today.zarr", image, label, "compact")
    group = zarr.open_group(tmp_path / "candidate.zarr", mode="w")
    for chunk in ((1, 64, 64), (4, 128, 128)):
        array = create_like(group, f"{chunk}", source_image, chunk)
        write_tiled(array, image)
        reader = LeanArray(array, threads=2)
        for box in _boxes(np.random.default_rng(9), 4):
            sel = tuple(slice(lo, hi) for lo, hi in box)
            assert np.array_equal(reader.read(box), array[sel])


def test_the_lean_writer_lays_a_slice_out_as_one_range(tmp_path: Path) -> None:
    image, label = _volumes()
    source_image, _ = _sources(tmp_path / "today.zarr", image, label, "default")
    group = zarr.open_group(tmp_path / "candidate.zarr", mode="w")
    lean = create_like(group, "lean", source_image, (1, 64, 64))
    write_tiled(lean, image)
    by_zarr = create_like(group, "zarr", source_image, (1, 64, 64))
    by_zarr[...] = image
    readers = [LeanArray(lean), LeanArray(by_zarr)]
    for reader in readers:
        reader.read(((0, 1), (0, SHAPE[1]), (0, SHAPE[2])))  # caches shard 0's index
    ours, theirs = readers[0]._index[0], readers[1]._index[0]
    # the same encoded chunks (so the same bytes), ours in C order of the chunk grid
    assert np.array_equal(ours[:, 1], theirs[:, 1])
    assert (np.diff(ours[:, 0].astype(np.int64)) > 0).all()
    raw_ours = (tmp_path / "candidate.zarr" / "lean" / "c" / "0" / "0" / "0").read_bytes()
    raw_theirs = (tmp_path / "candidate.zarr" / "zarr" / "c" / "0" / "0" / "0").read_bytes()
    for (o1, n1), (o2, n2) in zip(ours.tolist(), theirs.tolist(), strict=True):
        assert raw_ours[o1 : o1 + n1] == raw_theirs[o2 : o2 + n2]
    for z in range(32):
        (entries,) = readers[0].chunks_of(((z, z + 1), (0, SHAPE[1]), (0, SHAPE[2]))).values()
        assert len(shard_runs(ours, [e[0] for e in entries])) == 1


def test_the_quick_benchmark_runs_and_deletes_only_what_it_wrote(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    foreign = tmp_path / "foreign"
    (foreign / "raw").mkdir(parents=True)
    (foreign / "raw" / "keep.txt").write_text("not the benchmark's")
    with pytest.raises(SystemExit, match="no benchmark wrote it"):
        main(["--quick", "--repeats", "1", "--workdir", str(foreign)])
    assert (foreign / "raw" / "keep.txt").read_text() == "not the benchmark's"
    capsys.readouterr()

    out = tmp_path / "numbers.json"
    assert (
        main(["--quick", "--repeats", "1", "--workdir", str(tmp_path / "w"), "--json", str(out)])
        == 0
    )
    printed = capsys.readouterr().out
    numbers = json.loads(out.read_text())
    names = list(numbers["bytes"])
    quick = Config.quick(1)
    assert names[0] == "(1, Y, X)" and len(names) == len(quick.layouts) + len(quick.lever)
    for name in names:
        assert f"| {name} " in printed
        assert numbers["bytes"][name]["default"] > 0
        columns = {
            t["column"] for t in numbers["times"] if t["row"] == name and t["op"] == "patch_a"
        }
        assert {"zarr", "lean", "lean 1 thread"} <= columns
    requests = {(r["row"], r["read"]): r["requests_per_array"] for r in numbers["requests"]}
    for name in names:  # a slice: the shard index and one range, then one range
        assert requests[name, "slice lean cold"] == 2
        assert requests[name, "slice lean warm"] == 1
        assert requests[name, "patch lean merged warm"] == 1
    assert requests["(1, Y, X)", "slice zarr"] == 2  # zarr too: the index, the chunk
