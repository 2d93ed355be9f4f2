"""The anchors built from the raw tree, and index arithmetic between their coordinates.

* a Hugging Face datasets **Arrow** table built as the CTSpine1K loading script builds it, in
  its ``2d`` (one row per slice) and ``3d`` (one row per volume) configurations: float32
  image, int32 segmentation (``get_fdata()`` transposed to ``(z, x, y)``), written with
  ``Dataset.from_generator`` + ``save_to_disk``;
* an uncompressed **.npy** file per case and array (canonical ``[z, y, x]``).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from benchmarks.study.tree import BenchCase


def arrow_features(mode: str, shape: tuple[int, int]) -> Any:
    """The CTSpine1K script's features: ``2d`` (Array2D rows) or ``3d`` (Array3D rows)."""
    import datasets

    if mode == "3d":
        return datasets.Features(
            {
                "image": datasets.Array3D(shape=(None, *shape), dtype="float32"),
                "segmentation": datasets.Array3D(shape=(None, *shape), dtype="int32"),
                "patient_id": datasets.Value("string"),
                "index": datasets.Value("int32"),
            }
        )
    return datasets.Features(
        {
            "image": datasets.Array2D(shape=shape, dtype="float32"),
            "segmentation": datasets.Array2D(shape=shape, dtype="int32"),
            "patient_id": datasets.Value("string"),
            "index": datasets.Value("int32"),
            "slice_index": datasets.Value("int32"),
        }
    )


def script_volume(path: str, reorient: bool) -> np.ndarray:
    """As the CTSpine1K script: ``get_fdata()`` transposed to ``(k, i, j)``.

    ``reorient``: first bring the file to closest-canonical orientation. Only for a file whose
    third axis is not axial (the sagittal variant): the script would make its rows
    ``512 x n_z`` and its Array2D/Array3D features would refuse them.
    """
    img: Any = nib.load(path)
    if reorient:
        img = nib.as_closest_canonical(img)
    return np.transpose(img.get_fdata(), (2, 0, 1))


def arrow_rows(specs: list[tuple[str, str, str, bool]], mode: str) -> Iterator[dict[str, Any]]:
    """The script's ``_generate_examples``: one row per volume (3d) or per axial slice (2d)."""
    for pair_idx, (image_path, label_path, patient_id, reorient) in enumerate(specs):
        image = script_volume(image_path, reorient)
        segmentation = script_volume(label_path, reorient).astype(np.uint32)
        if mode == "3d":
            yield {
                "image": image,
                "segmentation": segmentation,
                "patient_id": patient_id,
                "index": pair_idx,
            }
            continue
        for idx in range(image.shape[0]):
            yield {
                "image": image[idx],
                "segmentation": segmentation[idx],
                "patient_id": patient_id,
                "index": pair_idx,
                "slice_index": idx,
            }


def build_arrow(cases: Sequence[BenchCase], out: Path, mode: str, shape: tuple[int, int]) -> float:
    """Build and save the Arrow table of ``cases``; return the seconds (generate + save)."""
    specs = [(c.image_path, c.label_path, c.case_id, c.axial_axis != 2) for c in cases]
    return save_arrow(specs, out, mode, shape)


def save_arrow(
    specs: list[tuple[str, str, str, bool]], out: Path, mode: str, shape: tuple[int, int]
) -> float:
    """Build and save the table of ``(image, label, patient_id, reorient)`` rows; seconds."""
    import datasets

    datasets.disable_progress_bars()
    cache = out.with_name(out.name + "-cache")
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    start = time.perf_counter()
    table = datasets.Dataset.from_generator(
        arrow_rows,
        features=arrow_features(mode, shape),
        gen_kwargs={"specs": specs, "mode": mode},
        cache_dir=str(cache),
        writer_batch_size=16 if mode == "2d" else 1,
    )
    table.save_to_disk(str(out))
    seconds = time.perf_counter() - start
    del table
    shutil.rmtree(cache, ignore_errors=True)
    return seconds


def build_npy(cases: Sequence[BenchCase], out: Path) -> float:
    """Write each case as C-ordered canonical ``[z, y, x]`` .npy files; return the seconds.

    The files are read with ``ctspine_zarr.io.nifti.read_pair`` (what the ingest reads with: exact
    values, canonical orientation), so this is the ingest without compression or metadata.
    """
    from ctspine_zarr.io.nifti import read_pair

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    start = time.perf_counter()
    for case in cases:
        image, label = read_pair(case.image_path, case.label_path, case_id=case.case_id)
        np.save(out / f"{case.case_id}.image.npy", np.ascontiguousarray(image.data))
        np.save(out / f"{case.case_id}.label.npy", np.ascontiguousarray(label.data))
    return time.perf_counter() - start


# --------------------------------------------------------------------------------------------
# Index arithmetic: one store box in file and Arrow coordinates
# --------------------------------------------------------------------------------------------

Box = tuple[slice, slice, slice]


def clip_box(start: Sequence[int], size: Sequence[int], shape: Sequence[int]) -> Box:
    """The part of the box at ``start`` of ``size`` inside ``shape`` (store ``[z, y, x]``)."""
    z, y, x = (
        slice(max(int(s), 0), min(int(s) + int(k), int(n)))
        for s, k, n in zip(start, size, shape, strict=True)
    )
    return z, y, x


def file_box(case: BenchCase, ornt: np.ndarray, box: Box) -> Box:
    """The file index box holding store box ``box`` (``stored[z, y, x] == canonical[x, y, z]``)."""
    ras = {0: box[2], 1: box[1], 2: box[0]}
    out = []
    for axis in range(3):
        piece = ras[int(ornt[axis, 0])]
        n = case.file_shape[axis]
        out.append(slice(n - piece.stop, n - piece.start) if ornt[axis, 1] < 0 else piece)
    return out[0], out[1], out[2]


def arrow_box(case: BenchCase, ornt: np.ndarray, box: Box) -> Box:
    """The box of an Arrow 3d row (the file transposed ``(2, 0, 1)``) holding store box ``box``."""
    if case.axial_axis == 2:
        fb = file_box(case, ornt, box)
        return fb[2], fb[0], fb[1]
    return box[0], box[2], box[1]  # reoriented: canonical [x, y, z] transposed to [z, x, y]


def arrow_slice(case: BenchCase, z: int) -> int:
    """Index ``k`` within the case's Arrow 2d rows of store slice ``z``."""
    if case.axial_axis == 2:
        return case.n_z - 1 - z if case.axial_flip else z
    return z


def same_values(a: Any, b: Any) -> bool:
    """Whether two arrays hold the same multiset of values (orientation-free comparison)."""
    x = np.sort(np.asarray(a, dtype=np.float64), axis=None)
    y = np.sort(np.asarray(b, dtype=np.float64), axis=None)
    return x.shape == y.shape and bool(np.array_equal(x, y))
