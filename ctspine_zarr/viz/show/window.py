"""CT windows and the label overlay: grey levels for HU, one colour per vertebra.

:func:`parse_window` turns a named window (:data:`WINDOWS`) or a width and level into the
HU range shown; :func:`label_overlay` colours a label map with
:data:`ctspine_zarr.vertebrae.VERTEBRA_COLOURS`, background transparent;
:func:`compose_rgb` blends the two into the 8-bit RGB picture of a cut.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache
from typing import Final

import numpy as np

from ...vertebrae import OTHER_LABEL_COLOUR, vertebra_colours

__all__ = ["OVERLAY_ALPHA", "WINDOWS", "compose_rgb", "label_overlay", "parse_window"]

#: Named CT windows as ``(width, level)`` in HU.
WINDOWS: Final[dict[str, tuple[float, float]]] = {
    "bone": (1800.0, 400.0),
    "soft": (400.0, 40.0),
}
#: Opacity of the label overlay.
OVERLAY_ALPHA: Final = 0.5


def parse_window(window: str | Sequence[float]) -> tuple[float, float]:
    """Return the ``(vmin, vmax)`` HU range of a CT window.

    Parameters
    ----------
    window
        ``"bone"`` (W 1800, L 400), ``"soft"`` (W 400, L 40), a ``"W,L"`` string such as
        ``"1500,-600"``, or a ``(width, level)`` pair.

    Returns
    -------
    tuple of float
        ``(level - width / 2, level + width / 2)``.

    Raises
    ------
    ValueError
        For an unknown name, a malformed string or a width that is not positive.
    """
    if isinstance(window, str):
        text = window.strip().lower()
        if text in WINDOWS:
            width, level = WINDOWS[text]
        else:
            parts = text.split(",")
            try:
                width, level = (float(p) for p in parts)
            except ValueError:
                raise ValueError(
                    f"window must be one of {sorted(WINDOWS)} or 'WIDTH,LEVEL' in HU "
                    f"(e.g. '1500,-600'), but is {window!r}"
                ) from None
    else:
        values = [float(v) for v in window]
        if len(values) != 2:
            raise ValueError(f"window must be a (width, level) pair, but is {window!r}")
        width, level = values
    if not (math.isfinite(width) and math.isfinite(level)) or width <= 0:
        raise ValueError(f"window width must be a positive number of HU, but is {width}")
    return level - width / 2.0, level + width / 2.0


def _rgba(colour: str, alpha: float) -> tuple[float, float, float, float]:
    from matplotlib.colors import to_rgb

    r, g, b = to_rgb(colour)
    return r, g, b, alpha


@cache
def _lookup(alpha: float) -> np.ndarray:
    """RGBA per label value 0..255: transparent background, one colour per vertebra."""
    table = np.zeros((256, 4), dtype=np.float64)
    table[1:] = _rgba(OTHER_LABEL_COLOUR, alpha)
    for label, colour in vertebra_colours().items():
        table[label] = _rgba(colour, alpha)
    return table


def label_overlay(label: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """Return the RGBA overlay of a label map: each vertebra in its colour, 0 transparent.

    Parameters
    ----------
    label
        Integer label map (VerSe values; any shape).
    alpha
        Opacity of the labelled pixels.

    Returns
    -------
    numpy.ndarray
        ``label.shape + (4,)`` float64 RGBA; alpha is 0 exactly where ``label == 0``.
        Values outside 1..28 get :data:`OTHER_LABEL_COLOUR`.
    """
    return _lookup(alpha)[_label_index(label)]


def _label_index(label: np.ndarray) -> np.ndarray:
    """Row of :func:`_lookup` for every value: 0 for the background, 255 for other values."""
    values = np.asarray(label)
    index = np.clip(values, 0, 255).astype(np.intp)
    index[(values != 0) & (index == 0)] = 255  # negative values: not background
    return index


def compose_rgb(
    image: np.ndarray,
    label: np.ndarray,
    hu_range: tuple[float, float],
    alpha: float = OVERLAY_ALPHA,
) -> np.ndarray:
    """Return the 8-bit RGB picture of a cut: CT grey in a window, the labels blended on top.

    The grey level is matplotlib's ``gray`` colour map of 256 levels over ``hu_range``
    (clipped), so a picture equals what :func:`~matplotlib.axes.Axes.imshow` draws of
    ``image`` and :func:`label_overlay` of ``label``, to rounding.

    Parameters
    ----------
    image
        CT values (HU), 2D.
    label
        Label map of the same shape.
    hu_range
        ``(vmin, vmax)``, e.g. from :func:`parse_window`.
    alpha
        Opacity of the labelled pixels.

    Returns
    -------
    numpy.ndarray
        ``image.shape + (3,)`` uint8.
    """
    vmin, vmax = hu_range
    scaled = (np.asarray(image, dtype=np.float32) - np.float32(vmin)) / np.float32(vmax - vmin)
    scaled = np.nan_to_num(scaled, nan=0.0)  # no value: black, as the figure draws it
    grey = np.clip(np.floor(scaled * 256), 0, 255).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    index = _label_index(label)
    labelled = index != 0
    if labelled.any():  # blend only where there is a label
        colours = _lookup(alpha)[index[labelled]]
        weight = colours[:, 3:]
        under = grey[labelled][:, None] / 255.0
        rgb[labelled] = np.rint((weight * colours[:, :3] + (1 - weight) * under) * 255)
    return rgb
