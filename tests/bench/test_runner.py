"""Load generation and statistics of the benchmark runner, on stand-in callers (no models)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from immich_ml.bench import runner


def test_run_load_keeps_the_concurrency_and_counts_every_request() -> None:
    lock = threading.Lock()
    active = peak = 0
    seen: list[int] = []

    def call(index: int, timings: dict[str, float] | None) -> None:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
            seen.append(index)
        time.sleep(0.01)
        if timings is not None:
            timings["inference"] = 0.01
        with lock:
            active -= 1

    ticks: list[int] = []
    wall, latencies, cpu, stages = runner.run_load(call, 12, 3, cpu_clock=time.process_time, collect_stages=True,
                                                   tick=lambda: ticks.append(1))
    assert sorted(seen) == list(range(12)) and len(ticks) == 12
    assert peak == 3
    assert all(lat >= 0.009 for lat in latencies)
    assert wall < sum(latencies)  # requests overlapped
    assert cpu is not None and cpu >= 0
    assert [s["inference"] for s in stages] == [0.01] * 12


def test_run_load_raises_the_first_failure() -> None:
    def call(index: int, timings: dict[str, float] | None) -> None:
        if index == 3:
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        runner.run_load(call, 10, 2, cpu_clock=lambda: None)


def test_measure_rotates_modes_and_summaries_compare_within_rounds() -> None:
    order: list[str] = []

    def make(mode: str, delay: float) -> runner.Caller:
        def call(index: int, timings: dict[str, float] | None) -> None:
            if index == 0:
                order.append(mode)
            time.sleep(delay)
            if timings is not None:
                timings["inference"] = delay / 2
        return call

    callers = {"in-process": make("in-process", 0.004), "reference": make("reference", 0.012)}
    clocks: dict[str, runner.CpuClock] = {"in-process": time.process_time, "reference": time.process_time}
    runs = runner.measure(callers, clocks, concurrencies=(1, 2), rounds=2, requests=4)
    assert len(runs) == 2 * 2 * 2
    assert order[:2] == ["in-process", "reference"] and order[4:6] == ["reference", "in-process"]
    rows = {(r["mode"], r["concurrency"]): r for r in runner.summarize_runs(runs)}
    assert rows[("reference", 1)]["vs_reference"] == 1.0
    assert rows[("in-process", 1)]["vs_reference"] > 1.5  # 3x faster per request
    assert rows[("in-process", 1)]["rounds"] == 2 and rows[("in-process", 1)]["requests"] == 8
    stages = runner.stage_means(runs, "in-process")
    assert stages["inference"] == pytest.approx(2.0, rel=1e-6)  # ms
    overhead = runner.overheads(runs)
    assert overhead["in-process"] > 0.5  # latency 4 ms over 2 ms of "inference"
    assert "http" not in overhead


def test_percentiles_against_numpy() -> None:
    values = list(np.random.default_rng(0).uniform(0.001, 0.1, 101))
    result = runner.percentiles(values)
    assert result["p50"] == pytest.approx(np.percentile(values, 50) * 1000, abs=1e-3)
    assert result["p99"] == pytest.approx(np.percentile(values, 99) * 1000, abs=1e-3)
    assert result["mean"] == pytest.approx(np.mean(values) * 1000, abs=1e-3)
