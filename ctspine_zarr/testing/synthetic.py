"""Synthetic CTSpine1K-like raw trees, for tests and benchmarks.

The Hugging Face copy of CTSpine1K lays its files out as::

    ROOT/rawdata/volumes/<source>/<case>.nii.gz
    ROOT/rawdata/labels/<source>/<case>_seg.nii.gz
    ROOT/metadata/data_split.txt

This module writes trees of the same shape, filled with synthetic torso CTs that look enough
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
"""

from __future__ import annotations

import functools
import math
import os
import pathlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, TypeAlias

import nibabel as nib
import numpy as np
import numpy.typing as npt
from nibabel import orientations as nio

from ctspine_zarr.schema import SOURCES, SPLIT_SECTIONS
from ctspine_zarr.vertebrae import ANATOMICAL_ORDER, L6_LABEL, T13_LABEL, VERTEBRA_NAMES

__all__ = [
    "HU_MAX",
    "HU_MIN",
    "SPINE_ORDER",
    "VARIANTS",
    "SyntheticCase",
    "make_raw_tree",
    "make_volume",
    "spine_sequence",
    "write_case",
    "write_split_file",
]

#: Range of the synthetic HU values (the usual 12-bit CT range).
HU_MIN: Final = -1024
HU_MAX: Final = 3071

_SACRUM: Final = 26
_COCCYX: Final = 27

#: Every VerSe label in cranio-caudal order, including the optional T13 and L6.
SPINE_ORDER: Final[tuple[int, ...]] = ANATOMICAL_ORDER

_SPLIT_FILE_SECTIONS: Final = tuple(SPLIT_SECTIONS)
_NO_SECTION: Final = ""


@dataclass(frozen=True)
class _Variant:
    name: str
    axcodes: tuple[str, str, str]
    image_dtype: type[np.generic]
    slope_inter: tuple[float, float] | None
    label_dtype: type[np.generic]
    qform_code: int
    sform_code: int


_VARIANT_SPECS: Final[tuple[_Variant, ...]] = (
    _Variant("ras-int16", ("R", "A", "S"), np.int16, (1.0, 0.0), np.uint8, 1, 1),
    _Variant("lps-uint16-inter", ("L", "P", "S"), np.uint16, (1.0, -1024.0), np.uint8, 1, 1),
    _Variant("descending-z", ("R", "A", "I"), np.int16, None, np.uint8, 1, 2),
    _Variant("float-label", ("L", "P", "S"), np.int16, None, np.float32, 0, 2),
    _Variant("qform-only", ("L", "A", "S"), np.int16, None, np.uint8, 1, 0),
    _Variant("sagittal", ("P", "I", "L"), np.int16, (1.0, 0.0), np.uint8, 1, 2),
)
_VARIANTS_BY_NAME: Final = {v.name: v for v in _VARIANT_SPECS}

#: Header-quirk variants, in the order :func:`make_raw_tree` cycles through them.
#:
#: ``ras-int16``
#:     RAS affine, ``int16`` image with ``scl_slope=1, scl_inter=0``, qform and sform (1/1).
#: ``lps-uint16-inter``
#:     LPS affine, image stored as ``uint16`` with ``scl_inter=-1024``; qform and sform (1/1).
#: ``descending-z``
#:     slices stored inferior-first (negative z step); qform 1, sform 2.
#: ``float-label``
#:     LPS affine, label stored as ``float32``; sform only (qform code 0).
#: ``qform-only``
#:     LAS affine (negative determinant, qfac -1); qform only (sform code 0).
#: ``sagittal``
#:     voxel axes permuted to P, I, L (sagittal slices along the last axis); qform 1, sform 2.
VARIANTS: Final[tuple[str, ...]] = tuple(v.name for v in _VARIANT_SPECS)


@dataclass(frozen=True)
class SyntheticCase:
    """One written case of a synthetic raw tree.

    Attributes
    ----------
    case_id
        Case id, the file name without ``.nii.gz`` (may contain dots).
    source
        Source folder name, one of :data:`ctspine_zarr.schema.SOURCES`.
    split
        Split-file section listing the case, or ``""`` when no section lists it.
    image_path, label_path
        Paths of the written image and label files.
    variant
        Name of the header-quirk variant, one of :data:`VARIANTS`.
    """

    case_id: str
    source: str
    split: str
    image_path: pathlib.Path
    label_path: pathlib.Path
    variant: str


# --------------------------------------------------------------------------------------------
# Anatomy tables
# --------------------------------------------------------------------------------------------

#: Continuous anatomical level of each label (C1 = 0 ... L5 = 23), used to shape the body.
_LEVEL: Final[dict[int, float]] = {
    **{lab: float(lab - 1) for lab in range(1, 25)},
    T13_LABEL: 18.5,
    L6_LABEL: 24.0,
    _SACRUM: 25.0,
    _COCCYX: 26.6,
}

#: Nominal height (mm) of each vertebra including the disc below it.
_HEIGHT_MM: Final[dict[int, float]] = {
    1: 14.0,
    2: 20.0,
    **{lab: 15.0 + 0.3 * (lab - 3) for lab in range(3, 8)},
    **{lab: 18.0 + 8.0 * (lab - 8) / 11.0 for lab in range(8, 20)},
    T13_LABEL: 26.0,
    20: 32.0,
    21: 33.0,
    22: 34.0,
    23: 35.0,
    24: 35.0,
    L6_LABEL: 34.0,
    _SACRUM: 100.0,
    _COCCYX: 28.0,
}


def _disc_fraction(label: int) -> float:
    if label == 1:
        return 0.12
    if label <= 7:
        return 0.22
    if label <= 19 or label == T13_LABEL:
        return 0.2
    if label <= L6_LABEL:
        return 0.27
    return 0.0


