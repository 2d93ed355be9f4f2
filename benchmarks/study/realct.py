"""Section ``realct``: pydicom-data's real CT slices as NIfTI pairs, ingested, bytes compared."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

import ctspine_zarr
from benchmarks.common import dir_bytes, fmt_ratio, markdown_table, ratio
from benchmarks.study.results import Ratio, Section
from benchmarks.study.tree import remove_store
from benchmarks.study.workspace import Workspace
from ctspine_zarr.schema import IMAGE_CODEC_CHOICES


def section_realct(ws: Workspace, sec: Section) -> None:
    """pydicom-data's real CT slices as one-slice NIfTI pairs, ingested: bytes vs .nii.gz."""
    import zarr

    from benchmarks.codecs.data import data_store_dir, load_real_slices

    raw = ws.root / "raw-realct"
    store = ws.stores / "realct.zarr"
    shutil.rmtree(raw, ignore_errors=True)
    remove_store(store)
    slices = load_real_slices()
    files: dict[str, Path] = {}
    for s in slices:
        image_path = raw / "rawdata" / "volumes" / "COLONOG" / f"{s.name}.nii.gz"
        label_path = raw / "rawdata" / "labels" / "COLONOG" / f"{s.name}_seg.nii.gz"
        image_path.parent.mkdir(parents=True, exist_ok=True)
        label_path.parent.mkdir(parents=True, exist_ok=True)
        xyz = np.ascontiguousarray(s.hu.transpose(2, 1, 0))  # (512, 512, 1): file order x, y, z
        image = nib.Nifti1Image(xyz.astype(np.int16), np.eye(4))
        image.header.set_data_dtype(np.int16)
        nib.save(image, image_path)
        nib.save(nib.Nifti1Image(np.zeros(xyz.shape, dtype=np.uint8), np.eye(4)), label_path)
        files[s.name] = image_path
    rows = []
    numbers: dict[str, Any] = {}
    for codec_name in IMAGE_CODEC_CHOICES:
        codec_store = store if codec_name == "default" else ws.stores / f"realct-{codec_name}.zarr"
        remove_store(codec_store)
        report = ctspine_zarr.ingest(raw, codec_store, workers=1, progress=False, codec=codec_name)
        if not report.ok:
            raise RuntimeError(report.summary())
        for s in slices:
            path = files[s.name]
            nii = os.path.getsize(path)
            payload = gzip.decompress(path.read_bytes())
            gz6 = len(gzip.compress(payload, compresslevel=6, mtime=0))
            image_dir = codec_store / "cases" / s.name / "image"
            meta_bytes = sum(p.stat().st_size for p in image_dir.glob("zarr.json"))
            data_bytes = dir_bytes(image_dir) - meta_bytes
            group = zarr.open_group(codec_store, path=f"cases/{s.name}", mode="r")
            array = group["image"]
            assert isinstance(array, zarr.Array)
            exact = bool(np.array_equal(array[:], s.hu))
            codec = str(group.attrs["image_codec"])  # recorded by the ingest
            numbers.setdefault(codec_name, {})[s.name] = {
                "nii_gz_bytes": nii,
                "nii_gz6_bytes": gz6,
                "raw_nii_bytes": len(payload),
                "store_image_data_bytes": data_bytes,
                "store_image_metadata_bytes": meta_bytes,
                "ratio_vs_nibabel": ratio(data_bytes, nii),
                "ratio_vs_gzip6": ratio(data_bytes, gz6),
                "codec": codec,
                "exact": exact,
            }
            kind = "original" if s.name.endswith("UNCR") else "lossy copy of UNCR"
            rows.append(
                [
                    f"{s.name} ({kind})",
                    codec_name,
                    str(nii),
                    str(gz6),
                    str(data_bytes),
                    fmt_ratio(ratio(data_bytes, nii), 3),
                    fmt_ratio(ratio(data_bytes, gz6), 3),
                    str(meta_bytes),
                    codec,
                    "yes" if exact else "NO",
                ]
            )
    sec.lines += [
        f"pydicom-data's 512x512 CT slices ({data_store_dir()}), HU = pixel x RescaleSlope + "
        "RescaleIntercept as int16, each written with nibabel as a one-slice NIfTI "
        "(512x512x1) with an all-zero label, ingested with the default (portable) codec and "
        "with the compact one (`--codec compact`, lossless JPEG-LS). "
        "Store image bytes are the image's shard file (chunk, checksum, shard index); its "
        "array zarr.json is shown apart. nibabel writes gzip level 1; the gzip -6 column is "
        "the same .nii recompressed at level 6 (the baseline of docs/codecs.md). Judge on "
        "693_UNCR: 693_UNCI is a lossy derivative of the same slice (see docs/codecs.md).",
        "",
        markdown_table(
            [
                "slice",
                "--codec",
                ".nii.gz (nibabel) B",
                ".nii.gz gzip -6 B",
                "store image B",
                "/ .nii.gz (nibabel)",
                "/ .nii.gz gzip -6",
                "image zarr.json B",
                "codec chosen",
                "exact",
            ],
            rows,
        ),
    ]
    sec.data = numbers
    pairs = {"default": ("2a", "2b"), "compact": ("2c", "2d")}
    for codec_name, (vs_nii, vs_gz6) in pairs.items():
        found = numbers.get(codec_name, {})
        uncr = found.get("693_UNCR")
        if uncr is None:
            continue
        for number, key in ((vs_nii, "ratio_vs_nibabel"), (vs_gz6, "ratio_vs_gzip6")):
            value = uncr[key]
            unci = fmt_ratio(found.get("693_UNCI", {}).get(key), 3)
            note = "" if uncr["exact"] else "; NOT exact"
            measured = f"{fmt_ratio(value, 3)} (693_UNCI: {unci}{note})"
            sec.ratios.append(Ratio(number, measured, value))
