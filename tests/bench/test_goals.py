"""Issue 12's goal table from a bench document, and the memory figures it uses."""

from __future__ import annotations

import os
from typing import Any

from immich_ml.bench import goals, memory


def _run(mode: str, concurrency: int, rps: float, p50: float, p99: float) -> dict[str, Any]:
    return {"mode": mode, "concurrency": concurrency, "throughput_rps": rps,
            "latency_ms": {"p50": p50, "p95": p99, "p99": p99, "mean": p50}}


def _result(workload: str, precision: str, runs: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"workload": workload, "precision": precision, "device": "cpu", "intra_op_threads": 0, "runs": runs,
            "overhead": {}, "agreement": {"reference": {"min_cosine": 0.995}}, **extra}


def test_goals_are_ratios_within_the_run() -> None:
    text = _result("clip-textual", "FP32", [
        _run("http", 1, 50.0, 10.0, 30.0), _run("http", 2, 60.0, 20.0, 40.0),
        _run("reference", 1, 20.0, 50.0, 60.0), _run("reference", 2, 25.0, 70.0, 80.0)],
        overhead={"http_over_worker_ms": 0.4, "http_over_worker_mean_ms": 0.6, "http_minus_in_process_p50_ms": 0.3},
        first_request={"after_start_ms": 500.0, "after_start_vs_steady": 50.0, "after_unload_ms": 15.0,
                       "after_unload_vs_steady": 1.5, "steady_ms": 10.0, "load_time_s": {"textual": 0.4}},
        service_memory={"rss_mb": 500.0, "pss_mb": 450.0, "processes": 3})
    visual_int8 = _result("clip-visual", "INT8", [_run("http", 1, 40.0, 25, 30), _run("reference", 1, 11.0, 90, 95)])
    doc = {"results": [text, visual_int8], "peer_memory": [{"after": "start", "rss_mb": 90.0}]}
    found = {g["goal"]: g for g in goals.check(doc)}
    p50 = found["text p50 over HTTP, concurrency 1 (× reference p50)"]
    assert p50["measured"] == 0.2 and p50["met"]
    tail = found["text p99 / p50 over HTTP, concurrency 1"]
    assert tail["measured"] == 3.0 and not tail["met"]
    assert found["text throughput over HTTP (× reference, best concurrency)"]["measured"] == 2.4
    assert found["service overhead per text request (HTTP − worker time, median ms)"]["met"]
    assert found["clip-textual FP32 http: throughput at concurrency 2 / 1"]["measured"] == 1.2
    int8 = found["clip-visual INT8 throughput over HTTP (× reference)"]
    assert int8["measured"] == round(40 / 11, 3) and not int8["met"]  # 3.64 < 4
    assert not found["clip-textual: first request after start (× steady latency)"]["met"]
    assert found["clip-textual: first request after a TTL unload (× steady latency)"]["met"]
    # memory needs all three workloads of the FP32 row
    assert not any(g["goal"].startswith("service RSS") for g in goals.check(doc))
    assert "issue 12 goals" in "\n".join(goals.format_goals(goals.check(doc)))


def test_process_tree_memory_of_this_process() -> None:
    mine = memory.process_tree_memory(os.getpid())
    assert mine is not None and mine["rss_mb"] > 10 and mine["processes"] >= 1
    assert mine["pss_mb"] is None or 0 < mine["pss_mb"] <= mine["rss_mb"] + 1
    assert memory.process_tree_memory(2**22 + 12345) is None
