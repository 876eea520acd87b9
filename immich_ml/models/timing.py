"""Per-stage wall-clock accounting for one request (decode, preprocess, inference, postprocess, serialize)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

STAGES = ("decode", "preprocess", "inference", "postprocess", "serialize")


class Stages:
    """Adds the seconds spent in each named stage to ``sink`` (if given). Thread-safe.

    Entries of one request may run on several threads; their times add up per stage, so the sum can
    exceed the request's wall time when entries overlap.
    """

    __slots__ = ("_sink", "_lock")

    def __init__(self, sink: dict[str, float] | None = None) -> None:
        self._sink = sink
        self._lock = threading.Lock()

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        if self._sink is None:
            yield
            return
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - start)

    def add(self, stage: str, seconds: float) -> None:
        if self._sink is None:
            return
        with self._lock:
            self._sink[stage] = self._sink.get(stage, 0.0) + seconds
