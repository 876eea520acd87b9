"""Failure and scale on the real two-node cluster: a replica killed under load, autoscaling 1 → 2.

Runs after test_contract.py on the same deployed service (session fixture in conftest.py).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pytest
from immich_client import LiveService
from ray_waiting import wait_for
from test_e2e import FACES, VISUAL

from immich_ml.models.starter import TINY_CLIP_MODEL

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]


def _replicas(service: LiveService, deployment: str) -> list[dict[str, Any]]:
    return [r for r in service.json("/health")["workers"] if r["deployment"] == deployment]


class _Load:
    """``clients`` threads sending ``fields`` back to back until stopped; records every answer."""

    def __init__(self, service: LiveService, fields: dict[str, str | bytes], clients: int) -> None:
        self._service, self._fields = service, fields
        self._stop = threading.Event()
        self.answers: list[tuple[int, dict[str, str], bytes, float]] = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(clients)
        self._futures = [self._pool.submit(self._client) for _ in range(clients)]

    def _client(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            status, headers, body = self._service.predict(self._fields, timeout=60)
            with self._lock:
                self.answers.append((status, headers, body, time.monotonic() - started))

    def stop(self) -> None:
        self._stop.set()
        for future in self._futures:
            future.result(timeout=90)  # a hung request raises socket.timeout here
        self._pool.shutdown()


def test_autoscaling_from_one_to_two_replicas_under_load(
    ray_service: LiveService, photos: dict[str, Path]
) -> None:
    before = _replicas(ray_service, "facial-recognition")
    assert len(before) == 1
    load = _Load(ray_service, {"entries": FACES, "image": photos["astronaut"].read_bytes()}, clients=4)
    try:
        scaled = wait_for(lambda: len(_replicas(ray_service, "facial-recognition")) == 2, timeout=90)
    finally:
        load.stop()
    replicas = _replicas(ray_service, "facial-recognition")
    assert scaled, f"still {len(replicas)} replica(s) after 90 s of load"
    assert len({r["node"] for r in replicas}) == 2  # one per node (MAX_REPLICAS_PER_NODE=1)
    assert {a[0] for a in load.answers} == {200}
    assert sum(r["requests"] for r in replicas) >= 1 and all(r["state"] == "ready" for r in replicas)


def test_replica_killed_mid_load_requests_answer_and_replica_is_replaced(
    ray_service: LiveService, photos: dict[str, Path]
) -> None:
    load = _Load(ray_service, {"entries": VISUAL, "image": photos["chelsea"].read_bytes()}, clients=4)
    try:
        assert wait_for(lambda: len(load.answers) >= 4, timeout=30)
        # Requests are routed by model name: the victim is a replica that holds this one, busy.
        busy = wait_for(lambda: [
            r for r in _replicas(ray_service, "clip-visual")
            if TINY_CLIP_MODEL in r["multiplexed_models"] and r["inflight"] > 0
        ], timeout=20, interval=0.1)
        assert busy, _replicas(ray_service, "clip-visual")
        victim = busy[0]
        os.kill(victim["pid"], signal.SIGKILL)
        killed_at = len(load.answers)
        wait_for(lambda: len(load.answers) >= killed_at + 8, timeout=30)
    finally:
        load.stop()  # every request came back: none hung
    statuses = [a[0] for a in load.answers]
    assert set(statuses) <= {200, 503}, statuses
    for status, headers, body, _ in load.answers:
        if status == 503:
            assert headers.get("retry-after") and "replica" in orjson.loads(body)["detail"]
    assert max(a[3] for a in load.answers) < 60
    # The kill did hit requests in flight: Serve's router saw them fail with the dead replica
    # (it retries those itself) or our dispatch retried them ("replica lost") or answered 503.
    log = ray_service.log()
    retried = log.count(f"id='{victim['replica']}'") and log.count("because it has died") + log.count("replica lost")
    assert retried + statuses.count(503) >= 1, "no request was in flight on the killed replica"
    replaced = wait_for(
        lambda: [r for r in _replicas(ray_service, "clip-visual") if r["replica"] != victim["replica"]
                 and r["pid"] != victim["pid"]] and all(
            r["replica"] != victim["replica"] for r in _replicas(ray_service, "clip-visual")),
        timeout=90,
    )
    assert replaced, _replicas(ray_service, "clip-visual")
    status, _, _ = ray_service.predict({"entries": VISUAL, "image": photos["chelsea"].read_bytes()})
    assert status == 200
