"""Load generation and statistics: N requests at concurrency C, per mode, in alternating rounds.

A *mode* is one way of serving a workload: ``in-process`` (``Pipeline.predict`` called from C
threads, as a worker's request pool does), ``http`` (C client threads against ``python -m
immich_ml``) and ``reference`` (immich-machine-learning's way, :mod:`immich_ml.bench.reference`).
Each round runs every (concurrency, mode) once, modes in a rotated order, so load from other
processes on a shared machine hits all modes alike; figures are medians over rounds and ratios are
taken within a round before the median.
"""

from __future__ import annotations

import itertools
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from immich_ml.models.timing import STAGES

MODES = ("in-process", "http", "reference")
# (request index, stage timings sink or None) -> response body
Caller = Callable[[int, "dict[str, float] | None"], Any]
CpuClock = Callable[[], "float | None"]


@dataclass
class Measurement:
    """One run: ``requests`` requests from ``concurrency`` threads. Seconds throughout."""

    mode: str
    concurrency: int
    round: int
    requests: int
    wall_s: float
    latencies_s: list[float]
    cpu_s: float | None
    stages: list[dict[str, float]] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        """Requests per second."""
        return self.requests / self.wall_s if self.wall_s > 0 else 0.0


def run_load(
    call: Caller,
    requests: int,
    concurrency: int,
    *,
    cpu_clock: CpuClock,
    collect_stages: bool = False,
    tick: Callable[[], None] = lambda: None,
) -> tuple[float, list[float], float | None, list[dict[str, float]]]:
    """Send ``requests`` requests (indices 0..requests-1, each taken by the next free thread) from
    ``concurrency`` threads. Returns (wall seconds, per-request latencies in index order, CPU
    seconds per ``cpu_clock`` or None, per-request stage timings when ``collect_stages``)."""
    counter = itertools.count()
    lock = threading.Lock()
    latencies = [0.0] * requests
    stages: list[dict[str, float]] = [{} for _ in range(requests)] if collect_stages else []
    failures: list[BaseException] = []
    barrier = threading.Barrier(concurrency + 1)

    def worker() -> None:
        barrier.wait()
        while not failures:
            with lock:
                index = next(counter)
            if index >= requests:
                return
            sink = stages[index] if collect_stages else None
            start = time.perf_counter()
            try:
                call(index, sink)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
                failures.append(exc)
                return
            latencies[index] = time.perf_counter() - start
            tick()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    cpu_start = cpu_clock()
    start = time.perf_counter()
    barrier.wait()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    cpu_end = cpu_clock()
    if failures:
        raise failures[0]
    cpu = cpu_end - cpu_start if cpu_start is not None and cpu_end is not None else None
    return wall, latencies, cpu, stages


