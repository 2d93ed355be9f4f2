"""``python -m benchmarks``: the one-command benchmark of ctspine_zarr (``benchmarks/suite.py``).

Run from the repository root::

    python -m benchmarks [--quick] [--cases N] [--json OUT] [--markdown OUT] [--workdir DIR]
                         [--only SECTIONS]

Nothing is imported at module level: the ingest's "processes" scheduler starts its workers
with ``spawn``, and they must not pay for torch, datasets and the rest of the suite.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    from benchmarks.suite import main

    sys.exit(main())
