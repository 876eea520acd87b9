"""Fixtures for the model layer: a settings object on a temporary cache, a fake hub, recording sessions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakehub import FakeHub
from model_testing import RecordingSession

from immich_ml.config import Settings


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    folder = tmp_path / "cache"
    folder.mkdir()
    return folder


@pytest.fixture
def settings(cache: Path) -> Settings:
    # Tests count the runs a request makes; warm-up runs at load have their own tests.
    return Settings(cache_folder=cache, warmup=False)


@pytest.fixture
def fake_hub() -> Iterator[FakeHub]:
    hub = FakeHub()
    with hub.serve():
        yield hub


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> list[RecordingSession]:
    """Every session opened during the test, wrapped in a :class:`RecordingSession`."""
    from immich_ml.backends import registry

    sessions: list[RecordingSession] = []
    real = registry.open_session

    def open_session(*args: Any, **kwargs: Any) -> Any:
        wrapped = RecordingSession(real(*args, **kwargs))
        sessions.append(wrapped)
        return wrapped

    monkeypatch.setattr(registry, "open_session", open_session)
    return sessions
