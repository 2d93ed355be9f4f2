"""The package's shape stays what the README's code layout promises: no import cycles,
modules of a readable size."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parents[1] / "ctspine_zarr"

#: a module over this many lines is split by concern (the README's code layout).
MAX_MODULE_LINES = 600


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_package(name: str) -> bool:
    return (PACKAGE.parent / name.replace(".", "/") / "__init__.py").exists()


def _module_exists(name: str) -> bool:
    return _is_package(name) or (PACKAGE.parent / (name.replace(".", "/") + ".py")).exists()


def _top_level_imports(path: Path) -> set[str]:
    """Modules of the package this file imports when it is imported (not inside functions,
    not under ``if TYPE_CHECKING``)."""
    name = _module_name(path)
    here = name if path.name == "__init__.py" else name.rpartition(".")[0]
    edges: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("ctspine_zarr"):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                edges.add(sub if _module_exists(sub) else target)
        elif isinstance(node, ast.Import):
            edges |= {a.name for a in node.names if a.name.startswith("ctspine_zarr")}
    edges.discard(name)
    return edges


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _top_level_imports(p) for p in PACKAGE.rglob("*.py")}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle a depth-first walk of ``graph`` meets, as the modules along it."""
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


def test_the_import_graph_has_no_cycle() -> None:
    graph = _graph()
    assert "ctspine_zarr.io.store" in graph["ctspine_zarr"]  # the graph sees relative imports
    assert not (cycles := _cycles(graph)), " ; ".join(" -> ".join(c) for c in cycles)


def test_the_cycle_check_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_is_over_the_size_limit() -> None:
    sizes = {
        str(p.relative_to(PACKAGE.parent)): len(p.read_text().splitlines())
        for p in PACKAGE.rglob("*.py")
    }
    assert not {p: n for p, n in sizes.items() if n > MAX_MODULE_LINES}


def test_every_package_import_of_the_benchmarks_and_docs_scripts_resolves() -> None:
    """A move of the package must not leave a benchmark or a docs script importing a name
    that is gone (their imports sit inside functions, where running the suite never gets).
    A module that exists but needs an optional extra absent here (torch) is not imported."""
    import importlib

    def names(module: str) -> Any:
        try:
            return importlib.import_module(module)
        except ImportError as err:
            if (getattr(err, "name", None) or "").startswith("ctspine_zarr"):
                raise
            return None  # an optional dependency is missing: the module's file exists

    root = PACKAGE.parent
    scripts = [*(root / "benchmarks").rglob("*.py"), *(root / "docs").rglob("*.py")]
    missing = []
    for path in scripts:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ctspine_zarr"):
                assert node.module is not None
                if not _module_exists(node.module):
                    missing.append(f"{path.name}: {node.module}")
                    continue
                module = names(node.module)
                missing += [
                    f"{path.name}: {node.module}.{a.name}"
                    for a in node.names
                    if module is not None
                    and not hasattr(module, a.name)
                    and not _module_exists(f"{node.module}.{a.name}")
                ]
            elif isinstance(node, ast.Import):
                missing += [
                    f"{path.name}: {a.name}"
                    for a in node.names
                    if a.name.startswith("ctspine_zarr") and not _module_exists(a.name)
                ]
    assert scripts and not missing, missing
