"""The anatomy painter: one axial slice of a synthetic torso, from skin to vertebra.

:func:`paint_slice` paints, at a continuous anatomical level, the body outline with its fat,
muscles and viscera, the organs (liver, kidneys, lungs, heart, aorta), bowel gas and an
insufflated colon, the pelvis, the ribs and the vertebra with its processes, each shaped by
piecewise-linear profiles along the body. :class:`CaseParams` holds the per-case draws that
make one patient differ from another.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from .canvas import F32, Canvas, Value
from .spine import COCCYX, SACRUM, disc_fraction

__all__ = ["CaseParams", "paint_slice"]

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

_Box = tuple[slice, slice]
_Plane = npt.NDArray[np.float32]


def _prof(profile: tuple[tuple[float, ...], tuple[float, ...]], lv: float) -> float:
    return float(np.interp(lv, profile[0], profile[1]))


@dataclass(frozen=True)
class CaseParams:
    """Per-case draws of one synthetic patient (normalized units, HU, mm).

    Body size and position (``zoom``, ``cx0``, ``table_v``), fat (``fat``,
    ``visceral_thr``), bone density (``dens``, ``cortical``), noise ``sigma``, contrast and
    colon gas, the reconstruction circle, scoliosis and body wobble along z, and the rib
    pattern.
    """

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


@dataclass(frozen=True)
class _Body:
    """The body ellipse of one slice: centre, outer and inner (under the fat) semi-axes."""

    cx: float
    cy: float
    a: float
    b: float
    ai: float
    bi: float


@dataclass(frozen=True)
class _Spine:
    """Where the vertebra of one slice sits.

    Body centre ``(xs, ys)`` and semi-axes ``rx, ry``; spinal canal centre ``vc`` (at ``xs``)
    and radius ``rc``; neural arch thickness ``ta``; spinous process length ``lsp``.
    """

    xs: float
    ys: float
    rx: float
    ry: float
    vc: float
    rc: float
    ta: float
    lsp: float


@dataclass(frozen=True)
class _Slice:
    """One slice being painted: canvas, case, level and height, textures, body and spine.

    ``inner`` is the index box of the body under the fat and the squared normalized distance
    from the body centre inside it (1 on the inner ellipse).
    """

    cv: Canvas
    p: CaseParams
    lv: float
    z_mm: float
    t1: _Plane
    t2: _Plane
    body: _Body
    sp: _Spine
    inner: tuple[_Box, _Plane]


def paint_slice(
    cv: Canvas,
    p: CaseParams,
    label: int,
    f: float,
    lv: float,
    z_mm: float,
    t1: _Plane,
    t2: _Plane,
    rib_c: _Plane,
    rib_s: _Plane,
    height_mm: float,
) -> None:
    """Paint one axial slice of the torso at anatomical level ``lv`` onto ``cv``.

    ``label`` is the vertebra of the slice and ``f`` the fraction (0 bottom, 1 top) of its
    ``height_mm`` the slice is at; ``t1, t2`` are smooth texture planes and ``rib_c, rib_s``
    the cosine and sine of the rib angle map.
    """
    body = _body(p, cv.px, lv, z_mm)
    inner = _paint_body(cv, p, body, t1)
    if inner is None:
        return
    s = _Slice(cv, p, lv, z_mm, t1, t2, body, _spine(p, cv.px, lv, z_mm, body), inner)
    _paint_muscles(s)
    _paint_organs(s)
    if lv >= 18.5:
        _paint_bowel(s)
    _paint_pelvis(s)
    _paint_ribs(s, rib_c, rib_s)
    _paint_vertebra(s, label, f, height_mm)


def _body(p: CaseParams, px: float, lv: float, z_mm: float) -> _Body:
    """The body ellipse at level ``lv``, wobbling along z."""
    wa = 1.0 + 0.02 * math.sin(2 * math.pi * z_mm / p.wob_period + p.wob_phase_a)
    wb = 1.0 + 0.015 * math.sin(2 * math.pi * z_mm / p.wob_period + p.wob_phase_b)
    a = _prof(_BODY_A, lv) * p.zoom * wa
    b = _prof(_BODY_B, lv) * p.zoom * wb
    ft = max(p.fat * _prof(_FAT_SCALE, lv), 1.2 * px)
    return _Body(cx=p.cx0, cy=p.table_v + b + 0.004, a=a, b=b, ai=a - ft, bi=b - ft)


def _paint_body(cv: Canvas, p: CaseParams, body: _Body, t1: _Plane) -> tuple[_Box, _Plane] | None:
    """Subcutaneous fat, then muscle / viscera / visceral fat inside; the inner ellipse."""
    sg = p.sigma
    cv.paint(body.cx, body.cy, body.a, body.b, -100.0 + 6.0 * t1, sg)
    inner = cv.ellipse_d2(body.cx, body.cy, body.ai, body.bi)
    if inner is None:
        return None
    ibox, id2 = inner
    t1b = t1[ibox]
    visc = np.where(t1b > p.visceral_thr, 44.0 + 9.0 * t1b, -92.0 + 6.0 * t1b).astype(F32)
    np.copyto(cv.hu[ibox], visc, where=id2 <= 1.0)
    np.copyto(cv.sig[ibox], F32(sg), where=id2 <= 1.0)
    return inner


def _spine(p: CaseParams, px: float, lv: float, z_mm: float, body: _Body) -> _Spine:
    """Spine geometry (normalized units, scoliotic along z), shared by muscles and vertebra."""
    xs = p.cx0 + p.scol_amp * math.sin(2 * math.pi * z_mm / p.scol_period + p.scol_phase)
    zoom = p.zoom
    rx = max(_prof(_SPINE_RX, lv) * zoom, 2.0 * px)
    ry = rx * (0.7 if lv < 6.5 else 0.78)
    rc = max(_prof(_CANAL_R, lv) * zoom, 1.0 * px)
    ta = max(0.02 * zoom, 1.0 * px)
    lsp = _prof(_SPINOUS_LEN, lv) * zoom
    base_v = body.cy - body.bi
    vc = base_v + lsp + ta + rc + 0.012
    ys = vc + rc + 0.3 * ta + ry
    return _Spine(xs=xs, ys=ys, rx=rx, ry=ry, vc=vc, rc=rc, ta=ta, lsp=lsp)


def _paint_muscles(s: _Slice) -> None:
    """Paraspinal muscles and psoas."""
    cv, sp, sg = s.cv, s.sp, s.p.sigma
    soft = 50.0 + 4.0 * s.t1
    off = 0.6 * (sp.rc + sp.ta + sp.lsp * 0.4)
    for sgn in (-1.0, 1.0):
        cv.paint(
            sp.xs + sgn * off,
            sp.vc - 0.35 * sp.lsp,
            0.5 * sp.lsp + sp.rc,
            0.6 * sp.lsp + 0.02,
            soft,
            sg,
        )
    ps = _prof(_PSOAS, s.lv)
    if ps > 0:
        r = 0.05 * ps + 0.01
        for sgn in (-1.0, 1.0):
            cv.paint(sp.xs + sgn * (sp.rx + 0.05 * ps), sp.ys - 0.2 * sp.ry, r, r, soft, sg)


def _paint_organs(s: _Slice) -> None:
    """Abdomen: liver, kidneys; thorax: lungs (over the liver dome), heart; aorta."""
    cv, p, sp, lv = s.cv, s.p, s.sp, s.lv
    sg = p.sigma
    cx, cy, ai, bi = s.body.cx, s.body.cy, s.body.ai, s.body.bi
    liver = _prof(_LIVER, lv)
    if liver > 0:
        liver_hu = (105.0 if p.contrast else 58.0) + 5.0 * s.t2
        cv.paint(cx + 0.4 * ai, cy + 0.1 * bi, 0.5 * ai * liver, 0.62 * bi * liver, liver_hu, sg)
    kidney = _prof(_KIDNEY, lv)
    if kidney > 0:
        kid_hu = 160.0 if p.contrast else 32.0
        for sgn in (-1.0, 1.0):
            kx = sp.xs + sgn * (sp.rx + 0.14)
            cv.paint(kx, sp.ys, 0.07 * kidney + 0.01, 0.1 * kidney + 0.01, kid_hu, sg)
    lung = _prof(_LUNG, lv)
    if lung > 0:
        lung_hu = -860.0 + 30.0 * s.t2
        la, lb = 0.36 * ai * math.sqrt(lung), 0.74 * bi * lung
        for sgn in (-1.0, 1.0):
            cv.paint(
                cx + sgn * 0.43 * ai, cy + 0.02 * bi - 0.1 * (1 - lung), la, lb, lung_hu, 1.3 * sg
            )
    heart = _prof(_HEART, lv)
    if heart > 0:
        heart_hu = (140.0 if p.contrast else 42.0) + 4.0 * s.t1
        cv.paint(cx - 0.1 * ai, cy + 0.25 * bi, 0.3 * ai * heart, 0.42 * bi * heart, heart_hu, sg)
    aorta = _prof(_AORTA, lv)
    if aorta > 0:
        ra = 0.035 * p.zoom * aorta
        aorta_hu = 200.0 if p.contrast else 42.0
        cv.paint(sp.xs - 0.5 * sp.rx, sp.ys + sp.ry + ra + 0.01, ra, ra, aorta_hu, sg)


def _paint_bowel(s: _Slice) -> None:
    """Bowel gas pockets; with colon gas an insufflated colon (CT colonography)."""
    cv, p, sp, lv = s.cv, s.p, s.sp, s.lv
    sg = p.sigma
    cx, cy, ai, bi = s.body.cx, s.body.cy, s.body.ai, s.body.bi
    ibox, id2 = s.inner
    vv = cv.v[ibox[0]][:, None]
    uu = cv.u[ibox[1]][None, :]
    away = (np.abs(uu - sp.xs) > sp.rx + 0.12) | (vv > sp.ys + sp.ry + 0.08)
    gas = (id2 <= 0.75) & (s.t2[ibox] > (p.gas_thr if p.gas else 1.6)) & away
    cv.fill(ibox, gas, -990.0 + 10.0 * s.t1, 0.6 * sg)
    colon = _prof(_COLON, lv) if p.gas else 0.0
    if colon <= 0:
        return
    wall = max(0.012, 1.2 * cv.px)
    lumen = 0.07 * p.zoom * colon * (1.0 + 0.15 * math.sin(s.z_mm / 23.0 + p.wob_phase_a))
    segments = [
        (cx + 0.62 * ai, cy - 0.05 * bi, lumen, lumen),  # ascending
        (cx - 0.62 * ai, cy - 0.1 * bi, 0.8 * lumen, 0.8 * lumen),  # descending
    ]
    if lv < 21.0:  # transverse colon, anterior
        segments.append((cx, cy + 0.62 * bi, 0.45 * ai * colon, 0.6 * lumen))
    if lv > 23.5:  # sigmoid / rectum
        segments.append((sp.xs, sp.ys + sp.ry + 0.1, lumen, 0.8 * lumen))
    for gx, gy, la, lb in segments:
        cv.paint(gx, gy, la + wall, lb + wall, 45.0, sg)
        cv.paint(gx, gy, la, lb, -1000.0 + 8.0 * s.t1, 0.6 * sg)


def _paint_pelvis(s: _Slice) -> None:
    """Pelvis: iliac wings with a cortical shell."""
    pel = _prof(_PELVIS, s.lv)
    if pel <= 0:
        return
    cv, p, sp = s.cv, s.p, s.sp
    sg = p.sigma
    for sgn in (-1.0, 1.0):
        pcx, pcy = sp.xs + sgn * (0.32 + 0.15 * pel) * s.body.ai, sp.ys - 0.1
        cv.paint(pcx, pcy, 0.05 + 0.03 * pel, 0.22 * pel, 0.8 * p.cortical, 1.5 * sg)
        wing_hu = p.dens - 30.0 + 20.0 * s.t1
        cv.paint(pcx, pcy, 0.05 + 0.03 * pel - 0.014, 0.22 * pel - 0.014, wing_hu, 1.8 * sg)


def _paint_ribs(s: _Slice, rib_c: _Plane, rib_s: _Plane) -> None:
    """Ribs: a rotating pattern of bone cross-sections along the chest wall."""
    ribs = _prof(_RIBS, s.lv)
    if ribs <= 0:
        return
    cv, p = s.cv, s.p
    ibox, id2 = s.inner
    phi = 2 * math.pi * s.z_mm / p.rib_period + p.rib_phase
    rib = (id2 >= (0.9 - 0.03 * ribs) ** 2) & (id2 <= 0.955**2)
    rib &= rib_c[ibox] * F32(math.cos(phi)) + rib_s[ibox] * F32(math.sin(phi)) > 0.8
    vv = cv.v[ibox[0]][:, None]
    uu = cv.u[ibox[1]][None, :]
    rib &= (vv < s.body.cy + 0.55 * s.body.bi) & (np.abs(uu - s.sp.xs) > s.sp.rx + 0.05)
    cv.fill(ibox, rib, 0.6 * p.cortical + 30.0 * s.t1, 1.5 * p.sigma)


def _paint_vertebra(s: _Slice, label: int, f: float, height_mm: float) -> None:
    """Paint the vertebra ``label`` at fraction ``f`` (0 bottom, 1 top) of its height."""
    cv, p, sp = s.cv, s.p, s.sp
    sg = p.sigma
    post = 0.35 * p.cortical + 0.65 * p.dens
    if label == COCCYX:
        r = max(0.04 * p.zoom * (0.5 + 0.5 * f), 1.2 * cv.px)
        cv.paint(sp.xs, sp.ys - sp.ry + r, r, 0.8 * r, post, 1.5 * sg, label)
        return
    is_sacrum = label == SACRUM
    rx, ry, rc = sp.rx, sp.ry, sp.rc
    if is_sacrum:
        rx *= 0.35 + 0.65 * f
        ry *= 0.5 + 0.5 * f
        rc *= 0.6
    disc = disc_fraction(label)
    g = (f - disc) / (1.0 - disc) if disc < 1.0 else 1.0
    in_body = f >= disc
    xs, vc, ta = sp.xs, sp.vc, sp.ta
    # neural arch (ring around the canal), spinal canal
    if in_body and 0.3 <= g <= 0.95:
        cv.paint(xs, vc, rc + ta, rc + ta, post, 1.5 * sg, label)
    cv.paint(xs, vc, rc, rc, 12.0, sg, 0)
    # vertebral body or the disc below it
    if in_body:
        body_mm = height_mm * (1.0 - disc)
        _paint_vertebral_body(cv, p, label, g, (xs, sp.ys, rx, ry), s.t1, body_mm)
    else:
        cv.paint(xs, sp.ys, rx * 1.02, ry * 1.02, 85.0 + 5.0 * s.t1, sg)
    # spinous process (pointing down and back), transverse processes, facets
    tw = max(0.012 * p.zoom, 0.6 * cv.px)
    if f <= 0.85 and not is_sacrum:
        length = sp.lsp * (0.55 + 0.45 * (1.0 - f))
        back = vc - rc - ta * 0.5
        cv.paint(
            xs, back - length / 2.0, tw, length / 2.0, post, 1.5 * sg, label, rect=True, min_px=0.6
        )
    if (in_body and 0.45 <= g <= 0.9) or is_sacrum:
        tp = _prof(_TRANSVERSE, s.lv) * p.zoom * ((0.4 + 0.6 * f) if is_sacrum else 1.0)
        th = max((0.05 if is_sacrum else 0.015) * p.zoom, 0.6 * cv.px)
        for sgn in (-1.0, 1.0):
            tx = xs + sgn * (rc + tp) / 2.0
            cv.paint(tx, vc, (tp - rc) / 2.0, th, post, 1.5 * sg, label, rect=True, min_px=0.6)
    rf = max(0.02 * p.zoom, 0.8 * cv.px)
    for sgn in (-1.0, 1.0):
        cv.paint(xs + sgn * (rc + 0.5 * ta), vc - 0.2 * rc, rf, rf, post, 1.5 * sg, label)


def _paint_vertebral_body(
    cv: Canvas,
    p: CaseParams,
    label: int,
    g: float,
    ellipse: tuple[float, float, float, float],
    t1: _Plane,
    body_mm: float,
) -> None:
    """The vertebral body at fraction ``g`` of its own height: cortical shell, cancellous core.

    ``ellipse`` is ``(xs, ys, rx, ry)``; slices within 1.2 mm of an end plate are denser.
    """
    xs, ys, rx, ry = ellipse
    sg = p.sigma
    cort = p.cortical
    tc = max(0.008, 1.0 * cv.px)
    waist = 1.0 - 0.07 * math.sin(math.pi * g)
    endplate = min(g, 1.0 - g) * body_mm < 1.2
    shell_hu = cort if not endplate else 0.5 * (cort + p.dens)
    cv.paint(xs, ys, rx * waist, ry * waist, shell_hu, 1.5 * sg, label)
    if rx * waist - tc > 0.5 * cv.px:
        inner_hu: Value = p.dens + 25.0 * t1 if not endplate else 0.5 * (cort + p.dens)
        cv.paint(xs, ys, rx * waist - tc, ry * waist - tc, inner_hu, 1.8 * sg, label, min_px=0.25)
