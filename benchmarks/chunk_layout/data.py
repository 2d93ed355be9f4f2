"""The benchmark's inputs and candidate stores.

:func:`prepare` synthesises CTSpine1K-like 512 x 512 cases, ingests them with the package
(today's layout, default and ``--codec compact``) and, when pydicom-data is installed, does
the same with its two real CT slices. :func:`build_candidates` rewrites the same voxels
into each candidate layout with each array's own codecs (:mod:`.lean`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr

import ctspine_zarr
from benchmarks.common import fresh_tree, remove_store

from .lean import create_like, write_tiled

__all__ = [
    "Candidate",
    "Case",
    "Config",
    "Inputs",
    "array_bytes",
    "build_candidates",
    "chunk_name",
    "prepare",
    "resolve",
]

#: A candidate inner chunk; 0 along y or x means "the whole plane" (today's ``(1, Y, X)``).
Chunk = tuple[int, int, int]

#: The image codecs of the codec-lever rows: Blosc LZ4 (bit shuffle), which decodes about
#: four times as fast as the store's Blosc zstd for about 10 % more bytes.
LEVER_CODEC: tuple[dict[str, Any], ...] = (
    {"name": "bytes", "configuration": {"endian": "little"}},
    {
        "name": "blosc",
        "configuration": {
            "cname": "lz4",
            "clevel": 5,
            "shuffle": "bitshuffle",
            "typesize": 2,
            "blocksize": 0,
        },
    },
    {"name": "crc32c"},
)
LEVER_NAME = "image Blosc lz4-5"


@dataclass(frozen=True)
class Config:
    """What one run measures."""

    n_cases: int = 4
    shape: tuple[int, int] = (512, 512)
    n_slices: tuple[int, int] = (120, 220)
    layouts: tuple[Chunk, ...] = (
        (1, 0, 0),
        (1, 128, 128),
        (1, 64, 64),
        (4, 128, 128),
        (4, 64, 64),
        (8, 64, 64),
    )
    patches: tuple[Chunk, Chunk] = ((64, 128, 128), (128, 128, 128))
    repeats: int = 5
    slice_picks: int = 12
    patch_picks: int = 6
    big_patch_picks: int = 3
    loader_patches: int = 48
    loader_batch: int = 2
    sequence_picks: int = 4
    #: Layouts also measured with the image in :data:`LEVER_CODEC` (a codec lever, not a
    #: candidate of the same codecs).
    lever: tuple[Chunk, ...] = ((4, 128, 128), (8, 64, 64))
    seed: int = 18
    threads: int = 2
    real_ct: bool = True

    @classmethod
    def quick(cls, repeats: int) -> Config:
        """Tiny inputs: two cases of 120 x 136 (partial edge tiles), tiles a quarter the size,
        no real CT slices."""
        return cls(
            n_cases=2,
            shape=(120, 136),
            n_slices=(34, 50),
            layouts=((1, 0, 0), (1, 32, 32)),
            lever=((4, 32, 32),),
            patches=((16, 32, 32), (32, 32, 32)),
            repeats=repeats,
            slice_picks=3,
            patch_picks=3,
            big_patch_picks=2,
            loader_patches=4,
            sequence_picks=2,
            real_ct=False,
        )


def resolve(chunk: Chunk, shape: tuple[int, ...]) -> Chunk:
    """``chunk`` with a 0 replaced by the array's extent (the whole plane)."""
    return (chunk[0], chunk[1] or int(shape[1]), chunk[2] or int(shape[2]))


def chunk_name(chunk: Chunk) -> str:
    """``(1, Y, X)``, ``(4, 128, 128)``, ..."""
    y = "Y" if chunk[1] == 0 else str(chunk[1])
    x = "X" if chunk[2] == 0 else str(chunk[2])
    return f"({chunk[0]}, {y}, {x})"


def _slug(chunk: Chunk) -> str:
    return "x".join(str(n) if n else "full" for n in chunk)