# (knots in anatomical level, values); piecewise-linear profiles along the body.
_BODY_A: Final = (
    (-2, 4, 6, 8, 12, 17, 20, 24, 27),
    (0.42, 0.4, 0.55, 0.9, 0.88, 0.85, 0.8, 0.86, 0.84),
)
_BODY_B: Final = (
    (-2, 4, 6, 8, 12, 17, 20, 24, 27),
    (0.45, 0.4, 0.45, 0.55, 0.62, 0.62, 0.58, 0.55, 0.52),
)
_FAT_SCALE: Final = ((4, 8, 18, 22), (0.4, 0.8, 1.0, 1.3))
_SPINE_RX: Final = (
    (0, 6, 7, 12, 18, 19, 23, 25, 26.6),
    (0.05, 0.062, 0.068, 0.08, 0.1, 0.11, 0.13, 0.16, 0.04),
)
_CANAL_R: Final = ((0, 6, 7, 18, 19, 23, 25), (0.05, 0.045, 0.034, 0.032, 0.038, 0.042, 0.025))
_SPINOUS_LEN: Final = ((0, 6, 7, 18, 19, 23, 25), (0.05, 0.08, 0.1, 0.1, 0.11, 0.1, 0.04))
_TRANSVERSE: Final = ((0, 6, 7, 18, 19, 23, 25), (0.12, 0.12, 0.15, 0.13, 0.17, 0.2, 0.22))
_LUNG: Final = ((6.0, 7.5, 12.0, 17.0, 19.5), (0.0, 0.7, 1.0, 0.8, 0.0))
_HEART: Final = ((10.0, 12.0, 16.0, 17.5), (0.0, 1.0, 1.0, 0.0))
_LIVER: Final = ((14.5, 16.0, 19.0, 21.5), (0.0, 1.0, 1.0, 0.0))
_KIDNEY: Final = ((17.8, 18.8, 21.5, 22.5), (0.0, 1.0, 1.0, 0.0))
_AORTA: Final = ((7.5, 8.0, 23.0, 23.5), (0.0, 1.0, 1.0, 0.0))
_RIBS: Final = ((6.8, 7.5, 18.5, 19.6), (0.0, 1.0, 1.0, 0.0))
_PELVIS: Final = ((22.3, 23.5, 26.0, 27.5), (0.0, 1.0, 1.0, 0.6))
_COLON: Final = ((18.5, 19.5, 26.0, 27.5), (0.0, 1.0, 1.0, 0.0))
_PSOAS: Final = ((18.5, 19.5, 23.5, 25.0), (0.0, 0.5, 1.0, 0.0))


def _prof(profile: tuple[tuple[float, ...], tuple[float, ...]], lv: float) -> float:
    return float(np.interp(lv, profile[0], profile[1]))


# --------------------------------------------------------------------------------------------
# Spine windows
# --------------------------------------------------------------------------------------------


def spine_sequence(
    *, t13: bool = False, l6: bool = False, sacrum: bool = True, coccyx: bool = True
) -> list[int]:
    """Return the VerSe labels of a spine in cranio-caudal order.

    Parameters
    ----------
    t13
        Include T13 (label 28) between T12 and L1.
    l6
        Include L6 (label 25) after L5 (lumbarization).
    sacrum, coccyx
        Include the sacrum (26) and the coccyx (27); the coccyx only with the sacrum.

    Returns
    -------
    list of int
        Label values, C1 first.
    """
    seq = list(range(1, 20))
    if t13:
        seq.append(T13_LABEL)
    seq.extend(range(20, 25))
    if l6:
        seq.append(L6_LABEL)
    if sacrum:
        seq.append(_SACRUM)
        if coccyx:
            seq.append(_COCCYX)
    return seq


def _pick_window(seq: Sequence[int], extent_mm: float, anchor: int, at: str) -> list[int]:
    """Contiguous run of ``seq`` around ``anchor`` long enough to fill ``extent_mm``."""
    lo = hi = list(seq).index(anchor)
    total = _HEIGHT_MM[anchor]
    target = 1.12 * extent_mm
    turn = 0
    while total < target:
        can_down, can_up = hi + 1 < len(seq), lo > 0
        if not (can_down or can_up):
            break
        if at == "top":
            down = can_down
        elif at == "bottom":
            down = not can_up
        else:
            down = (turn % 2 == 0 and can_down) or not can_up
            turn += 1
        if down:
            hi += 1
            total += _HEIGHT_MM[seq[hi]]
        else:
            lo -= 1
            total += _HEIGHT_MM[seq[lo]]
    return list(seq[lo : hi + 1])


# --------------------------------------------------------------------------------------------
# Slice painting
# --------------------------------------------------------------------------------------------

_F32 = np.float32
_Value: TypeAlias = float | npt.NDArray[np.float32]


class _Canvas:
    """One axial slice being painted: HU, noise sigma and label planes, in normalized units.

    Normalized coordinates: ``u`` along x (right), ``v`` along y (anterior), both in units of
    half the smaller in-plane size, 0 at the centre of the field of view.
    """

    def __init__(self, ny: int, nx: int) -> None:
        self.ny, self.nx = ny, nx
        self.half = min(ny, nx) / 2.0
        self.px = 1.0 / self.half  # one pixel in normalized units
        self.u = ((np.arange(nx) - (nx / 2.0 - 0.5)) / self.half).astype(_F32)
        self.v = ((np.arange(ny) - (ny / 2.0 - 0.5)) / self.half).astype(_F32)
        self.hu = np.empty((ny, nx), _F32)
        self.sig = np.empty((ny, nx), _F32)
        self.lab = np.zeros((ny, nx), np.uint8)

    def box(self, cx: float, cy: float, ax: float, ay: float) -> tuple[slice, slice] | None:
        """Index box of the pixels whose centres may lie within ``|u-cx|<=ax, |v-cy|<=ay``."""
        h = self.half
        j0 = max(0, math.ceil((cx - ax) * h + self.nx / 2.0 - 0.5))
        j1 = min(self.nx, math.floor((cx + ax) * h + self.nx / 2.0 - 0.5) + 1)
        i0 = max(0, math.ceil((cy - ay) * h + self.ny / 2.0 - 0.5))
        i1 = min(self.ny, math.floor((cy + ay) * h + self.ny / 2.0 - 0.5) + 1)
        if j0 >= j1 or i0 >= i1:
            return None
        return slice(i0, i1), slice(j0, j1)

    def fill(
        self,
        box: tuple[slice, slice],
        mask: npt.NDArray[np.bool_] | None,
        hu: _Value,
        sig: float,
        label: int | None = None,
    ) -> None:
        hu_src = hu[box] if isinstance(hu, np.ndarray) else hu
        if mask is None:
            self.hu[box] = hu_src
            self.sig[box] = sig
            if label is not None:
                self.lab[box] = label
            return
        np.copyto(self.hu[box], hu_src, where=mask)
        np.copyto(self.sig[box], sig, where=mask)
        if label is not None:
            np.copyto(self.lab[box], label, where=mask)

    def ellipse_d2(
        self, cx: float, cy: float, ax: float, ay: float
    ) -> tuple[tuple[slice, slice], npt.NDArray[np.float32]] | None:
        """Squared normalized elliptical distance inside the ellipse's bounding box."""
        box = self.box(cx, cy, ax, ay)
        if box is None:
            return None
        du = ((self.u[box[1]] - _F32(cx)) * _F32(1.0 / ax)) ** 2
        dv = ((self.v[box[0]] - _F32(cy)) * _F32(1.0 / ay)) ** 2
        return box, dv[:, None] + du[None, :]

    def ellipse(
        self,
        cx: float,
        cy: float,
        ax: float,
        ay: float,
        hu: _Value,
        sig: float,
        label: int | None = None,
        *,
        min_px: float = 0.75,
    ) -> None:
        """Paint a filled axis-aligned ellipse (semi-axes at least ``min_px`` pixels)."""
        ax = max(ax, min_px * self.px)
        ay = max(ay, min_px * self.px)
        found = self.ellipse_d2(cx, cy, ax, ay)
        if found is not None:
            box, d2 = found
            self.fill(box, d2 <= 1.0, hu, sig, label)

    def rect(
        self,
        cx: float,
        cy: float,
        ax: float,
        ay: float,
        hu: _Value,
        sig: float,
        label: int | None = None,
    ) -> None:
        """Paint an axis-aligned rectangle (half sizes at least 0.6 pixel)."""
        box = self.box(cx, cy, max(ax, 0.6 * self.px), max(ay, 0.6 * self.px))
        if box is not None:
            self.fill(box, None, hu, sig, label)


