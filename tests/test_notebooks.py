"""The notebooks: committed without outputs, and each runs top to bottom without an error.

Each notebook is executed with nbclient in a kernel started from *this* interpreter (a
kernel spec written to a temporary folder: ``sys.executable -m ipykernel_launcher``), so
the run does not depend on which ``python3`` kernel spec, if any, the machine has installed.
The kernel gets no ``CTSPINE_ZARR_STORE``: every notebook generates its own small store, as on
a fresh machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
KERNEL = "ctspine-zarr-tests"
#: What each notebook needs beyond the package: skipped without it locally, failed in CI.
NEEDS = {
    "03_training.ipynb": ("torch",),
    "04_object_storage.ipynb": ("aiohttp", "moto", "s3fs"),
}
TIMEOUT = 600
#: Modules CI may lack: torch has a CPU wheel for Python 3.11 only here (the 3.13 job).
NO_WHEEL = {"torch"} if sys.version_info >= (3, 12) else set()


def _require(*modules: str) -> None:
    """Skip locally when a module is missing; fail in CI, which must run every notebook."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        message = f"the notebooks need {', '.join(missing)}"
        if set(missing) <= NO_WHEEL:
            pytest.skip(f"{message}, which has no CPU wheel for Python {sys.version_info[:2]} here")
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must install it")
        pytest.skip(message)


def test_the_four_notebooks_are_there() -> None:
    names = [p.name for p in NOTEBOOKS]
    for name in (
        "01_quickstart.ipynb",
        "02_statistics.ipynb",
        "03_training.ipynb",
        "04_object_storage.ipynb",
        "05_audit.ipynb",
    ):
        assert name in names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_without_outputs(path: Path) -> None:
    nb = json.loads(path.read_text("utf-8"))
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [], f"{path.name}: a cell has outputs"
            assert cell["execution_count"] is None, f"{path.name}: a cell has a count"


@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kernel spec that starts ipykernel with the interpreter running the tests."""
    _require("nbclient", "nbformat", "ipykernel", "matplotlib")
    root = tmp_path_factory.mktemp("kernels")
    spec = root / KERNEL
    spec.mkdir()
    argv = [sys.executable, "-Xfrozen_modules=off", "-m", "ipykernel_launcher"]
    kernel = {
        "argv": [*argv, "-f", "{connection_file}"],
        "display_name": "ctspine_zarr tests",
        "language": "python",
        "metadata": {"supported_encryption": ["curve"]},  # encrypted transport if available
    }
    (spec / "kernel.json").write_text(json.dumps(kernel), "utf-8")
    return root


def _kernel_env(work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTSPINE_ZARR_")}
    env.pop("MPLBACKEND", None)  # the kernel picks its inline backend
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"  # no debugger notice on stderr
    env["TMPDIR"] = str(work)  # the generated stores land in the test's folder
    return env


def _warnings(nb) -> list[str]:  # type: ignore[no-untyped-def]
    found = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                text = output.get("text", "")
                if "warn" in text.lower():
                    found.append(text)
    return found


#: Executes one notebook with nbclient, in its own process: jupyter_client leaves zmq sockets
#: to the garbage collector, whose ResourceWarnings must not land in this pytest process
#: (``filterwarnings = error``) or in whichever test happens to run when they are collected.
RUNNER = """
import sys
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

source, target, kernels, name, timeout = sys.argv[1:6]
nb = nbformat.read(source, as_version=4)
options = {}
if "transport_encryption" in AsyncKernelManager.class_trait_names():
    options["transport_encryption"] = "auto"  # CurveZMQ keys: no plain-TCP notice
specs = KernelSpecManager(kernel_dirs=[kernels])
km = AsyncKernelManager(kernel_name=name, kernel_spec_manager=specs, **options)
client = NotebookClient(
    nb, km=km, timeout=int(timeout), resources={"metadata": {"path": str(Path(source).parent)}}
)
try:
    client.execute()  # raises CellExecutionError on the first failing cell
finally:
    nbformat.write(nb, target)
"""


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path, kernel_dir: Path, tmp_path: Path) -> None:
    _require(*NEEDS.get(path.name, ()))
    import nbformat

    executed = tmp_path / path.name
    command = [sys.executable, "-c", RUNNER, str(path), str(executed), str(kernel_dir)]
    started = time.perf_counter()
    done = subprocess.run(
        [*command, KERNEL, str(TIMEOUT)],
        env=_kernel_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=TIMEOUT + 120,
    )
    seconds = time.perf_counter() - started
    assert done.returncode == 0, f"{path.name} failed:\n{done.stderr[-6000:]}"
    nb = nbformat.read(executed, as_version=4)
    unexecuted = [c for c in nb.cells if c.cell_type == "code" and c.execution_count is None]
    assert not unexecuted, f"{path.name}: {len(unexecuted)} cells did not run"
    assert not _warnings(nb), f"{path.name} printed warnings:\n" + "\n".join(_warnings(nb))
    print(f"{path.name}: {seconds:.1f} s")
