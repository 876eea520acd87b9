"""Helpers shared by the model-layer tests (fixtures live in conftest.py)."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np

from immich_ml.config import Settings


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