@dataclass
class Case:
    """One case: its voxels (the truth every read is checked against) and its sources."""

    case_id: str
    image: np.ndarray
    label: np.ndarray
    image_array: zarr.Array  # today's layout, default codec
    label_array: zarr.Array
    compact_image: zarr.Array | None  # today's layout, --codec compact
    nii_bytes: int  # the .nii.gz pair
    codec: str  # the image codec the ingest chose


@dataclass
class Inputs:
    """The synthetic and real cases, today's stores, and what ingesting them cost."""

    cases: list[Case]
    real: list[Case]
    store: Path
    compact_store: Path
    ingest_seconds: float
    compact_ingest_seconds: float
    store_bytes: int
    notes: list[str] = field(default_factory=list)


def _load(store: Path, compact: Path | None, nii: dict[str, int]) -> list[Case]:
    ds = ctspine_zarr.open(store)
    out = []
    for case_id in ds.ctspine.case_ids():
        group = zarr.open_group(store, path=f"cases/{case_id}", mode="r")
        image, label = group["image"], group["label"]
        assert isinstance(image, zarr.Array) and isinstance(label, zarr.Array)
        compact_image = None
        if compact is not None:
            other = zarr.open_group(compact, path=f"cases/{case_id}", mode="r")["image"]
            assert isinstance(other, zarr.Array)
            compact_image = other
        out.append(
            Case(
                case_id,
                np.asarray(image[...]),
                np.asarray(label[...]),
                image,
                label,
                compact_image,
                nii[case_id],
                str(group.attrs.get("image_codec")),
            )
        )
    return out


def _ingest(raw: Path, store: Path, codec: str) -> float:
    remove_store(store)
    start = time.perf_counter()
    report = ctspine_zarr.ingest(raw, store, workers=2, progress=False, codec=codec)
    seconds = time.perf_counter() - start
    if not report.ok:
        raise RuntimeError(report.summary())
    return seconds


def _real_tree(raw: Path) -> dict[str, int] | None:
    """pydicom-data's two real 512 x 512 CT slices as one-slice NIfTI pairs; None without it."""
    try:
        import nibabel as nib

        from benchmarks.codecs.data import load_real_slices

        slices = load_real_slices()
    except (ImportError, RuntimeError):
        return None
    fresh_tree(raw)
    sizes = {}
    for s in slices:
        image_path = raw / "rawdata" / "volumes" / "COLONOG" / f"{s.name}.nii.gz"
        label_path = raw / "rawdata" / "labels" / "COLONOG" / f"{s.name}_seg.nii.gz"
        image_path.parent.mkdir(parents=True, exist_ok=True)
        label_path.parent.mkdir(parents=True, exist_ok=True)
        xyz = np.ascontiguousarray(s.hu.transpose(2, 1, 0)).astype(np.int16)
        nib.save(nib.Nifti1Image(xyz, np.eye(4)), image_path)
        nib.save(nib.Nifti1Image(np.zeros(xyz.shape, dtype=np.uint8), np.eye(4)), label_path)
        sizes[s.name] = os.path.getsize(image_path) + os.path.getsize(label_path)
    return sizes


def prepare(folder: Path, cfg: Config) -> Inputs:
    """Write the raw trees, ingest them (default and compact) and load the voxels."""
    from benchmarks.common import dir_bytes
    from ctspine_zarr.testing.synthetic import make_raw_tree

    raw = fresh_tree(folder / "raw")
    written = make_raw_tree(
        raw, n_cases=cfg.n_cases, shape=cfg.shape, n_slices=cfg.n_slices, seed=cfg.seed
    )
    nii = {
        c.case_id: os.path.getsize(c.image_path) + os.path.getsize(c.label_path) for c in written
    }
    store, compact = folder / "today.zarr", folder / "today-compact.zarr"
    seconds = _ingest(raw, store, "default")
    compact_seconds = _ingest(raw, compact, "compact")
    cases = _load(store, compact, nii)
    real: list[Case] = []
    real_nii = _real_tree(folder / "raw-realct") if cfg.real_ct else None
    notes = []
    if not cfg.real_ct:
        notes.append("real CT: left out (--quick)")
    elif real_nii is None:
        notes.append("real CT: pydicom-data is not installed here; its rows are left out")
    else:
        real_store, real_compact = folder / "realct.zarr", folder / "realct-compact.zarr"
        _ingest(folder / "raw-realct", real_store, "default")
        _ingest(folder / "raw-realct", real_compact, "compact")
        real = _load(real_store, real_compact, real_nii)
    return Inputs(cases, real, store, compact, seconds, compact_seconds, dir_bytes(store), notes)


