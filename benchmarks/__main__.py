"""``python -m benchmarks``: the comparative study of ctspine_zarr (``benchmarks/study/``).

Run from the repository root::

    python -m benchmarks [--quick] [--cases N] [--json OUT] [--markdown OUT] [--workdir DIR]
                         [--only SECTIONS]

Nothing is imported at module level: the ingest's "processes" scheduler starts its workers
with ``spawn``, and they must not pay for torch, datasets and the rest of the study.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    from benchmarks.study.run import main

    sys.exit(main())
