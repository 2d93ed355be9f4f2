"""Build the API reference: HTML pages from the numpy docstrings of every ``ctspine_zarr`` module.

Usage (needs the ``docs`` extra: ``pip install -e ".[docs]"``)::

    python docs/api.py [OUTPUT]     # default OUTPUT: docs/api/ (ignored by git)

Any warning while importing, documenting or rendering is an error: all of them are printed
and the exit status is 1. CI runs this; the pages are not published anywhere.
"""

from __future__ import annotations

import pkgutil
import sys
import warnings
from pathlib import Path

import pdoc.doc
import pdoc.render

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "api"


def module_names() -> list[str]:
    """The package and every module in it, parents before their children."""
    import ctspine_zarr

    walk = pkgutil.walk_packages(ctspine_zarr.__path__, "ctspine_zarr.")
    return ["ctspine_zarr", *(m.name for m in walk)]


def build(output: Path) -> int:
    """Write one page per module, the index and the search index; return the page count.

    This is ``pdoc.pdoc(..., output_directory=output)`` with the module list given rather than
    walked: pdoc's walk and a package's list of submodules keep to its ``__all__``, which for
    ``ctspine_zarr`` names two functions (``ingest``, ``verify``) and no module. Each package
    page here lists all of its modules.
    """
    names = module_names()
    modules = {name: pdoc.doc.Module.from_name(name) for name in names}
    for name, module in modules.items():
        if module.is_package:
            module.submodules = [modules[n] for n in names if n.rpartition(".")[0] == name]
    for module in modules.values():
        page = output / f"{module.fullname.replace('.', '/')}.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(pdoc.render.html_module(module, modules), encoding="utf-8")
    (output / "index.html").write_text(pdoc.render.html_index(modules), encoding="utf-8")
    (output / "search.js").write_text(pdoc.render.search_index(modules), encoding="utf-8")
    return len(modules)


def main(argv: list[str]) -> int:
    """Build into ``argv[0]`` (default ``docs/api/``); 1 if anything warned."""
    output = Path(argv[0]) if argv else DEFAULT_OUTPUT
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pdoc.render.configure(docformat="numpy")
        pages = build(output)
    unique = dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught)
    for text in unique:
        print(f"warning: {text}", file=sys.stderr)
    print(f"API reference: {pages} module pages in {output}, {len(unique)} warnings")
    return 1 if unique else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
