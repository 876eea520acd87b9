"""Fixtures for the OCR model tests: the real starter model, a pipeline on it, a fake model registry."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fake_registry import FakeRegistry  # noqa: E402


@pytest.fixture
def fake_registry() -> Iterator[FakeRegistry]:
    registry = FakeRegistry()
    with registry.serve():
        yield registry


@pytest.fixture(scope="session")
def ocr_model_dir(starter_cache: Path) -> Path:
    return starter_cache / "ocr" / "PP-OCRv5_mobile"
