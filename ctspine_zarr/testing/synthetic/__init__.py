"""Synthetic CTSpine1K-like raw trees, for tests and benchmarks.

The Hugging Face copy of CTSpine1K lays its files out as::

    ROOT/rawdata/volumes/<source>/<case>.nii.gz
    ROOT/rawdata/labels/<source>/<case>_seg.nii.gz
    ROOT/metadata/data_split.txt

This package writes trees of the same shape, filled with synthetic torso CTs that look enough
like the real thing to measure compression and speed (air, fat, soft tissue, lungs, organs, a
spine with cortical shells, ribs, a patient table, correlated scanner noise), with vertebra
labels in VerSe numbering that coincide with the bone in the image, and with the NIfTI header
quirks an ingest pipeline meets in the real data (LPS and descending affines, a sagittally
stored case, ``uint16`` storage with ``scl_inter = -1024``, float labels, sform-only and
qform-only headers).

Volumes are generated as ``[z, y, x]`` arrays in RAS voxel order (``x`` increasing to the
patient's right, ``y`` to anterior, ``z`` to superior) and only reoriented when written.
Everything is deterministic under a seed; ``.nii.gz`` files are byte-identical between runs
because nibabel writes gzip members with ``mtime = 0`` and no file name.

The generator is split by what it holds: :mod:`.spine` (labels, levels, heights, windows),
:mod:`.canvas` (slice painting primitives), :mod:`.torso` (the anatomy of one slice),
:mod:`.volume` (:func:`make_volume`), :mod:`.nifti` (header variants, :func:`write_case`) and
:mod:`.tree` (:func:`make_raw_tree`, :func:`write_split_file`), and :mod:`.defects` (label
defects of each kind the audit finds, ``make_raw_tree(defects=...)``). This package re-exports
the public names.
"""

from __future__ import annotations

from .defects import DEFECT_KINDS, Defect, inject_defect, parse_defects
from .nifti import VARIANTS, SyntheticCase, write_case
from .spine import SPINE_ORDER, spine_sequence
from .tree import make_raw_tree, write_split_file
from .volume import HU_MAX, HU_MIN, make_volume

__all__ = [
    "DEFECT_KINDS",
    "HU_MAX",
    "HU_MIN",
    "SPINE_ORDER",
    "VARIANTS",
    "Defect",
    "SyntheticCase",
    "inject_defect",
    "make_raw_tree",
    "make_volume",
    "parse_defects",
    "spine_sequence",
    "write_case",
    "write_split_file",
]
