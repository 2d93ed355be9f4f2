"""``python -m benchmarks.regression``: run the asv-style benchmarks of this folder without asv.

Every ``time_*`` method of every class (for each of its ``params``) is timed as asv does:
``setup`` first, then ``repeat`` rounds (default 5) of ``number`` calls (default: as many as
fill about 0.1 s), reporting the median seconds a call. The benchmark files import only
the package and ``_data`` (relatively), so that asv, which imports this folder as its own
package, collects them as well; this runner's own imports wait until it runs.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import itertools
import json
import pkgutil
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any


def benchmarks() -> Iterator[tuple[str, type]]:
    """``(module.Class, class)`` of every benchmark class, in file order."""
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__package__}.{info.name}")
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and any(m.startswith("time_") for m in dir(cls)):
                yield f"{info.name}.{name}", cls


def time_one(cls: type, method: str, args: tuple[Any, ...]) -> float:
    """Median seconds of one call of ``method`` after ``setup(*args)``."""
    bench = cls()
    getattr(bench, "setup", lambda *a: None)(*args)
    call = getattr(bench, method)
    try:
        number = getattr(bench, "number", 0)
        if not number:  # calibrate: as many calls as fill about 0.1 s
            start = time.perf_counter()
            call(*args)
            number = max(1, int(0.1 / max(time.perf_counter() - start, 1e-6)))
        samples = []
        for _ in range(getattr(bench, "repeat", 5)):
            start = time.perf_counter()
            for _ in range(number):
                call(*args)
            samples.append((time.perf_counter() - start) / number)
    finally:
        getattr(bench, "teardown", lambda *a: None)(*args)
    return statistics.median(samples)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks whose ``module.Class.method`` name contains ``--only``."""
    from benchmarks.common import fmt_seconds, markdown_table

    parser = argparse.ArgumentParser(prog="python -m benchmarks.regression")
    parser.add_argument("--only", default="", help="run the names containing this text")
    parser.add_argument("--json", type=Path, help="write {name: seconds} here")
    args = parser.parse_args(argv)
    results: dict[str, float] = {}
    for name, cls in benchmarks():
        params = getattr(cls, "params", None)
        grid = [()] if params is None else [(p,) for p in params]
        if params and isinstance(params[0], list):  # asv's list of lists: a product
            grid = list(itertools.product(*params))
        for method in sorted(m for m in dir(cls) if m.startswith("time_")):
            for args_ in grid:
                full = f"{name}.{method}" + (f"{list(args_)}" if args_ else "")
                if args.only in full:
                    results[full] = time_one(cls, method, args_)
                    print(f"{full}: {fmt_seconds(results[full])}", file=sys.stderr)
    print(
        markdown_table(
            ["benchmark", "median per call"], [[k, fmt_seconds(v)] for k, v in results.items()]
        )
    )
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
