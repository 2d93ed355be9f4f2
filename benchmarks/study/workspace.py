"""The generated files of one run: raw tree, stores and anchors, built once, shared."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.orientations import io_orientation

import ctspine_zarr
from benchmarks.common import time_call
from benchmarks.study.anchors import build_arrow, build_npy
from benchmarks.study.config import Config, log
from benchmarks.study.contenders import Contenders
from benchmarks.study.tree import BenchCase, prepare_tree, read_through, remove_store


class Workspace:
    """The raw tree, the store and the anchors of one run, built when first needed."""

    def __init__(self, root: Path, cfg: Config) -> None:
        self.root = root
        self.cfg = cfg
        self.raw = root / "raw"
        self.stores = root / "stores"
        self.stores.mkdir(parents=True, exist_ok=True)
        self.arrow_dirs = {"2d": root / "arrow-2d", "3d": root / "arrow-3d"}
        self.npy_dir = root / "npy"
        self.store: Path | None = None
        self.compact_store: Path | None = None
        self.built: set[str] = set()
        #: Seconds of the builds done outside the conversion section (not reported as timings).
        self.untimed: dict[str, float] = {}
        self.generate_s: float | None = None
        self.ornt: dict[str, np.ndarray] = {}
        self._cases: list[BenchCase] | None = None
        self._contenders: Contenders | None = None
        self._gzip_index_s: float | None = None
        self._arrow: dict[tuple[str, str], Any] = {}
        self._npy: dict[str, tuple[np.ndarray, np.ndarray]] | None = None

    @property
    def cases(self) -> list[BenchCase]:
        """The cases of the raw tree (generated on first use, or reused from ``--workdir``)."""
        if self._cases is None:
            log("raw tree: generating (or reusing) ...")
            cases, seconds = prepare_tree(self.raw, self.cfg)
            read_through([p for c in cases for p in (c.image_path, c.label_path)])
            self._cases, self.generate_s = cases, seconds
            for case in cases:
                img: Any = nib.load(case.image_path)
                self.ornt[case.case_id] = io_orientation(img.affine)
            log(f"raw tree: {len(cases)} cases, {sum(c.n_z for c in cases)} slices")
        return self._cases

    def ensure_store(self) -> Path:
        """The store (ingested untimed, 2 workers, when the conversion section did not run)."""
        if self.store is None:
            self.store = self._ingest_untimed("store.zarr", "default", "ingest")
        return self.store

    def ensure_compact_store(self) -> Path:
        """The store written with ``codec="compact"`` (ingested untimed, 2 workers)."""
        if self.compact_store is None:
            self.compact_store = self._ingest_untimed(
                "store-compact.zarr", "compact", "ingest_compact"
            )
        return self.compact_store

    def _ingest_untimed(self, name: str, codec: str, key: str) -> Path:
        cases = self.cases
        store = self.stores / name
        remove_store(store)
        log(f"{name}: ingesting (untimed, codec {codec}) ...")
        seconds, report = time_call(
            lambda: ctspine_zarr.ingest(self.raw, store, workers=2, codec=codec, progress=False)
        )
        if not report.ok or report.catalogue_cases != len(cases):
            raise RuntimeError(report.summary())
        self.untimed[key] = seconds
        return store

    def ensure_arrow(self, mode: str) -> Path:
        """The Arrow table of ``mode`` (built untimed when not built by the conversion)."""
        key = f"arrow-{mode}"
        if key not in self.built:
            log(f"Arrow {mode}: building (untimed) ...")
            self.untimed[key] = build_arrow(self.cases, self.arrow_dirs[mode], mode, self.cfg.shape)
            self.built.add(key)
        return self.arrow_dirs[mode]

    def ensure_npy(self) -> Path:
        """The .npy files (written untimed when not written by the conversion)."""
        if "npy" not in self.built:
            log(".npy: writing (untimed) ...")
            self.untimed["npy"] = build_npy(self.cases, self.npy_dir)
            self.built.add("npy")
        return self.npy_dir

    def arrow(self, mode: str, fmt: str) -> Any:
        """The saved Arrow table, memory-mapped (``load_from_disk``), in format ``fmt``."""
        import datasets

        key = (mode, fmt)
        if key not in self._arrow:
            table = datasets.load_from_disk(str(self.ensure_arrow(mode)))
            self._arrow[key] = table.with_format(fmt)
        return self._arrow[key]

    def drop_arrow(self, mode: str) -> None:
        """Forget the opened tables of ``mode`` so that their memory maps are released."""
        for key in [k for k in self._arrow if k[0] == mode]:
            del self._arrow[key]
        gc.collect()

    def npy(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{case_id: (image, label)}`` memmaps, opened once."""
        if self._npy is None:
            folder = self.ensure_npy()
            self._npy = {
                c.case_id: (
                    np.load(folder / f"{c.case_id}.image.npy", mmap_mode="r"),
                    np.load(folder / f"{c.case_id}.label.npy", mmap_mode="r"),
                )
                for c in self.cases
            }
        return self._npy

    def contenders(self) -> Contenders:
        """The catalogue, zarr arrays and kept-open NIfTI files; gzip seek indexes built."""
        if self._contenders is None:
            self._contenders = Contenders(self.ensure_store(), self.cases)
            self._gzip_index_s = self._contenders.build_gzip_indexes()
        return self._contenders

    def anchors(self, arrow_mode: str) -> tuple[Contenders, Any, dict[str, Any]]:
        """The kept-open NIfTI readers, the Arrow ``arrow_mode`` table and the .npy memmaps."""
        return self.contenders(), self.arrow(arrow_mode, "numpy"), self.npy()

    @property
    def gzip_index_s(self) -> float | None:
        """Seconds it took to build indexed_gzip's seek indexes of every file (None: not yet)."""
        return self._gzip_index_s

    def close(self) -> None:
        """Close the kept-open files."""
        if self._contenders is not None:
            self._contenders.close()
        self._arrow.clear()
        self._npy = None
