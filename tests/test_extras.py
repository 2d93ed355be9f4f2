"""The framework extras stay optional: the package works without them, and says what to install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

FRAMEWORKS = ("monai", "torchio", "torch", "nnunetv2", "SimpleITK")


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=180
    )


def test_the_package_imports_and_exports_without_the_frameworks(
    store: Path, tmp_path: Path
) -> None:
    blocked = "; ".join(f"sys.modules[{name!r}] = None" for name in FRAMEWORKS)
    done = _python(
        f"import sys; {blocked}\n"
        "import ctspine_zarr, ctspine_zarr.nnunet, ctspine_zarr.io.caseref\n"
        "from ctspine_zarr.nnunet import export_nnunet\n"
        f"r = export_nnunet({str(store)!r}, {str(tmp_path)!r}, dataset_id=3, splits=['train'])\n"
        "print(r.written)"
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 0
    done = _python(
        "import sys, ctspine_zarr, ctspine_zarr.nnunet, ctspine_zarr.io.caseref\n"
        f"print(sorted(set({FRAMEWORKS!r}) & set(sys.modules)))"
    )
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr


@pytest.mark.parametrize(("module", "framework"), [("monai", "monai"), ("torchio", "torchio")])
def test_an_integration_without_its_framework_says_what_to_install(
    module: str, framework: str
) -> None:
    done = _python(f"import sys; sys.modules[{framework!r}] = None; import ctspine_zarr.{module}")
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: ") and f'pip install "ctspine-zarr[{module}]"' in last
