"""The label audit: find the anatomically impossible label maps before they reach training.

``ctspine-zarr audit STORE`` (:func:`audit_store`, ``ds.ctspine.audit()``) checks every
case's vertebra labels against anatomy and reports one finding per problem: the case, the
check, the label values involved, a sentence saying what is wrong, and a severity
(``error``: surely a labelling error; ``warning``: perhaps one).

Checks
------
``order``
    Vertebrae out of cranio-caudal order. The store is canonical RAS+, so a cranial
    vertebra has the larger world z whatever the source's orientation (LPS, descending
    slices, sagittal storage). Each labelled vertebra's centre (the centroid of its largest
    piece, in world mm) must lie above the next labelled one's in the anatomical order
    (T13 between T12 and L1, L6 below L5); a tilted spine may bring two centres close, so
    it is reported when it lies below by more than a quarter of the shorter z extent of the
    two (:data:`~ctspine_zarr.audit.checks.ORDER_TOLERANCE`). Error.
``gap``
    A label missing between two labelled ones of the spine's sequence C1 ... C7, T1 ...
    T12, L1 ... L5, sacrum, coccyx (21 and 23 present, 22 absent). T13 and L6 are optional:
    their absence is no gap, and when labelled they count for the vertebrae around them.
    One finding per run of missing labels. Error.
``fragments``
    A label split into disconnected 3D pieces (26-connectivity) where a piece besides the
    largest holds more than ``min_fragment_voxels`` voxels (default 100): a stray island,
    or two vertebrae under one number. The detail gives the pieces' voxel counts and their
    shortest distance to the largest in mm. Error when the second piece holds at least a
    fifth of the largest's voxels, else a warning.
``size``
    A vertebra's volume (ml, as ``stats`` computes it) far outside its level's distribution
    over the whole store: the robust z-score of its log volume exceeds 3.5 (see
    :mod:`ctspine_zarr.audit.size`). Vertebrae cut by the edge of the volume are left out,
    and a level needs at least 8 whole vertebrae in the store. Warning.
``overlap``
    One vertebra's slices nested within another's (from the stored per-slice index; C1
    within C2 is anatomy: C1 rings the dens), an error; or a run of slices each holding
    three or more vertebra labels where anatomy allows two, a warning.

Reading
-------
Per case, dask tasks read only what the checks need (:mod:`ctspine_zarr.audit.graph`):
the catalogue's boxes and voxel counts (``gap``, ``size``), the case's own document and
per-slice index (``overlap``), and the label map alone, never the image, shard by shard and
cropped to the spine (``order``, ``fragments``). They run on threads, processes or a
``distributed`` cluster like the statistics (:mod:`ctspine_zarr.parallel`).

Results
-------
:class:`AuditResult` holds the findings (``.frame()``: a DataFrame with the columns
``case``, ``check``, ``labels``, ``detail``, ``severity``). ``record=True`` (the command's
default) merges them into the store's audit record beside the catalogue (``audit/zarr.json``,
with the audit's version and time; ``docs/format.md``, "The audit record"), which
``ctspine-zarr info`` summarises, :func:`flagged_cases` and ``case_ids(exclude_flagged=...)``
read, and an ingest that rewrites a case from changed sources prunes.
:mod:`ctspine_zarr.audit.pictures` draws a flagged case (``audit --out DIR``, ``show --audit``).
"""

from .checks import CHECKS, ERROR, MIN_FRAGMENT_VOXELS, WARNING, Finding
from .record import describe_record, flagged_cases, read_findings, record_audit
from .result import AUDIT_VERSION, COLUMNS, AuditResult
from .run import audit_store
from .size import MIN_LEVEL_CASES, SIZE_THRESHOLD

__all__ = [
    "AUDIT_VERSION",
    "CHECKS",
    "COLUMNS",
    "ERROR",
    "MIN_FRAGMENT_VOXELS",
    "MIN_LEVEL_CASES",
    "SIZE_THRESHOLD",
    "WARNING",
    "AuditResult",
    "Finding",
    "audit_store",
    "describe_record",
    "flagged_cases",
    "read_findings",
    "record_audit",
]
