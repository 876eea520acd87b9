"""CPU thread settings × request concurrency: which defaults avoid oversubscription on small hosts.

Runs the engine's ``Pipeline`` in-process on the starter models (the 1440-px previews of
``python -m immich_ml.bench``) for every combination of ONNX Runtime intra-op threads, request
concurrency and intra-op spinning, in alternating rounds, and prints the median throughput.

    .venv/bin/python benchmarks/bench_threads.py [--workload clip-visual|faces] [--rounds 3]

Spinning (``session.intra_op.allow_spinning``) keeps idle intra-op threads busy-waiting for the
next parallel section: it saves a wake-up per operator when a core is free, and burns the core
when another request (or another process) wants it. Figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from immich_ml.backends import ort_options
from immich_ml.backends.base import Target
from immich_ml.bench.inputs import load_inputs
from immich_ml.bench.runner import run_load
from immich_ml.bench.workloads import build_workloads
from immich_ml.config import Settings
from immich_ml.models import starter
from immich_ml.pipeline import Pipeline
from immich_ml.schemas import parse_entries

_original_session_options = ort_options.session_options
_SPIN = {"value": "1"}


def _session_options(*args: Any, **kwargs: Any) -> Any:
    options = _original_session_options(*args, **kwargs)
    options.add_session_config_entry("session.intra_op.allow_spinning", _SPIN["value"])
    return options


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=Path(".cache/models"))
    parser.add_argument("--workload", default="clip-visual", choices=("clip-visual", "clip-textual", "faces"))
    parser.add_argument("--threads", default="1,2,4")
    parser.add_argument("--concurrency", default="1,2,4")
    parser.add_argument("--spin", default="1,0", help="allow_spinning values to compare")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--passes", type=int, default=1)
    args = parser.parse_args()
    import onnxruntime

    onnxruntime.set_default_logger_severity(3)  # overwriting the service's spinning entry is intended
    ort_options.session_options = _session_options  # type: ignore[assignment]
    threads = [int(t) for t in args.threads.split(",")]
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    spins = args.spin.split(",")
    images = load_inputs(args.cache, starter.photos(args.cache), phones=False)
    workload = build_workloads([args.workload], args.cache, clip_model=starter.CLIP_MODEL,
                               face_model=starter.FACE_MODEL, images=images, texts=[
                                   "a dog on the beach", "receipt", "snowy mountains at sunset"])[0]
    entries = parse_entries(workload.entries)
    payloads = workload.payloads
    pipelines: dict[tuple[int, str], Pipeline] = {}
    for spin in spins:
        _SPIN["value"] = spin
        for t in threads:
            settings = replace(Settings(cache_folder=args.cache, model_ttl=0), model_intra_op_threads=t)
            pipeline = Pipeline(settings, Target("cpu"))
            for payload in payloads:  # loads the models with this spin setting, warms them up
                kind = "image" if isinstance(payload, bytes) else "text"
                pipeline.predict(entries, **{kind: payload})  # type: ignore[arg-type]
            pipelines[(t, spin)] = pipeline
    requests = max(args.passes * len(payloads), max(concurrencies))
    results: dict[tuple[int, str, int], list[float]] = {}
    cpu: dict[tuple[int, str, int], list[float]] = {}
    print(f"{os.cpu_count()} cores, load {os.getloadavg()}, {args.workload}, {requests} requests per run")
    for round_index in range(args.rounds):
        keys = [(t, s, c) for c in concurrencies for t in threads for s in spins]
        shift = round_index % len(keys)
        for t, spin, c in keys[shift:] + keys[:shift]:
            pipeline = pipelines[(t, spin)]

            def call(index: int, timings: dict[str, float] | None, pipeline: Pipeline = pipeline) -> Any:
                payload = payloads[index % len(payloads)]
                if isinstance(payload, bytes):
                    return pipeline.predict(entries, image=payload)
                return pipeline.predict(entries, text=payload)

            wall, _, cpu_s, _ = run_load(call, requests, c, cpu_clock=time.process_time)
            results.setdefault((t, spin, c), []).append(requests / wall)
            cpu.setdefault((t, spin, c), []).append((cpu_s or 0.0) / requests * 1000)
    print(f"{'intra':>5} {'spin':>4} " + "".join(f"{'c=' + str(c) + ' req/s':>13}{'CPU ms':>8}" for c in concurrencies))
    for t in threads:
        for spin in spins:
            cells = "".join(
                f"{statistics.median(results[(t, spin, c)]):>13.2f}{statistics.median(cpu[(t, spin, c)]):>8.0f}"
                for c in concurrencies
            )
            print(f"{t:>5} {spin:>4} {cells}")
    print(f"load after: {os.getloadavg()}")
    for pipeline in pipelines.values():
        pipeline.close()


if __name__ == "__main__":
    main()