def measure(
    callers: dict[str, Caller],
    cpu_clocks: dict[str, CpuClock],
    *,
    concurrencies: Sequence[int],
    rounds: int,
    requests: int,
    tick: Callable[[], None] = lambda: None,
) -> list[Measurement]:
    """Every (round, concurrency, mode) once; modes rotate by round. Stage timings at concurrency 1."""
    modes = list(callers)
    results = []
    for round_index in range(rounds):
        for concurrency in concurrencies:
            shift = round_index % len(modes)
            for mode in modes[shift:] + modes[:shift]:
                wall, latencies, cpu, stages = run_load(
                    callers[mode], requests, concurrency, cpu_clock=cpu_clocks[mode],
                    collect_stages=concurrency == 1, tick=tick,
                )
                results.append(Measurement(mode, concurrency, round_index, requests, wall, latencies, cpu, stages))
    return results


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/mean in milliseconds."""
    data = np.asarray(values, dtype=np.float64) * 1000.0
    return {
        "p50": round(float(np.percentile(data, 50)), 3),
        "p95": round(float(np.percentile(data, 95)), 3),
        "p99": round(float(np.percentile(data, 99)), 3),
        "mean": round(float(data.mean()), 3),
    }


def _median(values: Sequence[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def summarize_runs(measurements: Sequence[Measurement]) -> list[dict[str, Any]]:
    """Per (mode, concurrency): median throughput over rounds, pooled latency percentiles,
    median CPU ms per request, and throughput ratio to ``reference`` (per round, then median)."""
    rows = []
    keys = sorted({(m.mode, m.concurrency) for m in measurements}, key=lambda k: (MODES.index(k[0]), k[1]))
    for mode, concurrency in keys:
        runs = [m for m in measurements if m.mode == mode and m.concurrency == concurrency]
        cpu = [m.cpu_s / m.requests * 1000.0 for m in runs if m.cpu_s is not None]
        ratios = []
        for run in runs:
            ref = next((m for m in measurements if m.mode == "reference" and m.concurrency == concurrency
                        and m.round == run.round), None)
            if ref is not None and ref.throughput > 0:
                ratios.append(run.throughput / ref.throughput)
        row: dict[str, Any] = {
            "mode": mode,
            "concurrency": concurrency,
            "rounds": len(runs),
            "requests": sum(m.requests for m in runs),
            "throughput_rps": round(_median([m.throughput for m in runs]) or 0.0, 4),
            "latency_ms": percentiles([x for m in runs for x in m.latencies_s]),
            "cpu_ms_per_request": round(v, 3) if (v := _median(cpu)) is not None else None,
            "vs_reference": round(v, 4) if (v := _median(ratios)) is not None else None,
        }
        rows.append(row)
    return rows


def stage_means(measurements: Sequence[Measurement], mode: str) -> dict[str, float]:
    """Mean ms per request in each stage (concurrency-1 runs of ``mode``), median over rounds."""
    per_round: dict[str, list[float]] = {stage: [] for stage in STAGES}
    for run in measurements:
        if run.mode != mode or not run.stages:
            continue
        for stage in STAGES:
            per_round[stage].append(1000.0 * sum(s.get(stage, 0.0) for s in run.stages) / len(run.stages))
    return {stage: round(v, 3) for stage, values in per_round.items() if (v := _median(values)) is not None}


def overheads(measurements: Sequence[Measurement]) -> dict[str, float]:
    """Service overhead over the runtime's own time, at concurrency 1, median over rounds.

    ``(mean end-to-end latency) / (mean inference-stage time) - 1`` over the same requests: for
    ``in-process`` the pipeline's latency, for ``http`` the HTTP latency against the in-process
    inference time of the same round (the server runs the same pipeline). ``http-over-in-process``
    is what the HTTP server and worker process add to the in-process pipeline;
    ``http_minus_in_process_ms`` (means) and ``…_p50_ms`` (medians) say it in milliseconds.
    ``http_over_worker_ms`` is the median over requests of (HTTP latency − the worker's own time
    for that request, from its ``Server-Timing`` header), ``…_mean_ms`` the mean: HTTP, parsing and
    the pipes, paired per request. In-process runs share the bench process with the client
    threads and the reference's spinning ORT threads, so the in-process differences can even
    come out negative; the per-request figure cannot be fooled that way.
    """
    result: dict[str, list[float]] = {"in-process": [], "http": [], "http-over-in-process": [],
                                      "http_minus_in_process_ms": [], "http_minus_in_process_p50_ms": []}
    for run in measurements:
        # What the service adds around the worker's own time, request by request (the worker
        # reports it in a Server-Timing header): immune to whatever slows the bench process.
        service = [latency - s["worker"] for latency, s in zip(run.latencies_s, run.stages, strict=False)
                   if "worker" in s]
        if run.mode == "http" and run.concurrency == 1 and service:
            result.setdefault("http_over_worker_ms", []).append(1000.0 * statistics.median(service))
            result.setdefault("http_over_worker_mean_ms", []).append(1000.0 * statistics.fmean(service))
    for run in measurements:
        if run.mode != "in-process" or run.concurrency != 1 or not run.stages:
            continue
        inference = sum(s.get("inference", 0.0) for s in run.stages) / len(run.stages)
        if inference <= 0:
            continue
        result["in-process"].append(statistics.fmean(run.latencies_s) / inference - 1.0)
        http = next((m for m in measurements if m.mode == "http" and m.concurrency == 1 and m.round == run.round), None)
        if http is not None:
            result["http"].append(statistics.fmean(http.latencies_s) / inference - 1.0)
            result["http-over-in-process"].append(
                statistics.fmean(http.latencies_s) / statistics.fmean(run.latencies_s) - 1.0
            )
            # The same in milliseconds per request: what the HTTP server and the worker hop add.
            result["http_minus_in_process_ms"].append(
                1000.0 * (statistics.fmean(http.latencies_s) - statistics.fmean(run.latencies_s)))
            result["http_minus_in_process_p50_ms"].append(
                1000.0 * (statistics.median(http.latencies_s) - statistics.median(run.latencies_s)))
    return {mode: round(v, 4) for mode, values in result.items() if (v := _median(values)) is not None}
