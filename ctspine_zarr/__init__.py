"""CTSpine1K as a cloud-ready, analysis-ready Zarr store.

``import ctspine_zarr`` registers the ``ds.ctspine`` xarray accessor.
"""

from __future__ import annotations

from . import accessor as _accessor  # noqa: F401  (registers ds.ctspine)
from ._version import __version__
from .errors import (
    CaseNotFoundError,
    CTSpineError,
    IngestInterrupted,
    InvalidCaseError,
    SelectionError,
    StoreError,
    TreeMismatchError,
    VertebraNotFoundError,
)
from .io.export import to_nifti
from .io.store import open, open_catalogue  # noqa: A004
from .write.ingest import IngestReport, ingest
from .write.verify import verify
from .write.verifyreport import VerifyReport

__all__ = [
    "CTSpineError",
    "CaseNotFoundError",
    "IngestInterrupted",
    "IngestReport",
    "InvalidCaseError",
    "SelectionError",
    "StoreError",
    "TreeMismatchError",
    "VertebraNotFoundError",
    "VerifyReport",
    "__version__",
    "ingest",
    "open",
    "open_catalogue",
    "to_nifti",
    "verify",
]
