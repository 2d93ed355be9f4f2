"""Small regression benchmarks of ctspine_zarr, asv-style: one concern per file.

Each file holds classes whose ``setup`` builds (or reuses) what it reads and whose
``time_*`` methods are what is timed, as airspeed velocity (asv) collects them. They measure
the package alone, on a small generated tree, to catch a slowdown from one commit to the
next; the comparison against nibabel and Arrow is ``python -m benchmarks`` (``study/``).

Run them without asv::

    python -m benchmarks.regression [--only NAME] [--json OUT]
"""