def _smooth3(a: npt.NDArray[np.float32], w: float) -> npt.NDArray[np.float32]:
    """Separable ``[w, 1-2w, w]`` filter of a ``(Y+2, X+2)`` array, valid part ``(Y, X)``."""
    c = _F32(1.0 - 2.0 * w)
    wf = _F32(w)
    t = a[:, :-2] + a[:, 2:]
    t *= wf
    t += c * a[:, 1:-1]
    out = t[:-2] + t[2:]
    out *= wf
    out += c * t[1:-1]
    return out


def _lin_index(
    coords: npt.NDArray[np.float32], lo: float, hi: float, g: int
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float32]]:
    """Lattice index below ``coords`` and smoothstep weight of the one above (g points)."""
    pos = np.clip((coords - lo) / (hi - lo) * (g - 1), 0, g - 1 - 1e-4)
    i0 = np.floor(pos).astype(np.intp)
    frac = pos - i0
    return i0, (frac * frac * (3.0 - 2.0 * frac)).astype(_F32)  # smoothstep: round blobs


@dataclass(frozen=True)
class _CaseParams:
    zoom: float
    cx0: float
    table_v: float
    fat: float
    visceral_thr: float
    dens: float
    cortical: float
    sigma: float
    contrast: bool
    gas: bool
    gas_thr: float
    circle: bool
    scol_amp: float
    scol_period: float
    scol_phase: float
    wob_period: float
    wob_phase_a: float
    wob_phase_b: float
    rib_period: float
    rib_phase: float


