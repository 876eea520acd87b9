"""First-request time: after the service starts, and after a model was unloaded for being idle.

A dedicated ``python -m immich_ml`` (no preload, ``MODEL_TTL`` of a few seconds) answers, per
workload: the first request (the model loads on it, as in Immich by default), a few steady
requests on other payloads (their median is the steady latency), for search text the same query
again (an answer from the recent-query cache), then, once ``/health`` reports the workload's
models unloaded, one more request (the model loads again). Each first-request figure is also
given as a ratio to the steady latency, and the load times the worker reported are kept.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from immich_ml.bench.service import Client, ServerProcess, multipart
from immich_ml.bench.workloads import Workload

TTL_S = 3
_STEADY_REQUESTS = 5


def _request_ms(client: Client, body: tuple[bytes, str]) -> float:
    start = time.perf_counter()
    client.predict(*body)
    return (time.perf_counter() - start) * 1000.0


def _models(client: Client) -> list[dict[str, Any]]:
    status, body = client.request("GET", "/health")
    if status not in (200, 503):
        return []
    return [m for w in orjson.loads(body).get("workers", []) for m in w.get("models") or []]


def _workload_models(workload: Workload, models: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    task = "facial-recognition" if workload.name == "faces" else "clip"
    kind = workload.name.removeprefix("clip-") if task == "clip" else None
    return [m for m in models if m.get("name") == workload.model and m.get("task") == task
            and (kind is None or m.get("type") == kind)]


def _wait_unloaded(client: Client, workload: Workload, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        mine = _workload_models(workload, _models(client))
        if mine and all(m.get("state") == "unloaded" for m in mine):
            return True
        time.sleep(0.25)
    return False


def measure_first_requests(workloads: Sequence[Workload], environment: Mapping[str, str],
                           log_path: Path) -> list[dict[str, Any]]:
    """One dict per workload: ``after_start_ms``, ``steady_ms``, ``after_unload_ms``, their ratios,
    ``repeat_query_ms`` (search text) and the worker's ``load_time_s`` per model."""
    overrides = {**environment, "MACHINE_LEARNING_MODEL_TTL": str(TTL_S), "MACHINE_LEARNING_MODEL_TTL_POLL_S": "1"}
    results = []
    with ServerProcess(overrides, log_path) as server:
        client = Client(server.url)
        try:
            for workload in workloads:
                bodies = [multipart(workload.entries, p) for p in workload.payloads[: _STEADY_REQUESTS + 2]]
                count = len(bodies)
                first = _request_ms(client, bodies[0])
                steady = [_request_ms(client, body) for body in bodies[1:] or bodies]
                steady_ms = statistics.median(steady)
                result: dict[str, Any] = {
                    "workload": workload.name,
                    "model": workload.model,
                    "after_start_ms": round(first, 2),
                    "steady_ms": round(steady_ms, 2),
                }
                if not workload.is_image:
                    result["repeat_query_ms"] = round(
                        statistics.median(_request_ms(client, bodies[1]) for _ in range(3)), 3)
                if _wait_unloaded(client, workload, timeout_s=TTL_S + 30):
                    result["after_unload_ms"] = round(_request_ms(client, bodies[count - 1]), 2)
                else:
                    result["after_unload_ms"] = None
                result["load_time_s"] = {m["type"]: m.get("load_time_s") for m in _workload_models(workload, _models(client))}
                for key in ("after_start_ms", "after_unload_ms"):
                    value = result.get(key)
                    result[key.replace("_ms", "_vs_steady")] = round(value / steady_ms, 2) if value and steady_ms else None
                results.append(result)
        finally:
            client.close()
    return results
