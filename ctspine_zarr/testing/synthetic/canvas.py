"""Painting primitives of the synthetic CT: an axial slice canvas, smoothing, texture lookup.

A :class:`Canvas` holds the HU, noise-sigma and label planes of one axial slice in normalized
in-plane coordinates and paints filled ellipses and rectangles onto them; :func:`smooth3` is
the separable 3-tap filter used for the point-spread blur and the correlated noise, and
:func:`lin_index` maps coordinates onto a coarse random lattice for smooth textures.
"""

from __future__ import annotations

import math
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

__all__ = ["F32", "Canvas", "Value", "lin_index", "smooth3"]

#: The float type every plane is painted in.
F32 = np.float32
#: A HU value to paint: one number, or a plane the size of the canvas.
Value: TypeAlias = float | npt.NDArray[np.float32]


class Canvas:
    """One axial slice being painted: HU, noise sigma and label planes, in normalized units.

    Normalized coordinates: ``u`` along x (right), ``v`` along y (anterior), both in units of
    half the smaller in-plane size, 0 at the centre of the field of view.
    """

    def __init__(self, ny: int, nx: int) -> None:
        self.ny, self.nx = ny, nx
        self.half = min(ny, nx) / 2.0
        self.px = 1.0 / self.half  # one pixel in normalized units
        self.u = ((np.arange(nx) - (nx / 2.0 - 0.5)) / self.half).astype(F32)
        self.v = ((np.arange(ny) - (ny / 2.0 - 0.5)) / self.half).astype(F32)
        self.hu = np.empty((ny, nx), F32)
        self.sig = np.empty((ny, nx), F32)
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
        hu: Value,
        sig: float,
        label: int | None = None,
    ) -> None:
        """Set HU, sigma (and label, unless ``None``) in ``box``, where ``mask`` is true."""
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
        du = ((self.u[box[1]] - F32(cx)) * F32(1.0 / ax)) ** 2
        dv = ((self.v[box[0]] - F32(cy)) * F32(1.0 / ay)) ** 2
        return box, dv[:, None] + du[None, :]

    def paint(
        self,
        cx: float,
        cy: float,
        ax: float,
        ay: float,
        hu: Value,
        sig: float,
        label: int | None = None,
        *,
        rect: bool = False,
        min_px: float = 0.75,
    ) -> None:
        """Paint a filled axis-aligned ellipse, or with ``rect`` a rectangle.

        ``ax, ay`` are the semi-axes (half sizes), made at least ``min_px`` pixels.
        """
        ax = max(ax, min_px * self.px)
        ay = max(ay, min_px * self.px)
        if rect:
            box = self.box(cx, cy, ax, ay)
            if box is not None:
                self.fill(box, None, hu, sig, label)
            return
        found = self.ellipse_d2(cx, cy, ax, ay)
        if found is not None:
            box, d2 = found
            self.fill(box, d2 <= 1.0, hu, sig, label)


def smooth3(a: npt.NDArray[np.float32], w: float) -> npt.NDArray[np.float32]:
    """Separable ``[w, 1-2w, w]`` filter of a ``(Y+2, X+2)`` array, valid part ``(Y, X)``."""
    c = F32(1.0 - 2.0 * w)
    wf = F32(w)
    t = a[:, :-2] + a[:, 2:]
    t *= wf
    t += c * a[:, 1:-1]
    out = t[:-2] + t[2:]
    out *= wf
    out += c * t[1:-1]
    return out


def lin_index(
    coords: npt.NDArray[np.float32], lo: float, hi: float, g: int
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float32]]:
    """Lattice index below ``coords`` and smoothstep weight of the one above (g points)."""
    pos = np.clip((coords - lo) / (hi - lo) * (g - 1), 0, g - 1 - 1e-4)
    i0 = np.floor(pos).astype(np.intp)
    frac = pos - i0
    return i0, (frac * frac * (3.0 - 2.0 * frac)).astype(F32)  # smoothstep: round blobs
