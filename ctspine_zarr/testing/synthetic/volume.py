"""The synthetic CT volume: a torso painted slice by slice, blurred, with scanner noise.

:func:`make_volume` lays the vertebrae out along z, draws the per-case parameters, prepares
the fixed maps of the case (background with the patient table and the reconstruction circle,
rib angles, smooth random textures) and then paints, blurs and adds correlated noise to each
axial slice. The output is a pure function of the arguments; random numbers are drawn in a
fixed order (window, case parameters, vertebra cut-offs, texture lattice, then the noise of
each slice).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from ctspine_zarr.vertebrae import VERTEBRA_NAMES

from .canvas import F32, Canvas, lin_index, smooth3
from .spine import HEIGHT_MM, LEVEL, fit_window, pick_window, spine_sequence
from .torso import CaseParams, paint_slice

__all__ = ["HU_MAX", "HU_MIN", "make_volume"]

#: Range of the synthetic HU values (the usual 12-bit CT range).
HU_MIN: Final = -1024
HU_MAX: Final = 3071

_Plane = npt.NDArray[np.float32]


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
    labels = _vertebrae(rng, vertebrae, extent_mm, nz)
    p = _draw_case_params(rng, noise_hu, contrast, colon_gas)
    layout = _ZLayout.draw(rng, labels, nz)
    return _render(rng, p, labels, layout, (nz, ny, nx), sz)


def _render(
    rng: np.random.Generator,
    p: CaseParams,
    labels: list[int],
    layout: _ZLayout,
    shape_zyx: tuple[int, int, int],
    sz: float,
) -> tuple[npt.NDArray[np.int16], npt.NDArray[np.uint8]]:
    """Paint, blur and add noise to every slice of the volume (z index up = superior)."""
    nz, ny, nx = shape_zyx
    cv = Canvas(ny, nx)
    bg_hu, bg_sig = _background(cv, p)
    rib_c, rib_s = _rib_angles(cv, p)
    texture = _Texture(rng, cv, nz * sz)
    scanner = _Scanner(ny, nx)
    hu_out = np.empty((nz, ny, nx), np.int16)
    lab_out = np.zeros((nz, ny, nx), np.uint8)
    for i in range(nz):
        z_mm = (i + 0.5) * sz
        k = int(layout.vert_of_slice[i])
        t1, t2 = texture.at(z_mm)
        np.copyto(cv.hu, bg_hu)
        np.copyto(cv.sig, bg_sig)
        cv.lab.fill(0)
        paint_slice(
            cv,
            p,
            labels[k],
            layout.fraction(i, k),
            float(layout.levels[i]),
            z_mm,
            t1,
            t2,
            rib_c,
            rib_s,
            layout.heights[k],
        )
        hu_out[i] = scanner.image(cv, rng)
        lab_out[i] = cv.lab
    return hu_out, lab_out


def _vertebrae(
    rng: np.random.Generator, vertebrae: range | Sequence[int] | None, extent_mm: float, nz: int
) -> list[int]:
    """The labels of the volume: ``vertebrae`` checked, or a random window of the spine."""
    if vertebrae is None:
        seq = spine_sequence(t13=bool(rng.random() < 0.1), l6=bool(rng.random() < 0.1))
        anchor = seq[int(rng.integers(len(seq)))]
        at = ("top", "bottom", "middle")[int(rng.integers(3))]
        return fit_window(pick_window(seq, extent_mm, anchor, at), anchor, nz)
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
    return labels


def _draw_case_params(
    rng: np.random.Generator,
    noise_hu: float | None,
    contrast: bool | None,
    colon_gas: bool | None,
) -> CaseParams:
    """Per-case parameters (a fixed draw order keeps the output reproducible)."""
    gas_draw = bool(rng.random() < 0.5)
    contrast_draw = bool(rng.random() < 0.4)
    return CaseParams(
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


@dataclass(frozen=True)
class _ZLayout:
    """The vertebrae along z (slice units, z index increasing = superior).

    ``heights`` (nominal mm) and ``tops``, ``bots`` (slice positions) of each vertebra, the
    vertebra index of each slice, and the continuous anatomical level of each slice.
    """

    heights: npt.NDArray[np.float64]
    tops: npt.NDArray[np.float64]
    bots: npt.NDArray[np.float64]
    vert_of_slice: npt.NDArray[np.int64]
    levels: npt.NDArray[np.float64]

    @classmethod
    def draw(cls, rng: np.random.Generator, labels: list[int], nz: int) -> _ZLayout:
        """Stack ``labels`` from the top down over ``nz`` slices, both ends cut off at random."""
        n_v = len(labels)
        heights = np.array([HEIGHT_MM[v] for v in labels])
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
            [LEVEL[labels[-1]] + 1.0, *[LEVEL[v] for v in labels[::-1]], LEVEL[labels[0]] - 1.0]
        )
        levels = np.interp(np.arange(nz) + 0.5, lv_x, lv_y)
        return cls(heights, tops, bots, vert_of_slice, levels)

    def fraction(self, i: int, k: int) -> float:
        """Where slice ``i`` lies in its vertebra ``k``: 0 at the bottom, 1 at the top."""
        bots, tops = self.bots, self.tops
        return float(np.clip((i + 0.5 - bots[k]) / (tops[k] - bots[k]), 0.0, 1.0))


def _background(cv: Canvas, p: CaseParams) -> tuple[_Plane, _Plane]:
    """HU and noise sigma of air, the patient table and the reconstruction circle."""
    ny, nx = cv.ny, cv.nx
    bg_hu = np.full((ny, nx), -1012.0, F32)
    bg_sig = np.full((ny, nx), 0.35 * p.sigma, F32)
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
        outside = cv.u[None, :] ** 2 + cv.v[:, None] ** 2 > 0.98
        bg_hu[outside] = float(HU_MIN)
        bg_sig[outside] = 0.0
    return bg_hu, bg_sig


def _rib_angles(cv: Canvas, p: CaseParams) -> tuple[_Plane, _Plane]:
    """Cosine and sine of 9 times the angle around the chest centre (the rib pattern)."""
    theta = np.arctan2(cv.v[:, None] - F32(p.table_v + 0.6), cv.u[None, :] - F32(p.cx0))
    n_ribs = 9
    return np.cos(n_ribs * theta).astype(F32), np.sin(n_ribs * theta).astype(F32)


class _Texture:
    """Two smooth random fields (organ texture, lung texture / colon gas) along the volume.

    A coarse random lattice (10 x 10 in-plane, one layer per 30 mm of z) interpolated
    linearly in z and with a smoothstep in-plane.
    """

    G: Final = 10
    DZ_MM: Final = 30.0

    def __init__(self, rng: np.random.Generator, cv: Canvas, extent_mm: float) -> None:
        g = self.G
        self.nzl = math.ceil(extent_mm / self.DZ_MM) + 2
        self.lattice = rng.standard_normal((self.nzl, 2, g, g)).astype(F32)
        self.iy, fy = lin_index(cv.v, -1.2, 1.2, g)
        self.ix, fx = lin_index(cv.u, -1.2, 1.2, g)
        self.fy_c = fy[None, :, None]
        self.fx_c = fx[None, None, :]

    def at(self, z_mm: float) -> tuple[_Plane, _Plane]:
        """The two fields in the slice at height ``z_mm``."""
        zl = min(max(z_mm / self.DZ_MM, 0.0), self.nzl - 1.001)
        z0 = int(zl)
        fz = F32(zl - z0)
        lat = self.lattice[z0] * (1 - fz) + self.lattice[z0 + 1] * fz
        iy, ix, fy_c, fx_c = self.iy, self.ix, self.fy_c, self.fx_c
        rows = lat[:, iy, :] * (1 - fy_c) + lat[:, iy + 1, :] * fy_c  # (2, ny, g)
        fields = rows[:, :, ix] * (1 - fx_c)
        fields += rows[:, :, ix + 1] * fx_c
        return fields[0], fields[1]


class _Scanner:
    """What the scanner adds to a painted slice: point-spread blur and correlated noise.

    The blur and the noise correlation span about one pixel at 512 pixels (less on smaller
    slices); the noise is scaled back to unit variance, then by each pixel's sigma.
    """

    def __init__(self, ny: int, nx: int) -> None:
        n_min = min(ny, nx)
        self.w_psf = 0.25 * min(1.0, (n_min / 512.0) ** 2)
        self.w_noise = 0.25 * min(1.0, n_min / 512.0)
        s1 = 2 * self.w_noise**2 + (1 - 2 * self.w_noise) ** 2
        self.noise_gain = F32(1.0 / s1)
        self.padded = np.empty((ny + 2, nx + 2), F32)

    def image(self, cv: Canvas, rng: np.random.Generator) -> _Plane:
        """The slice on ``cv`` blurred, with noise added, clipped to HU range and rounded."""
        padded = self.padded
        padded[1:-1, 1:-1] = cv.hu
        padded[0, 1:-1] = cv.hu[0]
        padded[-1, 1:-1] = cv.hu[-1]
        padded[:, 0] = padded[:, 1]
        padded[:, -1] = padded[:, -2]
        img = smooth3(padded, self.w_psf) if self.w_psf > 0.005 else cv.hu.copy()
        noise = smooth3(rng.standard_normal(padded.shape, dtype=F32), self.w_noise)
        noise *= self.noise_gain
        noise *= cv.sig
        img += noise
        np.clip(img, HU_MIN, HU_MAX, out=img)
        np.rint(img, out=img)
        return img