def make_volume(
    *,
    shape_zyx: tuple[int, int, int],
    spacing_zyx: tuple[float, float, float],
    seed: int,
    vertebrae: range | Sequence[int] | None = None,
    noise_hu: float | None = None,
    contrast: bool | None = None,
    colon_gas: bool | None = None,
) -> tuple[npt.NDArray[np.int16], npt.NDArray[np.uint8]]:
    """Return (hu int16 [z,y,x], label uint8 [z,y,x]) of a synthetic torso in RAS-ish voxel order.

    Voxel order is RAS: ``x`` increases to the patient's right, ``y`` to anterior and ``z`` to
    superior, so the first vertebra of ``vertebrae`` sits at the highest ``z``.

    Parameters
    ----------
    shape_zyx
        Volume shape ``(Z, Y, X)``; the anatomy is scaled to the in-plane field of view.
    spacing_zyx
        Voxel spacing in mm; the slice spacing sets how many slices each vertebra covers.
    seed
        Seed of ``numpy.random.default_rng``; the output is a pure function of the arguments.
    vertebrae
        Labels in cranio-caudal order, stacked from the top of the volume down so that they
        fill it (the first and last are partly cut off). ``None`` picks a random contiguous
        window of the spine that fits the physical z extent.
    noise_hu
        Standard deviation of the soft-tissue noise in HU; ``None`` draws it from [10, 25].
    contrast
        Contrast-enhanced vessels and organs; ``None`` draws it.
    colon_gas
        Gas-filled colon in the abdomen (CT colonography); ``None`` draws it.

    Returns
    -------
    hu : numpy.ndarray
        ``int16`` HU values in ``[-1024, 3071]``.
    label : numpy.ndarray
        ``uint8`` VerSe labels; every labelled voxel lies on vertebral bone.

    Raises
    ------
    ValueError
        On a non-positive shape or spacing, unknown labels, or more vertebrae than slices.
    """
    nz, ny, nx = (int(s) for s in shape_zyx)
    if nz < 1 or ny < 8 or nx < 8:
        raise ValueError(f"shape_zyx must be at least (1, 8, 8), got {shape_zyx!r}")
    sz = float(spacing_zyx[0])
    if not all(float(s) > 0 for s in spacing_zyx):
        raise ValueError(f"spacing_zyx must be positive, got {spacing_zyx!r}")
    rng = np.random.default_rng(seed)
    extent_mm = nz * sz

    if vertebrae is None:
        seq = spine_sequence(t13=bool(rng.random() < 0.1), l6=bool(rng.random() < 0.1))
        anchor = seq[int(rng.integers(len(seq)))]
        at = ("top", "bottom", "middle")[int(rng.integers(3))]
        labels = _pick_window(seq, extent_mm, anchor, at)
        if len(labels) > nz:
            keep = labels.index(anchor)
            start = min(max(0, keep - nz // 2), len(labels) - nz)
            labels = labels[start : start + nz]
    else:
        labels = [int(v) for v in vertebrae]
        if not labels:
            raise ValueError("vertebrae must not be empty")
        unknown = [v for v in labels if v not in VERTEBRA_NAMES]
        if unknown:
            raise ValueError(f"unknown vertebra labels {unknown}")
        if len(set(labels)) != len(labels):
            raise ValueError(f"duplicate vertebra labels in {labels}")
        if len(labels) > nz:
            raise ValueError(f"{len(labels)} vertebrae do not fit in {nz} slices")

    # --- per-case parameters (fixed draw order keeps the output reproducible) ---------------
    gas_draw = bool(rng.random() < 0.5)
    contrast_draw = bool(rng.random() < 0.4)
    p = _CaseParams(
        zoom=float(rng.uniform(0.86, 1.04)),
        cx0=float(rng.uniform(-0.03, 0.03)),
        table_v=float(rng.uniform(-0.8, -0.66)),
        fat=float(rng.uniform(0.025, 0.09)),
        visceral_thr=float(rng.uniform(-1.3, -0.2)),
        dens=float(rng.uniform(180.0, 300.0)),
        cortical=float(rng.uniform(750.0, 1250.0)),
        sigma=float(noise_hu) if noise_hu is not None else float(rng.uniform(10.0, 25.0)),
        contrast=contrast_draw if contrast is None else bool(contrast),
        gas=gas_draw if colon_gas is None else bool(colon_gas),
        gas_thr=float(rng.uniform(1.0, 1.4)),
        circle=bool(rng.random() < 0.7),
        scol_amp=float(rng.uniform(0.0, 0.02)),
        scol_period=float(rng.uniform(250.0, 600.0)),
        scol_phase=float(rng.uniform(0, 2 * np.pi)),
        wob_period=float(rng.uniform(60.0, 160.0)),
        wob_phase_a=float(rng.uniform(0, 2 * np.pi)),
        wob_phase_b=float(rng.uniform(0, 2 * np.pi)),
        rib_period=float(rng.uniform(24.0, 34.0)),
        rib_phase=float(rng.uniform(0, 2 * np.pi)),
    )

    # --- vertebra layout along z (slice units, z index increasing = superior) --------------
    n_v = len(labels)
    heights = np.array([_HEIGHT_MM[v] for v in labels])
    cut_top = float(rng.uniform(0.0, 0.3)) * heights[0]
    cut_bot = float(rng.uniform(0.0, 0.3)) * heights[-1]
    scale = nz / (heights.sum() - cut_top - cut_bot)  # slices per nominal mm
    tops = nz + (cut_top - np.concatenate([[0.0], np.cumsum(heights)[:-1]])) * scale
    bots = tops - heights * scale
    bounds = np.empty(n_v + 1, np.int64)
    bounds[0], bounds[n_v] = nz, 0
    bounds[1:n_v] = np.rint(bots[:-1])
    for k in range(1, n_v):
        bounds[k] = min(bounds[k], bounds[k - 1] - 1)
    for k in range(n_v - 1, 0, -1):
        bounds[k] = max(bounds[k], bounds[k + 1] + 1)
    vert_of_slice = np.empty(nz, np.int64)
    for k in range(n_v):
        vert_of_slice[bounds[k + 1] : bounds[k]] = k
    # continuous anatomical level of every slice: interpolate between vertebra centres and
    # extrapolate one level per vertebra height beyond the ends
    centres = (tops + bots) / 2.0
    lv_x = np.array(
        [centres[-1] - (tops[-1] - bots[-1]), *centres[::-1], centres[0] + (tops[0] - bots[0])]
    )
    lv_y = np.array(
        [_LEVEL[labels[-1]] + 1.0, *[_LEVEL[v] for v in labels[::-1]], _LEVEL[labels[0]] - 1.0]
    )
    levels = np.interp(np.arange(nz) + 0.5, lv_x, lv_y)

    # --- fixed per-case maps ------------------------------------------------------------------
    cv = _Canvas(ny, nx)
    u2 = cv.u[None, :] ** 2 + cv.v[:, None] ** 2
    bg_hu = np.full((ny, nx), -1012.0, _F32)
    bg_sig = np.full((ny, nx), 0.35 * p.sigma, _F32)
    # patient table: two carbon shells around a foam core, curved up at the sides
    tv = p.table_v - 0.012
    table_top = tv + 0.05 * cv.u**2
    dv = table_top[None, :] - cv.v[:, None]  # depth below the table surface
    in_table = (np.abs(cv.u) < 0.85)[None, :] & (dv >= 0) & (dv < 0.07)
    shell = in_table & ((dv < 0.012) | (dv >= 0.058))
    bg_hu[in_table] = -960.0
    bg_hu[shell] = 230.0
    bg_sig[in_table] = p.sigma
    if p.circle and ny == nx:  # reconstruction circle: exact -1024 outside, no noise
        outside = u2 > 0.98
        bg_hu[outside] = float(HU_MIN)
        bg_sig[outside] = 0.0
    # angle map for the ribs
    theta = np.arctan2(cv.v[:, None] - _F32(p.table_v + 0.6), cv.u[None, :] - _F32(p.cx0))
    n_ribs = 9
    rib_c = np.cos(n_ribs * theta).astype(_F32)
    rib_s = np.sin(n_ribs * theta).astype(_F32)

    # smooth random fields (organ texture, lung texture / colon gas): lattice + linear interp
    g = 10
    dz_lat = 30.0
    nzl = math.ceil(extent_mm / dz_lat) + 2
    lattice = rng.standard_normal((nzl, 2, g, g)).astype(_F32)
    iy, fy = _lin_index(cv.v, -1.2, 1.2, g)
    ix, fx = _lin_index(cv.u, -1.2, 1.2, g)
    fy_c = fy[None, :, None]
    fx_c = fx[None, None, :]

    # filters: blur like a CT point-spread function, noise correlated over ~1 pixel at 512
    n_min = min(ny, nx)
    w_psf = 0.25 * min(1.0, (n_min / 512.0) ** 2)
    w_noise = 0.25 * min(1.0, n_min / 512.0)
    s1 = 2 * w_noise**2 + (1 - 2 * w_noise) ** 2
    noise_gain = _F32(1.0 / s1)

    hu_out = np.empty((nz, ny, nx), np.int16)
    lab_out = np.zeros((nz, ny, nx), np.uint8)
    padded = np.empty((ny + 2, nx + 2), _F32)

    for i in range(nz):
        z_mm = (i + 0.5) * sz
        lv = float(levels[i])
        k = int(vert_of_slice[i])
        f = float(np.clip((i + 0.5 - bots[k]) / (tops[k] - bots[k]), 0.0, 1.0))

        zl = min(max(z_mm / dz_lat, 0.0), nzl - 1.001)
        z0 = int(zl)
        fz = _F32(zl - z0)
        lat = lattice[z0] * (1 - fz) + lattice[z0 + 1] * fz
        rows = lat[:, iy, :] * (1 - fy_c) + lat[:, iy + 1, :] * fy_c  # (2, ny, g)
        fields = rows[:, :, ix] * (1 - fx_c)
        fields += rows[:, :, ix + 1] * fx_c
        t1, t2 = fields[0], fields[1]

        np.copyto(cv.hu, bg_hu)
        np.copyto(cv.sig, bg_sig)
        cv.lab.fill(0)
        _paint_slice(cv, p, labels[k], f, lv, z_mm, t1, t2, rib_c, rib_s, heights[k])

        # point-spread blur, correlated noise, clip and round
        padded[1:-1, 1:-1] = cv.hu
        padded[0, 1:-1] = cv.hu[0]
        padded[-1, 1:-1] = cv.hu[-1]
        padded[:, 0] = padded[:, 1]
        padded[:, -1] = padded[:, -2]
        img = _smooth3(padded, w_psf) if w_psf > 0.005 else cv.hu.copy()
        noise = _smooth3(rng.standard_normal((ny + 2, nx + 2), dtype=_F32), w_noise)
        noise *= noise_gain
        noise *= cv.sig
        img += noise
        np.clip(img, HU_MIN, HU_MAX, out=img)
        np.rint(img, out=img)
        hu_out[i] = img
        lab_out[i] = cv.lab
    return hu_out, lab_out


def _paint_slice(
    cv: _Canvas,
    p: _CaseParams,
    label: int,
    f: float,
    lv: float,
    z_mm: float,
    t1: npt.NDArray[np.float32],
    t2: npt.NDArray[np.float32],
    rib_c: npt.NDArray[np.float32],
    rib_s: npt.NDArray[np.float32],
    height_mm: float,
) -> None:
    """Paint one axial slice of the torso at anatomical level ``lv`` onto ``cv``."""
    sg = p.sigma
    px = cv.px
    zoom = p.zoom
    wa = 1.0 + 0.02 * math.sin(2 * math.pi * z_mm / p.wob_period + p.wob_phase_a)
    wb = 1.0 + 0.015 * math.sin(2 * math.pi * z_mm / p.wob_period + p.wob_phase_b)
    a = _prof(_BODY_A, lv) * zoom * wa
    b = _prof(_BODY_B, lv) * zoom * wb
    cy = p.table_v + b + 0.004
    cx = p.cx0
    ft = max(p.fat * _prof(_FAT_SCALE, lv), 1.2 * px)
    ai, bi = a - ft, b - ft
    xs = cx + p.scol_amp * math.sin(2 * math.pi * z_mm / p.scol_period + p.scol_phase)

    # body outline: subcutaneous fat, then muscle / viscera / visceral fat inside
    cv.ellipse(cx, cy, a, b, -100.0 + 6.0 * t1, sg)
    inner = cv.ellipse_d2(cx, cy, ai, bi)
    if inner is None:
        return
    ibox, id2 = inner
    t1b = t1[ibox]
    visc = np.where(t1b > p.visceral_thr, 44.0 + 9.0 * t1b, -92.0 + 6.0 * t1b).astype(_F32)
    np.copyto(cv.hu[ibox], visc, where=id2 <= 1.0)
    np.copyto(cv.sig[ibox], _F32(sg), where=id2 <= 1.0)

    # spine geometry (normalized units), shared by muscles and vertebra
    rx = max(_prof(_SPINE_RX, lv) * zoom, 2.0 * px)
    ry = rx * (0.7 if lv < 6.5 else 0.78)
    rc = max(_prof(_CANAL_R, lv) * zoom, 1.0 * px)
    ta = max(0.02 * zoom, 1.0 * px)
    lsp = _prof(_SPINOUS_LEN, lv) * zoom
    base_v = cy - bi
    vc = base_v + lsp + ta + rc + 0.012
    ys = vc + rc + 0.3 * ta + ry
    soft = 50.0 + 4.0 * t1

    # paraspinal muscles and psoas
    cv.ellipse(
        xs - 0.6 * (rc + ta + lsp * 0.4),
        vc - 0.35 * lsp,
        0.5 * lsp + rc,
        0.6 * lsp + 0.02,
        soft,
        sg,
    )
    cv.ellipse(
        xs + 0.6 * (rc + ta + lsp * 0.4),
        vc - 0.35 * lsp,
        0.5 * lsp + rc,
        0.6 * lsp + 0.02,
        soft,
        sg,
    )
    ps = _prof(_PSOAS, lv)
    if ps > 0:
        for sgn in (-1.0, 1.0):
            cv.ellipse(
                xs + sgn * (rx + 0.05 * ps),
                ys - 0.2 * ry,
                0.05 * ps + 0.01,
                0.05 * ps + 0.01,
                soft,
                sg,
            )

    # abdomen: liver, kidneys; thorax: lungs (over the liver dome), heart; aorta
    liver = _prof(_LIVER, lv)
    if liver > 0:
        liver_hu = (105.0 if p.contrast else 58.0) + 5.0 * t2
        cv.ellipse(cx + 0.4 * ai, cy + 0.1 * bi, 0.5 * ai * liver, 0.62 * bi * liver, liver_hu, sg)
    kidney = _prof(_KIDNEY, lv)
    if kidney > 0:
        kid_hu = 160.0 if p.contrast else 32.0
        for sgn in (-1.0, 1.0):
            kx = xs + sgn * (rx + 0.14)
            cv.ellipse(kx, ys, 0.07 * kidney + 0.01, 0.1 * kidney + 0.01, kid_hu, sg)
    lung = _prof(_LUNG, lv)
    if lung > 0:
        lung_hu = -860.0 + 30.0 * t2
        la, lb = 0.36 * ai * math.sqrt(lung), 0.74 * bi * lung
        for sgn in (-1.0, 1.0):
            cv.ellipse(
                cx + sgn * 0.43 * ai, cy + 0.02 * bi - 0.1 * (1 - lung), la, lb, lung_hu, 1.3 * sg
            )
    heart = _prof(_HEART, lv)
    if heart > 0:
        heart_hu = (140.0 if p.contrast else 42.0) + 4.0 * t1
        cv.ellipse(cx - 0.1 * ai, cy + 0.25 * bi, 0.3 * ai * heart, 0.42 * bi * heart, heart_hu, sg)
    aorta = _prof(_AORTA, lv)
    if aorta > 0:
        ra = 0.035 * zoom * aorta
        cv.ellipse(xs - 0.5 * rx, ys + ry + ra + 0.01, ra, ra, 200.0 if p.contrast else 42.0, sg)

    # bowel gas pockets; with colon_gas an insufflated colon (CT colonography)
    if lv >= 18.5:
        vv = cv.v[ibox[0]][:, None]
        uu = cv.u[ibox[1]][None, :]
        away = (np.abs(uu - xs) > rx + 0.12) | (vv > ys + ry + 0.08)
        gas = (id2 <= 0.75) & (t2[ibox] > (p.gas_thr if p.gas else 1.6)) & away
        cv.fill(ibox, gas, -990.0 + 10.0 * t1, 0.6 * sg)
        colon = _prof(_COLON, lv) if p.gas else 0.0
        if colon > 0:
            wall = max(0.012, 1.2 * px)
            lumen = 0.07 * zoom * colon * (1.0 + 0.15 * math.sin(z_mm / 23.0 + p.wob_phase_a))
            segments = [
                (cx + 0.62 * ai, cy - 0.05 * bi, lumen, lumen),  # ascending
                (cx - 0.62 * ai, cy - 0.1 * bi, 0.8 * lumen, 0.8 * lumen),  # descending
            ]
            if lv < 21.0:  # transverse colon, anterior
                segments.append((cx, cy + 0.62 * bi, 0.45 * ai * colon, 0.6 * lumen))
            if lv > 23.5:  # sigmoid / rectum
                segments.append((xs, ys + ry + 0.1, lumen, 0.8 * lumen))
            for gx, gy, la, lb in segments:
                cv.ellipse(gx, gy, la + wall, lb + wall, 45.0, sg)
                cv.ellipse(gx, gy, la, lb, -1000.0 + 8.0 * t1, 0.6 * sg)

    # pelvis: iliac wings with cortical shell
    pel = _prof(_PELVIS, lv)
    if pel > 0:
        for sgn in (-1.0, 1.0):
            pcx, pcy = xs + sgn * (0.32 + 0.15 * pel) * ai, ys - 0.1
            cv.ellipse(pcx, pcy, 0.05 + 0.03 * pel, 0.22 * pel, 0.8 * p.cortical, 1.5 * sg)
            cv.ellipse(
                pcx,
                pcy,
                0.05 + 0.03 * pel - 0.014,
                0.22 * pel - 0.014,
                p.dens - 30.0 + 20.0 * t1,
                1.8 * sg,
            )

    # ribs: rotating pattern of bone cross-sections along the chest wall
    ribs = _prof(_RIBS, lv)
    if ribs > 0:
        phi = 2 * math.pi * z_mm / p.rib_period + p.rib_phase
        rib = (id2 >= (0.9 - 0.03 * ribs) ** 2) & (id2 <= 0.955**2)
        rib &= rib_c[ibox] * _F32(math.cos(phi)) + rib_s[ibox] * _F32(math.sin(phi)) > 0.8
        vv = cv.v[ibox[0]][:, None]
        uu = cv.u[ibox[1]][None, :]
        rib &= (vv < cy + 0.55 * bi) & (np.abs(uu - xs) > rx + 0.05)
        cv.fill(ibox, rib, 0.6 * p.cortical + 30.0 * t1, 1.5 * sg)

    _paint_vertebra(cv, p, label, f, lv, xs, ys, vc, rx, ry, rc, ta, lsp, t1, height_mm)


def _paint_vertebra(
    cv: _Canvas,
    p: _CaseParams,
    label: int,
    f: float,
    lv: float,
    xs: float,
    ys: float,
    vc: float,
    rx: float,
    ry: float,
    rc: float,
    ta: float,
    lsp: float,
    t1: npt.NDArray[np.float32],
    height_mm: float,
) -> None:
    """Paint the vertebra ``label`` at fraction ``f`` (0 bottom, 1 top) of its height."""
    sg = p.sigma
    px = cv.px
    cort = p.cortical
    post = 0.35 * cort + 0.65 * p.dens
    canc = p.dens + 25.0 * t1
    disc = _disc_fraction(label)
    tc = max(0.008, 1.0 * px)
    is_sacrum = label == _SACRUM
    if label == _COCCYX:
        r = max(0.04 * p.zoom * (0.5 + 0.5 * f), 1.2 * px)
        cv.ellipse(xs, ys - ry + r, r, 0.8 * r, post, 1.5 * sg, label)
        return
    if is_sacrum:
        rx *= 0.35 + 0.65 * f
        ry *= 0.5 + 0.5 * f
        rc *= 0.6

    g = (f - disc) / (1.0 - disc) if disc < 1.0 else 1.0
    in_body = f >= disc
    # neural arch (ring around the canal), spinal canal
    if in_body and 0.3 <= g <= 0.95:
        cv.ellipse(xs, vc, rc + ta, rc + ta, post, 1.5 * sg, label)
    cv.ellipse(xs, vc, rc, rc, 12.0, sg, 0)
    # vertebral body or the disc below it
    if in_body:
        waist = 1.0 - 0.07 * math.sin(math.pi * g)
        body_mm = height_mm * (1.0 - disc)
        endplate = min(g, 1.0 - g) * body_mm < 1.2
        cv.ellipse(
            xs,
            ys,
            rx * waist,
            ry * waist,
            cort if not endplate else 0.5 * (cort + p.dens),
            1.5 * sg,
            label,
        )
        if rx * waist - tc > 0.5 * px:
            inner_hu: _Value = canc if not endplate else 0.5 * (cort + p.dens)
            cv.ellipse(
                xs, ys, rx * waist - tc, ry * waist - tc, inner_hu, 1.8 * sg, label, min_px=0.25
            )
    else:
        cv.ellipse(xs, ys, rx * 1.02, ry * 1.02, 85.0 + 5.0 * t1, sg)
    # spinous process (pointing down and back), transverse processes, facets
    tw = max(0.012 * p.zoom, 0.6 * px)
    if f <= 0.85 and not is_sacrum:
        length = lsp * (0.55 + 0.45 * (1.0 - f))
        back = vc - rc - ta * 0.5
        cv.rect(xs, back - length / 2.0, tw, length / 2.0, post, 1.5 * sg, label)
    if (in_body and 0.45 <= g <= 0.9) or is_sacrum:
        tp = _prof(_TRANSVERSE, lv) * p.zoom * ((0.4 + 0.6 * f) if is_sacrum else 1.0)
        th = max((0.05 if is_sacrum else 0.015) * p.zoom, 0.6 * px)
        for sgn in (-1.0, 1.0):
            cv.rect(xs + sgn * (rc + tp) / 2.0, vc, (tp - rc) / 2.0, th, post, 1.5 * sg, label)
    rf = max(0.02 * p.zoom, 0.8 * px)
    for sgn in (-1.0, 1.0):
        cv.ellipse(xs + sgn * (rc + 0.5 * ta), vc - 0.2 * rc, rf, rf, post, 1.5 * sg, label)


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _nifti_name(stem: str, gz: bool) -> str:
    return f"{stem}.nii.gz" if gz else f"{stem}.nii"


def write_case(
    root: str | os.PathLike[str],
    case_id: str,
    source: str,
    *,
    image_zyx: npt.ArrayLike,
    label_zyx: npt.ArrayLike,
    spacing_zyx: tuple[float, float, float],
    variant: str = "ras-int16",
    split: str = "",
    offset_mm: tuple[float, float, float] = (0.0, 0.0, 0.0),
    gz: bool = True,
) -> SyntheticCase:
    """Write one case (image and ``_seg`` label) into a raw tree, with a header quirk.

    Parameters
    ----------
    root
        Tree root; files go to ``rawdata/volumes/<source>/`` and ``rawdata/labels/<source>/``.
    case_id
        Case id, the file name stem (dots are kept as they are).
    source
        Source folder name.
    image_zyx, label_zyx
        HU and label arrays ``[z, y, x]`` in RAS voxel order, as from :func:`make_volume`.
    spacing_zyx
        Voxel spacing in mm.
    variant
        Header-quirk variant, one of :data:`VARIANTS`; it sets the stored orientation, dtypes
        and qform/sform codes. The label file always gets the image's shape and affine.
    split
        Split-file section recorded in the returned case (the split file is not written here).
    offset_mm
        RAS world position (x, y, z) of the centre of the field of view.
    gz
        Write ``.nii.gz`` (else ``.nii``).

    Returns
    -------
    SyntheticCase
        The written case.

    Raises
    ------
    ValueError
        On an unknown variant, mismatching shapes, or HU values outside the stored dtype.
    """
    try:
        spec = _VARIANTS_BY_NAME[variant]
    except KeyError:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}") from None
    hu = np.asarray(image_zyx)
    lab = np.asarray(label_zyx)
    if hu.ndim != 3 or hu.shape != lab.shape:
        raise ValueError(
            f"image and label must be 3-D of one shape, got {hu.shape} and {lab.shape}"
        )
    root = pathlib.Path(root)
    image_path = root / "rawdata" / "volumes" / source / _nifti_name(case_id, gz)
    label_path = root / "rawdata" / "labels" / source / _nifti_name(f"{case_id}_seg", gz)
    image_path.parent.mkdir(parents=True, exist_ok=True)
    label_path.parent.mkdir(parents=True, exist_ok=True)

    # RAS affine of the [x, y, z] array, then the variant's flips / permutation
    hu_xyz = hu.transpose(2, 1, 0)
    lab_xyz = lab.transpose(2, 1, 0)
    zooms = np.array([spacing_zyx[2], spacing_zyx[1], spacing_zyx[0]], dtype=np.float64)
    affine_ras = np.diag([*zooms, 1.0])
    affine_ras[:3, 3] = np.asarray(offset_mm, np.float64) - (np.array(hu_xyz.shape) - 1) / 2 * zooms
    ornt = nio.ornt_transform(nio.axcodes2ornt(("R", "A", "S")), nio.axcodes2ornt(spec.axcodes))
    affine = affine_ras @ nio.inv_ornt_aff(ornt, hu_xyz.shape)
    hu_data = nio.apply_orientation(hu_xyz, ornt)
    lab_data = nio.apply_orientation(lab_xyz, ornt)

    if spec.image_dtype is np.uint16:
        if hu.size and (int(hu.min()) < HU_MIN or int(hu.max()) > 65535 + HU_MIN):
            raise ValueError("HU values out of range for uint16 storage with scl_inter=-1024")
        img_arr = (hu_data.astype(np.int32) - HU_MIN).astype(np.uint16)
    else:
        img_arr = hu_data.astype(spec.image_dtype)
    lab_arr = lab_data.astype(spec.label_dtype)

    image = nib.Nifti1Image(img_arr, affine)
    image.header.set_data_dtype(spec.image_dtype)
    if spec.slope_inter is not None:
        image.header.set_slope_inter(*spec.slope_inter)
    image.header["descrip"] = f"synthetic CTSpine1K-like CT ({spec.name})".encode()
    label = nib.Nifti1Image(lab_arr, affine)
    label.header.set_data_dtype(spec.label_dtype)
    label.header["descrip"] = b"synthetic vertebra labels (VerSe)"
    for im in (image, label):
        im.header.set_xyzt_units("mm", "sec")
        if spec.qform_code:
            im.set_qform(affine, code=spec.qform_code)
        else:
            im.set_qform(None, code=0)
        if spec.sform_code:
            im.set_sform(affine, code=spec.sform_code)
        else:
            im.set_sform(None, code=0)
    nib.save(image, image_path)
    nib.save(label, label_path)
    return SyntheticCase(
        case_id=case_id,
        source=source,
        split=split,
        image_path=image_path,
        label_path=label_path,
        variant=spec.name,
    )


def write_split_file(
    path: str | os.PathLike[str], sections: Mapping[str, Sequence[str]]
) -> pathlib.Path:
    """Write a CTSpine1K-style ``data_split.txt`` with CRLF line ends.

    Each section is a ``name:`` line followed by one file name per line; sections are
    separated by a blank line, as in the real file.

    Parameters
    ----------
    path
        Output file; parent folders are created.
    sections
        Section name (e.g. ``"trainset"``) to file names, written in the given order.

    Returns
    -------
    pathlib.Path
        The written path.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    for n, (name, files) in enumerate(sections.items()):
        if n:
            lines.append("")
        lines.append(f"{name}:")
        lines.extend(files)
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    return path


# --------------------------------------------------------------------------------------------
# Raw trees
# --------------------------------------------------------------------------------------------

_SLICE_MM: Final[dict[str, tuple[float, ...]]] = {
    "COLONOG": (1.0, 1.25, 1.5, 2.0, 2.5),
    "HNSCC-3DCT-RT": (1.0, 2.0, 2.5, 3.0),
    "MSD-T10": (1.0, 2.5, 5.0),
    "COVID-19": (1.0, 1.25, 2.5, 5.0),
}

#: Longest z extent (mm) for which a slice spacing is picked, so bodies keep a plausible length.
_MAX_EXTENT_MM: Final[dict[str, float]] = {
    "COLONOG": 600.0,
    "HNSCC-3DCT-RT": 450.0,
    "MSD-T10": 450.0,
    "COVID-19": 450.0,
}

#: Section of case ``i`` (cycled); one case is in no section when there are at least five.
_SPLIT_CYCLE: Final = (
    "trainset",
    "trainset",
    "test_public",
    "trainset",
    "test_private",
    "trainset",
    "trainset",
    "trainset",
    "test_public",
    "trainset",
)


def _source_of(name: str) -> str | None:
    """The source folder of an official case name, by its form."""
    if name.startswith(("1.3.6.1.4.1.9328.50.4.", "CTC-")):
        return "COLONOG"
    if name.startswith("HN_P"):
        return "HNSCC-3DCT-RT"
    if name.startswith("liver_"):
        return "MSD-T10"
    if name.startswith("volume-covid19-"):
        return "COVID-19"
    return None


@functools.cache
def official_names() -> dict[tuple[str, str], tuple[str, ...]]:
    """``{(section, source): names}`` of the official split file the package ships."""
    from ..io.layout import case_id_from_name, official_split_file

    names: dict[tuple[str, str], list[str]] = {}
    section = ""
    for line in official_split_file().decode("utf-8-sig").splitlines():
        entry = line.strip()
        if entry.endswith(":"):
            section = entry[:-1]
        elif entry:
            case_id = case_id_from_name(entry) or entry
            source = _source_of(case_id)
            if source is not None:
                names.setdefault((section, source), []).append(case_id)
    return {key: tuple(value) for key, value in names.items()}


def _new_case_id(rng: np.random.Generator, source: str, section: str, used: set[str]) -> str:
    """An unused real CTSpine1K name of ``source`` that the official file lists in ``section``.

    A case in no section takes a name of any section (the tree's split file leaves it out).
    """
    sections = [section] if section else list(_SPLIT_FILE_SECTIONS)
    pool = [n for s in sections for n in official_names().get((s, source), ())]
    free = [n for n in pool if n not in used]
    if not free:
        raise RuntimeError(f"no unused official {source} name left in {sections}")
    cid = free[int(rng.integers(len(free)))]
    used.add(cid)
    return cid


def _case_window(
    rng: np.random.Generator, index: int, source: str, extent_mm: float, nz: int
) -> list[int]:
    """Spine window of case ``index``: source-typical, with L6 / T13 / sacrum variations."""
    nth = index // len(SOURCES)
    if source == "COLONOG":
        l6 = nth % 2 == 1
        seq = spine_sequence(l6=l6)
        anchor = L6_LABEL if l6 else _SACRUM
        window = _pick_window(seq, extent_mm, anchor, "middle" if l6 else "bottom")
    elif source == "HNSCC-3DCT-RT":
        seq = spine_sequence()
        anchor = int(rng.integers(1, 3))
        window = _pick_window(seq, extent_mm, anchor, "top")
    elif source == "MSD-T10":
        t13 = nth % 3 == 0
        seq = spine_sequence(t13=t13)
        anchor = T13_LABEL if t13 else int(rng.integers(18, 21))
        window = _pick_window(seq, extent_mm, anchor, "middle")
    else:
        seq = spine_sequence()
        anchor = int(rng.integers(6, 9))
        window = _pick_window(seq, extent_mm, anchor, "top")
    if len(window) > nz:
        keep = window.index(anchor)
        start = min(max(0, keep - nz // 2), len(window) - nz)
        window = window[start : start + nz]
    return window


def make_raw_tree(
    root: str | os.PathLike[str],
    *,
    n_cases: int = 6,
    shape: tuple[int, int] = (512, 512),
    n_slices: tuple[int, int] = (40, 120),
    seed: int = 0,
    split_file: bool = True,
    gz: bool = True,
) -> list[SyntheticCase]:
    """Write a CTSpine1K-like raw tree under root and return its cases.

    Cases go round-robin over :data:`ctspine_zarr.schema.SOURCES` (COLONOG first, with a
    dotted id) and cycle through :data:`VARIANTS`, so ``n_cases >= 6`` covers every header
    quirk. In-plane spacing is 0.6-0.9 mm, slice spacing 1-5 mm; each case covers a
    source-typical window of the spine (lumbar with sacrum, cervical, thoracolumbar with T13
    in some, thoracic; every other lumbar case has an L6).

    Parameters
    ----------
    root
        Tree root (created if missing).
    n_cases
        Number of cases.
    shape
        In-plane size ``(Y, X)``.
    n_slices
        Inclusive ``(min, max)`` range of the per-case slice count.
    seed
        Seed; the same seed writes the same bytes.
    split_file
        Write ``metadata/data_split.txt`` (CRLF; most cases in ``trainset``, some in
        ``test_public`` / ``test_private``, one case in no section when ``n_cases >= 5``, and
        one listed name without files). Names are the image file names.
    gz
        Write ``.nii.gz`` (else ``.nii``).

    Returns
    -------
    list of SyntheticCase
        The cases, in writing order.

    Raises
    ------
    ValueError
        On a negative ``n_cases`` or an invalid ``n_slices`` range.
    """
    if n_cases < 0:
        raise ValueError(f"n_cases must be >= 0, got {n_cases}")
    lo, hi = int(n_slices[0]), int(n_slices[1])
    if lo < 1 or hi < lo:
        raise ValueError(
            f"n_slices must be a (min, max) range with 1 <= min <= max, got {n_slices!r}"
        )
    ny, nx = int(shape[0]), int(shape[1])
    root = pathlib.Path(root)
    rng = np.random.default_rng(seed)
    used: set[str] = set()
    cases: list[SyntheticCase] = []
    for i in range(n_cases):
        source = SOURCES[i % len(SOURCES)]
        variant = VARIANTS[i % len(VARIANTS)]
        if n_cases >= 5 and i == n_cases - 1:
            split = _NO_SECTION
        else:
            split = _SPLIT_CYCLE[i % len(_SPLIT_CYCLE)]
        case_id = _new_case_id(rng, source, split, used)
        nz = int(rng.integers(lo, hi + 1))
        fits = [mm for mm in _SLICE_MM[source] if nz * mm <= _MAX_EXTENT_MM[source]]
        sz = float(rng.choice(fits)) if fits else min(_SLICE_MM[source])
        sxy = round(float(rng.integers(310, 461)) / 512.0, 6)
        window = _case_window(rng, i, source, nz * sz, nz)
        offset = (
            float(rng.uniform(-20.0, 20.0)),
            float(rng.uniform(-40.0, 40.0)),
            float(rng.uniform(-700.0, 100.0)),
        )
        case_seed = int(rng.integers(2**31))
        hu, lab = make_volume(
            shape_zyx=(nz, ny, nx),
            spacing_zyx=(sz, sxy, sxy),
            seed=case_seed,
            vertebrae=window,
            colon_gas=source == "COLONOG",
            contrast=source in ("MSD-T10", "HNSCC-3DCT-RT") and bool(case_seed % 2),
        )
        cases.append(
            write_case(
                root,
                case_id,
                source,
                image_zyx=hu,
                label_zyx=lab,
                spacing_zyx=(sz, sxy, sxy),
                variant=variant,
                split=split,
                offset_mm=offset,
                gz=gz,
            )
        )
        del hu, lab
    if split_file:
        sections: dict[str, list[str]] = {name: [] for name in _SPLIT_FILE_SECTIONS}
        for case in cases:
            if case.split:
                sections[case.split].append(case.image_path.name)
        dangling_source = SOURCES[n_cases % len(SOURCES)]
        dangling = _new_case_id(rng, dangling_source, "trainset", used)
        train = sections["trainset"]
        train.insert(len(train) // 2, _nifti_name(dangling, gz))
        write_split_file(root / "metadata" / "data_split.txt", sections)
    return cases
