"""Opening a many-case store with the generic idioms and with ``ctspine_zarr.open``.

``python -m benchmarks.generic_readers STORE [STORE ...]`` measures each store in fresh
interpreters (median of ``--repeats``) and prints one table, the stores side by side: the
root document's size, then per idiom the time of the first open (imports excluded), the
reads it made and whether it works. Give it a store of the previous format and one of the
current to compare them (``docs/format.md``, "The root document"). ``--make N DIR``
first writes an N-case tiny raw tree (the official split file's names) into DIR and ingests
it there as ``DIR/store.zarr``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks.common import fmt_bytes, fmt_seconds, markdown_table

IDIOMS = {
    "ctspine_zarr.open(store)": "ctspine_zarr.open(store)",
    "xr.open_zarr(store)": "xr.open_zarr(store)",
    'xr.open_zarr(store, group="cases/<id>")': "xr.open_zarr(store, group=f'cases/{case}')",
    'zarr.open_group(store)["cases/<id>/image"]': "zarr.open_group(store, mode='r')"
    "[f'cases/{case}/image']",
    'xr.open_datatree(store, engine="zarr")': "xr.open_datatree(store, engine='zarr')",
}

ONE = r"""
import json, os, sys, time, warnings
store, code = sys.argv[1], sys.argv[2]
import numpy, xarray as xr, zarr
import ctspine_zarr
from zarr.storage import LocalStore, WrapperStore
case = sorted(os.listdir(os.path.join(store, "cases")))[0]
if case == "zarr.json":
    case = sorted(os.listdir(os.path.join(store, "cases")))[1]
class Reads(WrapperStore):
    n = 0
    async def get(self, key, prototype, byte_range=None):
        Reads.n += 1
        return await super().get(key, prototype, byte_range)
path = store
store = Reads(LocalStore(path, read_only=True))
warnings.simplefilter("error")
t0 = time.perf_counter()
try:
    eval(code)
    ok = "works"
except Exception as err:
    ok = type(err).__name__
t1 = time.perf_counter()
print(json.dumps({"s": t1 - t0, "reads": Reads.n, "result": ok}))
"""


def measure(store: Path, code: str, repeats: int) -> dict[str, object]:
    """Run ``code`` in ``repeats`` fresh interpreters; the median time, reads and result."""
    runs = []
    for _ in range(repeats):
        done = subprocess.run(
            [sys.executable, "-c", ONE, str(store), code],
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {
        "s": statistics.median(r["s"] for r in runs),
        "reads": runs[0]["reads"],
        "result": runs[0]["result"],
    }


def make(n_cases: int, folder: Path) -> Path:
    """Write an ``n_cases`` tiny raw tree into ``folder`` and ingest it; the store's path."""
    from benchmarks.study.scale import write_scale_tree
    from ctspine_zarr.io.layout import official_split_file, parse_split_file

    text = official_split_file().decode("utf-8-sig")
    ids = list(parse_split_file(text))[:n_cases]
    raw, store = folder / "raw", folder / "store.zarr"
    write_scale_tree(raw, text, ids, (8, 16, 16))
    subprocess.run(
        [sys.executable, "-m", "ctspine_zarr.cli", "ingest", str(raw), str(store), "--quiet"],
        check=True,
    )
    return store


def main(argv: Sequence[str] | None = None) -> int:
    """Measure the stores given; print the table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.generic_readers")
    parser.add_argument("stores", nargs="*", type=Path)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--make", nargs=2, metavar=("N", "DIR"))
    args = parser.parse_args(argv)
    stores = list(args.stores)
    if args.make:
        stores.append(make(int(args.make[0]), Path(args.make[1])))
    results = {
        store: {name: measure(store, code, args.repeats) for name, code in IDIOMS.items()}
        for store in stores
    }
    rows = [["root zarr.json", *(fmt_bytes((s / "zarr.json").stat().st_size) for s in stores)]]
    for name in IDIOMS:
        cells = []
        for store in stores:
            r = results[store][name]
            cells.append(f"{fmt_seconds(float(r['s']))}, {r['reads']} reads, {r['result']}")
        rows.append([f"`{name}`", *cells])
    print(markdown_table(["first open, fresh interpreter", *map(str, stores)], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