def array_bytes(array: zarr.Array) -> int:
    """Bytes of an array's shard objects (its ``zarr.json`` excluded); local stores only."""
    root = Path(array.store_path.store.root) / array.store_path.path  # type: ignore[attr-defined]
    total = 0
    for dirpath, _, files in os.walk(root):
        total += sum(os.path.getsize(os.path.join(dirpath, f)) for f in files if f != "zarr.json")
    return total


@dataclass
class Candidate:
    """One inner chunk shape, the same voxels rewritten into it (default and compact)."""

    chunk: Chunk
    name: str
    root: Path
    arrays: dict[str, tuple[zarr.Array, zarr.Array]]
    compact_images: dict[str, zarr.Array]
    rewrite_seconds: float = 0.0
    image_codecs: tuple[dict[str, Any], ...] | None = None  # None: the source's

    def bytes(self, compact: bool = False) -> int:
        """Image and label bytes of every case (the compact image with the default label)."""
        total = 0
        for case_id, (image, label) in self.arrays.items():
            if compact:
                if case_id not in self.compact_images:
                    return 0
                image = self.compact_images[case_id]
            total += array_bytes(image) + array_bytes(label)
        return total


def build_candidates(
    folder: Path,
    cases: list[Case],
    layouts: tuple[Chunk, ...],
    tag: str,
    threads: int,
    lever: tuple[Chunk, ...] = (),
) -> list[Candidate]:
    """Rewrite ``cases`` into every layout, in ``folder/<tag>-<layout>[-compact].zarr``.

    The ``lever`` layouts come after, their images in :data:`LEVER_CODEC` (no compact copy).
    """
    out = []
    plans = [(chunk, None) for chunk in layouts] + [(chunk, LEVER_CODEC) for chunk in lever]
    for chunk, codecs in plans:
        slug = _slug(chunk) + ("-lz4" if codecs else "")
        root = folder / f"{tag}-{slug}.zarr"
        group = zarr.open_group(root, mode="w")
        compact_group = zarr.open_group(folder / f"{tag}-{slug}-compact.zarr", mode="w")
        arrays, compact = {}, {}
        seconds = 0.0
        for case in cases:
            image = create_like(
                group,
                f"{case.case_id}/image",
                case.image_array,
                resolve(chunk, case.image.shape),
                codecs=codecs,
            )
            label = create_like(
                group, f"{case.case_id}/label", case.label_array, resolve(chunk, case.label.shape)
            )
            start = time.perf_counter()
            write_tiled(image, case.image, threads=threads)
            write_tiled(label, case.label, threads=threads)
            seconds += time.perf_counter() - start
            arrays[case.case_id] = (image, label)
            if case.compact_image is not None and codecs is None:
                small = create_like(
                    compact_group,
                    f"{case.case_id}/image",
                    case.compact_image,
                    resolve(chunk, case.image.shape),
                )
                write_tiled(small, case.image, threads=threads)
                compact[case.case_id] = small
        name = chunk_name(chunk) + (f", {LEVER_NAME}" if codecs else "")
        out.append(Candidate(chunk, name, root, arrays, compact, seconds, codecs))
    return out


def open_with(candidate: Candidate, pipeline: str | None) -> dict[str, tuple[Any, Any]] | None:
    """The candidate's arrays opened with another codec pipeline; None if it is not installed."""
    try:
        with zarr.config.set({"codec_pipeline.path": pipeline} if pipeline else {}):
            out = {}
            for case_id in candidate.arrays:
                group = zarr.open_group(candidate.root, path=case_id, mode="r")
                out[case_id] = (group["image"], group["label"])
            return out
    except Exception:  # noqa: BLE001 - the pipeline is not installed or not registered here
        return None
