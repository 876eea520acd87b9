"""Fixtures for backend tests: generated graphs in an Immich-style model folder."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import nets  # noqa: E402

from immich_ml.backends.base import ModelArtifacts  # noqa: E402


@pytest.fixture(scope="session")
def arcface_artifacts(tmp_path_factory: pytest.TempPathFactory) -> ModelArtifacts:
    """An ArcFace-shaped recognizer with a symbolic batch axis, laid out like the Immich cache."""
    directory = tmp_path_factory.mktemp("cache") / "facial-recognition" / "tiny_arcface" / "recognition"
    onnx = nets.arcface_like(directory / "model.onnx")
    return ModelArtifacts(directory=directory, onnx=onnx)


@pytest.fixture
def fresh_arcface(tmp_path: Path) -> ModelArtifacts:
    """A private copy (for tests that write caches or converted models next to it)."""
    directory = tmp_path / "facial-recognition" / "tiny_arcface" / "recognition"
    return ModelArtifacts(directory=directory, onnx=nets.arcface_like(directory / "model.onnx"))
