"""Cross-request batching and warm-up on this machine: the figures the CPU defaults come from.

    .venv/bin/python benchmarks/bench_batching.py [--workload clip-visual|faces|clip-textual]
        [--concurrency 1,4,8] [--waits 0,2,5,10] [--rounds 3] [--passes 4]

Runs the engine's ``Pipeline`` in-process (as one worker does: request threads calling
``predict``) on a copy of the starter models whose CLIP batch axis is symbolic
(``immich_ml.bench.batchable``), for every ``MACHINE_LEARNING_BATCH_WAIT_MS`` in ``--waits`` at
every concurrency, in alternating rounds. ``wait 0`` (no batching) is the reference measured in
the same run. Prints median throughput, latency p50/p95 and CPU ms per request, then the
first-request time after load with and without warm-up. Figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from immich_ml.backends.base import Target
from immich_ml.bench.batchable import batchable_cache
from immich_ml.bench.inputs import load_inputs
from immich_ml.bench.runner import run_load
from immich_ml.bench.workloads import build_workloads
from immich_ml.config import Settings
from immich_ml.models import starter
from immich_ml.pipeline import Pipeline
from immich_ml.schemas import parse_entries

TEXTS = ["a dog on the beach", "receipt", "snowy mountains at sunset", "two people hugging at a wedding"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def first_request(cache: Path, entries: Any, payload: Any, *, warmup: bool, wait_ms: float) -> tuple[float, float, float]:
    """(load s, first request ms, steady median ms) for a fresh pipeline."""
    settings = Settings(cache_folder=cache, model_ttl=0, warmup=warmup, batch_wait_ms=wait_ms)
    pipeline = Pipeline(settings, Target("cpu"))
    kind = "image" if isinstance(payload, bytes) else "text"
    started = time.perf_counter()
    for step in pipeline._plan(entries, payload if kind == "image" else None, payload if kind == "text" else None):
        step.model.load()
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    pipeline.predict(entries, **{kind: payload})
    first_ms = (time.perf_counter() - started) * 1000
    steady = []
    for _ in range(5):
        started = time.perf_counter()
        pipeline.predict(entries, **{kind: payload})
        steady.append((time.perf_counter() - started) * 1000)
    pipeline.close()
    return load_s, first_ms, statistics.median(steady)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=Path(".cache/models"))
    parser.add_argument("--workload", default="clip-visual", choices=("clip-visual", "clip-textual", "faces"))
    parser.add_argument("--concurrency", default="1,4,8")
    parser.add_argument("--waits", default="0,2,5,10")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--passes", type=int, default=4, help="requests per run = passes × max(concurrency, payloads)")
    parser.add_argument("--max-batch", type=int, default=8, help="MAX_BATCH_SIZE__CLIP")
    args = parser.parse_args()
    import onnxruntime

    onnxruntime.set_default_logger_severity(3)
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    waits = [float(w) for w in args.waits.split(",")]
    work = Path(tempfile.gettempdir()) / "immich-ml-bench-batching"
    cache = batchable_cache(args.cache, work, (starter.CLIP_MODEL,))
    images = load_inputs(args.cache, starter.photos(args.cache), phones=False)
    workload = build_workloads([args.workload], cache, clip_model=starter.CLIP_MODEL, face_model=starter.FACE_MODEL,
                               images=images, texts=TEXTS)[0]
    entries = parse_entries(workload.entries)
    payloads = workload.payloads
    pipelines: dict[float, Pipeline] = {}
    for wait in waits:
        settings = replace(Settings(cache_folder=cache, model_ttl=0), batch_wait_ms=wait)
        settings = replace(settings, max_batch_size=replace(settings.max_batch_size, clip=args.max_batch))
        pipeline = Pipeline(settings, Target("cpu"))
        for payload in payloads:
            kind = "image" if isinstance(payload, bytes) else "text"
            pipeline.predict(entries, **{kind: payload})  # type: ignore[arg-type]
        pipelines[wait] = pipeline
    requests = args.passes * max(max(concurrencies), len(payloads))
    throughput: dict[tuple[float, int], list[float]] = {}
    latency: dict[tuple[float, int], list[float]] = {}
    cpu: dict[tuple[float, int], list[float]] = {}
    print(f"{os.cpu_count()} cores, load {os.getloadavg()}, {args.workload}, {requests} requests per run, "
          f"max batch {args.max_batch}")
    keys = [(w, c) for c in concurrencies for w in waits]
    for round_index in range(args.rounds):
        shift = round_index % len(keys)
        for wait, c in keys[shift:] + keys[:shift]:
            pipeline = pipelines[wait]

            def call(index: int, timings: dict[str, float] | None, pipeline: Pipeline = pipeline) -> Any:
                payload = payloads[index % len(payloads)]
                if isinstance(payload, bytes):
                    return pipeline.predict(entries, image=payload)
                return pipeline.predict(entries, text=payload)

            wall, latencies, cpu_s, _ = run_load(call, requests, c, cpu_clock=time.process_time)
            throughput.setdefault((wait, c), []).append(requests / wall)
            latency.setdefault((wait, c), []).extend(x * 1000 for x in latencies)
            cpu.setdefault((wait, c), []).append((cpu_s or 0.0) / requests * 1000)
    print(f"{'wait ms':>7} {'conc':>4} {'req/s':>8} {'× wait 0':>8} {'p50 ms':>8} {'p95 ms':>8} {'CPU ms/req':>10} {'mean batch':>10}")
    for c in concurrencies:
        reference = statistics.median(throughput[(0.0, c)]) if (0.0, c) in throughput else None
        for wait in waits:
            rate = statistics.median(throughput[(wait, c)])
            lat = latency[(wait, c)]
            ratio = f"{rate / reference:8.2f}" if reference else f"{'-':>8}"
            print(f"{wait:>7g} {c:>4} {rate:>8.2f} {ratio} {percentile(lat, 0.5):>8.0f} {percentile(lat, 0.95):>8.0f} "
                  f"{statistics.median(cpu[(wait, c)]):>10.0f} {_mean_batch(pipelines[wait]):>10}")
    for pipeline in pipelines.values():
        pipeline.close()
    print("\nfirst request after load (fresh pipeline; steady = median of the next 5)")
    print(f"{'warm-up':>7} {'wait ms':>7} {'load s':>7} {'first ms':>9} {'steady ms':>9}")
    for wait in sorted({waits[0], waits[-1]}):
        for warm in (False, True):
            load_s, first_ms, steady_ms = first_request(cache, entries, payloads[0], warmup=warm, wait_ms=wait)
            print(f"{'on' if warm else 'off':>7} {wait:>7g} {load_s:>7.2f} {first_ms:>9.0f} {steady_ms:>9.0f}")
    print(f"load after: {os.getloadavg()}")


def _mean_batch(pipeline: Pipeline) -> str:
    stats = [m["batching"] for m in pipeline.status() if m.get("batching")]
    items = sum(s["items"] for s in stats)
    batches = sum(s["batches"] for s in stats)
    return f"{items / batches:.2f}" if batches else "off"


if __name__ == "__main__":
    main()
