"""Fixtures for the model layer: a settings object on a temporary cache, tiny repositories, a fake hub."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator
from pathlib import Path

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
