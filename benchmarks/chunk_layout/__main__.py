"""``python -m benchmarks.chunk_layout``: see :mod:`benchmarks.chunk_layout`."""

from __future__ import annotations

import sys

from benchmarks.chunk_layout.run import main

if __name__ == "__main__":
    sys.exit(main())
