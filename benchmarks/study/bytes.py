"""Section ``bytes``: bytes on disk of the store against the .nii.gz, Arrow and .npy anchors."""

from __future__ import annotations

import numpy as np

from benchmarks.common import dir_bytes, fmt_bytes, markdown_table, ratio
from benchmarks.study.results import Ratio, Section, fmt_fraction, nii_bytes
from benchmarks.study.tree import store_breakdown
from benchmarks.study.workspace import Workspace


def section_bytes(ws: Workspace, sec: Section) -> None:
    """Bytes on disk: the store against the .nii.gz files, the Arrow tables and the .npy."""
    store = ws.ensure_store()
    compact = ws.ensure_compact_store()
    arrow2d, arrow3d, npy = ws.ensure_arrow("2d"), ws.ensure_arrow("3d"), ws.ensure_npy()
    cases = ws.cases
    nii_image, nii_label = nii_bytes(cases)
    nii = nii_image + nii_label
    parts = store_breakdown(store)
    sizes = {
        "nii_gz": nii,
        "store": dir_bytes(store),
        "store_compact": dir_bytes(compact),
        "arrow_2d": dir_bytes(arrow2d),
        "arrow_3d": dir_bytes(arrow3d),
        "npy": dir_bytes(npy),
    }
    voxels = sum(int(np.prod(c.file_shape)) for c in cases)
    labels = {
        "nii_gz": ".nii.gz image + label, as nibabel writes them (gzip level 1) [anchor]",
        "store": "**ours: store** (every file: data, metadata, catalogue)",
        "store_compact": "ours: store, `--codec compact` (JPEG-LS where smaller)",
        "arrow_2d": "HF Arrow 2d (float32 image, int32 segmentation, row per slice) [anchor]",
        "arrow_3d": "HF Arrow 3d (float32 image, int32 segmentation, row per volume)",
        "npy": ".npy int16 image + uint8 label, uncompressed [anchor]",
    }
    rows = [
        [
            labels[key],
            fmt_bytes(n),
            f"{n / voxels:.3f}",
            fmt_fraction(ratio(n, sizes["nii_gz"])),
            fmt_fraction(ratio(n, sizes["arrow_2d"])),
            fmt_fraction(ratio(n, sizes["npy"])),
        ]
        for key, n in sizes.items()
    ]
    sec.lines += [
        f"{len(cases)} cases, {voxels / 1e6:.0f} M voxels. Ratios are this / anchor "
        "(below 1: smaller than the anchor).",
        "",
        markdown_table(
            ["representation", "bytes", "bytes/voxel", "/ .nii.gz", "/ Arrow 2d", "/ .npy"],
            rows,
        ),
        "",
        f"Store parts: image {fmt_bytes(parts['image'])} "
        f"({fmt_fraction(ratio(parts['image'], nii_image))} of the .nii.gz images), "
        f"label {fmt_bytes(parts['label'])} "
        f"({fmt_fraction(ratio(parts['label'], nii_label))} of the .nii.gz labels), "
        f"case metadata (zarr.json, slice index, NIfTI headers) {fmt_bytes(parts['case_other'])}, "
        f"root (catalogue) {fmt_bytes(parts['root'])}.",
    ]
    bytes_ratio = ratio(sizes["store"], nii)
    arrow_ratio = ratio(sizes["store"], sizes["arrow_2d"])
    compact_arrow_ratio = ratio(sizes["store_compact"], sizes["arrow_2d"])
    sec.data = {
        "bytes": sizes,
        "store_parts": parts,
        "nii_gz_parts": {"image": nii_image, "label": nii_label},
        "voxels": voxels,
        "store_over_nii_gz": bytes_ratio,
        "store_over_arrow_2d": arrow_ratio,
        "store_compact_over_arrow_2d": compact_arrow_ratio,
    }
    compact_text = fmt_fraction(compact_arrow_ratio)
    sec.ratios += [
        Ratio("1", fmt_fraction(bytes_ratio), bytes_ratio),
        Ratio(
            "3b", f"{fmt_fraction(arrow_ratio)} (`--codec compact`: {compact_text})", arrow_ratio
        ),
    ]
