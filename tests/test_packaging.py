"""The project's own files: dependencies in sync, README commands, CI script."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


#: conda-forge names of packages whose PyPI name differs.
CONDA_TO_PYPI = {"python-isal": "isal", "python-blosc2": "blosc2"}


def _name(requirement: str) -> str:
    name = re.split(r"[<>=!~\[ ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")
    return CONDA_TO_PYPI.get(name, name)


def _bound(requirement: str) -> str:
    match = re.search(r">=\s*([\w.]+)", requirement)
    return match.group(1) if match else ""


def test_environment_yml_lists_the_runtime_dependencies_of_pyproject() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime = {_name(r): _bound(r) for r in project["dependencies"]}
    lines = (REPO / "environment.yml").read_text().splitlines()
    start = lines.index("dependencies:")
    conda = {}
    for line in lines[start + 1 :]:
        item = line.strip()
        if not item.startswith("- ") or item.startswith("- pip"):
            continue
        spec = item[2:]
        name = _name(spec)
        if name not in ("python",):
            conda[name] = _bound(spec)
    assert conda == runtime


def test_readme_holds_the_two_commands_and_ci_runs_its_test_command() -> None:
    readme = (REPO / "README.md").read_text()
    commands = re.findall(r"^```(?:bash|sh)\n(.*?)```", readme, flags=re.S | re.M)
    setup = [c.strip() for c in commands if "pip install" in c]
    assert len(setup) == 2, setup
    demo, tests = setup
    assert "ctspine-zarr demo" in demo
    assert "pytest" in tests
    ci = (REPO / ".ci" / "run").read_text()
    assert tests in ci
