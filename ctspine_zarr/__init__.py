"""CTSpine1K as a cloud-ready, analysis-ready Zarr store.

``import ctspine_zarr`` registers the ``ds.ctspine`` xarray accessor.
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import accessor as _accessor  # noqa: E402,F401  (registers ds.ctspine)
from .errors import CaseNotFoundError, CTSpineError, InvalidCaseError, StoreError  # noqa: E402
from .io.export import to_nifti  # noqa: E402
from .io.store import open, open_catalogue  # noqa: E402,A004
from .write.ingest import IngestReport, ingest  # noqa: E402
from .write.verify import verify  # noqa: E402
from .write.verifyreport import VerifyReport  # noqa: E402

__all__ = [
    "CTSpineError",
    "CaseNotFoundError",
    "IngestReport",
    "InvalidCaseError",
    "StoreError",
    "VerifyReport",
    "__version__",
    "ingest",
    "open",
    "open_catalogue",
    "to_nifti",
    "verify",
]
