"""Static checks as tests: ``mypy --strict`` on the package and ``mypy.stubtest`` on the compiled
modules, so a hand-written ``.pyi`` can never drift from what Cython actually built."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CORE = REPO / "immich_ml" / "_core"
ALLOWLIST = Path(__file__).resolve().parent / "stubtest_allowlist.txt"


def _compiled_modules() -> list[str]:
    names = []
    for stub in sorted(CORE.glob("_*.pyi")):
        module = f"immich_ml._core.{stub.stem}"
        # Every stub has a built module: the ARM NN loader (_armnn) links no ARM NN library either.
        importlib.import_module(module)
        names.append(module)
    return names


def test_mypy_strict() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "immich_ml"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_stubtest_compiled_modules() -> None:
    modules = _compiled_modules()
    if not modules:
        pytest.fail("no compiled modules found: is the package built (pip install -e .)?")
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "--allowlist", str(ALLOWLIST), *modules],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
