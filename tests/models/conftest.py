"""Fixtures for the model layer: a settings object on a temporary cache, tiny repositories, a fake hub."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

import pytest
from fakehub import FakeHub

from immich_ml.config import Settings


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    folder = tmp_path / "cache"
    folder.mkdir()
    return folder


@pytest.fixture
def settings(cache: Path) -> Settings:
    return Settings(cache_folder=cache)


@pytest.fixture
def fake_hub() -> Iterator[FakeHub]:
    hub = FakeHub()
    with hub.serve():
        yield hub


def with_settings(settings: Settings, **changes: object) -> Settings:
    return dataclasses.replace(settings, **changes)  # type: ignore[arg-type]


def closed_port_endpoint() -> str:
    """An endpoint nothing listens on: any request fails to connect (what offline looks like)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class RecordingSession:
    """Wraps a real session; keeps a copy of every bound input at the moment ``run()`` is called."""

    def __init__(self, session: Any) -> None:
        self._session = session
        self.recorded: list[dict[str, np.ndarray[Any, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    @contextmanager
    def bind(self, shapes: Mapping[str, tuple[int, ...]]) -> Iterator[Any]:
        recorded = self.recorded

        class Call:
            def __init__(self, call: Any) -> None:
                self._call = call
                self.inputs = call.inputs

            def run(self) -> Any:
                recorded.append({k: np.array(v, copy=True) for k, v in self.inputs.items()})
                return self._call.run()

        with self._session.bind(shapes) as call:
            yield Call(call)


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
