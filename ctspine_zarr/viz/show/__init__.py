"""Quick-look pictures of one case: CT planes in a window, the vertebra labels and a legend.

Pictures are drawn in the *radiological* convention, with the orientation letters on the
edges of every panel:

========  ======================  ==========  ============
plane     viewed from             left/right  top/bottom
========  ======================  ==========  ============
axial     the feet                R / L       A / P
coronal   the front               R / L       S / I
sagittal  the patient's left      A / P       S / I
========  ======================  ==========  ============

The store holds every case in canonical RAS+ orientation (``x`` increases to the patient's
Right, ``y`` to Anterior, ``z`` to Superior) indexed ``[z, y, x]``, so each of the three cuts
(``image[z]`` on ``(y, x)``, ``image[:, y]`` on ``(z, x)``, ``image[:, :, x]`` on ``(z, y)``)
is shown with both of its axes reversed: row 0 at the top is the largest row coordinate
(anterior or superior), column 0 at the left the largest column coordinate (the patient's
right, or anterior). Pixels are drawn to scale in mm (the voxel spacing), so the panels have
the physical aspect ratio of the cut.

Reads: the axial plane is one chunk per array (``image[z]``, ``label[z]``). A coronal or a
sagittal cut needs one row or column of *every* slice. When the case has its downsampled
levels (``ctspine-zarr pyramid``), both come from the 2x level, whose 64^3 chunks a cut
crosses a few at a time (a 512 x 512 x 400 case: 16 chunks per array instead of 400 slice
chunks), and are repeated back to the full-resolution grid; ``level=0`` (``show
--full-resolution``) reads them from the full-resolution slices instead, which decodes every
slice chunk of the case (the chunks are whole axial slices): both cuts are then taken in the
same single pass, one shard (32 slices) at a time, so memory stays at one shard.

Figures (:func:`plot_case`, :func:`draw_views`) are built with
:class:`matplotlib.figure.Figure` and the Agg canvas directly (no ``pyplot``, no global
backend), so this works headless, in threads and in notebooks. PNG files (:func:`save_case_png`,
``ctspine-zarr show``) are drawn with the same layout straight into pixels with Pillow
(:func:`render_views`), which is about 20 times faster than drawing a figure.
Every vertebra is drawn in its colour of :data:`ctspine_zarr.vertebrae.VERTEBRA_COLOURS`.
"""

from __future__ import annotations

from ...vertebrae import OTHER_LABEL_COLOUR
from .case import plot_case, save_case_png
from .figure import Mark, draw_views
from .raster import Picture, render_views, save_picture
from .views import PLANES, PlaneView, read_views, volume_views
from .window import OVERLAY_ALPHA, WINDOWS, compose_rgb, label_overlay, parse_window

__all__ = [
    "OTHER_LABEL_COLOUR",
    "OVERLAY_ALPHA",
    "PLANES",
    "WINDOWS",
    "Mark",
    "Picture",
    "PlaneView",
    "compose_rgb",
    "draw_views",
    "label_overlay",
    "parse_window",
    "plot_case",
    "read_views",
    "render_views",
    "save_case_png",
    "save_picture",
    "volume_views",
]
