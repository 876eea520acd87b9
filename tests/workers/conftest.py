"""Pool tests run real worker processes with :mod:`pipeline_double` as their pipeline."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from immich_ml.config import load_settings
from immich_ml.workers.pool import WorkerPool

HERE = Path(__file__).resolve().parent
# Spawned workers inherit sys.path, so they can import the double by its bare name.
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

DOUBLE = "pipeline_double:PipelineDouble"
BASE_ENV = {
    "MACHINE_LEARNING_DEVICE": "cpu",
    "MACHINE_LEARNING_REQUEST_THREADS": "2",
    "MACHINE_LEARNING_WORKER_START_TIMEOUT_S": "30",
}

PoolFactory = Callable[..., WorkerPool]


@pytest.fixture
def make_pool() -> Iterator[PoolFactory]:
    """``make_pool(env=..., factory=..., wait=True)`` starts a pool that is closed after the test."""
    pools: list[WorkerPool] = []

    def start(
        env: Mapping[str, str] | None = None, factory: str = DOUBLE, wait: bool = True
    ) -> WorkerPool:
        settings = load_settings({**BASE_ENV, **(env or {})})
        pool = WorkerPool(settings, pipeline_factory=factory)
        pools.append(pool)
        pool.start()
        if wait:
            assert pool.wait_ready(30), pool.snapshot()
        return pool

    yield start
    for pool in pools:
        pool.close(timeout=5)
