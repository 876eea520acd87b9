"""Smoke test of ``python -m immich_ml.bench --quick``: tiny CLIP, in-process, HTTP and reference.

Checks the JSON document's shape and that every figure is a positive, finite number. No timing
assertions: speed targets live in the benchmark's output, not in tests.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from immich_ml.models.timing import STAGES

REPO = Path(__file__).resolve().parents[2]


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def quick_run(starter_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str, Path]:
    out = tmp_path_factory.mktemp("bench")
    command = [
        sys.executable, "-m", "immich_ml.bench", "--quick", "--cache", str(starter_cache),
        "--json", str(out / "bench.json"), "--plot", str(out / "bench.png"), "--no-progress",
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "bench.json").read_text()), done.stdout, out


def test_document_shape(quick_run: tuple[dict[str, Any], str, Path]) -> None:
    doc, _, _ = quick_run
    assert doc["schema"] == "immich_ml.bench/1"
    assert _positive(doc["machine"]["cores"]) and doc["machine"]["cpu"]
    assert _positive(doc["floor"]["gflops"]) and _positive(doc["floor"]["gflops_per_core_cpu"])
    assert {i["kind"] for i in doc["inputs"]} == {"preview"}
    assert all(max(i["width"], i["height"]) == 1440 and _positive(i["bytes"]) for i in doc["inputs"])
    assert [r["workload"] for r in doc["results"]] == ["clip-visual", "clip-textual"]
    assert len(doc["summary"]) == len(doc["results"])


def test_figures_are_positive_and_finite(quick_run: tuple[dict[str, Any], str, Path]) -> None:
    doc, _, _ = quick_run
    for result in doc["results"]:
        assert result["device"] == "cpu" and result["precision"] == "FP32"
        assert result["placement"] and all(p["provider"] == "CPUExecutionProvider" for p in result["placement"])
        assert set(result["stages_ms"]) <= set(STAGES)
        assert _positive(result["stages_ms"]["inference"])
        assert _positive(result["reference_stages_ms"]["inference"])
        modes = {(r["mode"], r["concurrency"]) for r in result["runs"]}
        assert modes == {(m, c) for m in ("in-process", "http", "reference") for c in (1, 2)}
        for run in result["runs"]:
            assert _positive(run["throughput_rps"])
            lat = run["latency_ms"]
            assert all(_positive(lat[k]) for k in ("p50", "p95", "p99", "mean"))
            assert lat["p50"] <= lat["p95"] <= lat["p99"]
            assert _positive(run["vs_reference"])
            cpu = run["cpu_ms_per_request"]  # the server's CPU comes in 10-ms clock ticks: may read 0
            assert cpu is None or (math.isfinite(cpu) and cpu >= 0)
        fractions = ("in-process", "http", "http-over-in-process")
        assert set(result["overhead"]) == {*fractions, "http_minus_in_process_ms", "http_minus_in_process_p50_ms",
                                           "http_over_worker_ms", "http_over_worker_mean_ms"}
        assert result["overhead"]["http_over_worker_ms"] > 0  # the service adds time around the worker
        assert all(math.isfinite(v) for v in result["overhead"].values())
        assert all(result["overhead"][k] > -1 for k in fractions)
        memory = result["service_memory"]
        assert _positive(memory["rss_mb"]) and memory["processes"] >= 2  # service + worker
        first = result["first_request"]
        assert all(_positive(first[k]) for k in ("after_start_ms", "steady_ms", "after_unload_ms"))
        assert all(_positive(v) for v in first["load_time_s"].values())
        if result["workload"] == "clip-textual":
            assert _positive(first["repeat_query_ms"])
        assert all(_positive(result[k]) for k in ("gflop_per_request", "floor_ms", "floor_cpu_ms", "ceiling_rps"))
        # the same model files answer alike in every mode
        assert result["agreement"]["http"]["min_cosine"] > 0.9999
        assert result["agreement"]["reference"]["min_cosine"] > 0.99


def test_reference_memory_and_goals(quick_run: tuple[dict[str, Any], str, Path]) -> None:
    doc, text, _ = quick_run
    assert [step["after"] for step in doc["peer_memory"]] == ["start", "clip-visual", "clip-textual"]
    assert all(_positive(step["rss_mb"]) for step in doc["peer_memory"])
    goals = {g["goal"]: g for g in doc["goals"]}
    assert "text p50 over HTTP, concurrency 1 (× reference p50)" in goals
    assert "service overhead per text request (HTTP − worker time, median ms)" in goals
    assert all(isinstance(g["met"], bool) and g["target"] for g in doc["goals"])
    assert "issue 12 goals" in text


def test_table_and_plot(quick_run: tuple[dict[str, Any], str, Path]) -> None:
    doc, text, out = quick_run
    assert "clip-visual" in text and "summary" in text and doc["machine"]["cpu"] in text
    png = (out / "bench.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
