"""One benchmark *row* (device kind × precision × intra-op threads) over every workload.

For a row the suite builds the in-process :class:`~immich_ml.pipeline.Pipeline`, starts (or
reuses, with ``--url``) the HTTP service with the same settings, warms every mode up on every
payload (checking that the answers agree with the reference), then runs the alternating rounds of
:func:`immich_ml.bench.runner.measure` and condenses them into one JSON-ready result per workload.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from immich_ml.backends.base import Target
from immich_ml.bench import runner
from immich_ml.bench.reference import Reference
from immich_ml.bench.first_request import measure_first_requests
from immich_ml.bench.memory import process_tree_memory
from immich_ml.bench.service import Client, ServerProcess, multipart
from immich_ml.bench.workloads import Agreement, Workload
from immich_ml.config import Settings
from immich_ml.pipeline import Pipeline
from immich_ml.schemas import Entry, parse_entries

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Row:
    """What one row varies. ``intra_threads`` 0 keeps the service's default."""

    kind: str
    precision: str
    intra_threads: int = 0

    @property
    def label(self) -> str:
        threads = f" intra={self.intra_threads}" if self.intra_threads else ""
        return f"{self.kind} {self.precision}{threads}"


@dataclass(frozen=True)
class Plan:
    """How much to measure: request concurrencies, alternating rounds, passes over the payloads."""

    concurrencies: tuple[int, ...] = (1, 2, 4)
    rounds: int = 3
    passes: int = 2
    http: bool = True
    url: str | None = None
    reference: bool = True
    first_request: bool = True


def row_settings(base: Settings, row: Row, cache_folder: Path) -> Settings:
    """``base`` with the row's device, precision and threads; models never expire during the run."""
    return replace(
        base,
        cache_folder=cache_folder,
        device=row.kind,
        model_precision=row.precision,
        model_intra_op_threads=row.intra_threads or base.model_intra_op_threads,
        model_ttl=0,
        # Idle workers give freed memory back after a poll period: 1 s, so that the memory
        # figures taken after each workload (2.5 s idle) are the settled ones.
        model_ttl_poll_s=1,
        # Every measured query is computed: the recent-query cache would answer the second pass
        # over the texts (its hit time is measured with the first requests instead).
        text_cache_size=0,
    )


def settings_environment(settings: Settings) -> dict[str, str]:
    """The variables that give a ``python -m immich_ml`` child the settings the row changed."""
    return {
        "MACHINE_LEARNING_CACHE_FOLDER": str(settings.cache_folder),
        "MACHINE_LEARNING_DEVICE": settings.device,
        "MACHINE_LEARNING_MODEL_PRECISION": settings.model_precision,
        "MACHINE_LEARNING_MODEL_INTRA_OP_THREADS": str(settings.model_intra_op_threads),
        "MACHINE_LEARNING_MODEL_TTL": str(settings.model_ttl),
        "MACHINE_LEARNING_MODEL_TTL_POLL_S": str(settings.model_ttl_poll_s),
        "MACHINE_LEARNING_FAST_DECODE": "true" if settings.fast_decode else "false",
        "MACHINE_LEARNING_TEXT_VARIABLE_LENGTH": "true" if settings.text_variable_length else "false",
        "MACHINE_LEARNING_TEXT_CACHE_SIZE": str(settings.text_cache_size),
    }


def requests_per_run(workload: Workload, plan: Plan) -> int:
    return max(plan.passes * len(workload.payloads), max(plan.concurrencies))


def total_ticks(workloads: Sequence[Workload], plan: Plan, modes: int) -> int:
    """Progress-bar units (one per request) for one row."""
    runs = modes * len(plan.concurrencies) * plan.rounds
    return sum(requests_per_run(w, plan) * runs + len(w.payloads) * modes for w in workloads)


def modes_of(plan: Plan) -> list[str]:
    return [m for m in runner.MODES if (m != "http" or plan.http) and (m != "reference" or plan.reference)]


def run_row(
    row: Row,
    workloads: Sequence[Workload],
    references: Mapping[str, Reference],
    settings: Settings,
    plan: Plan,
    *,
    work_dir: Path,
    base_text_cache_size: int = 256,
    tick: Callable[[], None] = lambda: None,
    status: Callable[[str], None] = lambda text: None,
) -> list[dict[str, Any]]:
    """Measure every workload on ``row``; one result dict per workload (see ``report.SCHEMA``)."""
    pipeline = Pipeline(settings, Target(row.kind, settings.device_id))
    server: ServerProcess | None = None
    client: Client | None = None
    try:
        if plan.http:
            url = plan.url
            if url is None:
                status(f"{row.label}: starting python -m immich_ml")
                server = ServerProcess(settings_environment(settings), work_dir / f"server-{row.kind}-{row.precision}-{row.intra_threads}.log")
                server.start()
                url = server.url
            client = Client(url)
        results = []
        for workload in workloads:
            status(f"{row.label}: {workload.name}")
            result = _run_workload(row, workload, references.get(workload.name), pipeline, client,
                                   server, plan, tick)
            # Models stay loaded (TTL 0): the service's memory with this and the earlier workloads,
            # once idle workers have returned freed memory (MODEL_TTL_POLL_S = 1).
            if server and server.pid:
                time.sleep(2.5)
                result["service_memory"] = process_tree_memory(server.pid)
            else:
                result["service_memory"] = None
            results.append(result)
    finally:
        if client is not None:
            client.close()
        if server is not None:
            server.stop()
        pipeline.close()
    if plan.http and plan.url is None and plan.first_request:
        status(f"{row.label}: first requests")
        environment = settings_environment(replace(settings, text_cache_size=base_text_cache_size))
        firsts = measure_first_requests(
            workloads, environment,
            work_dir / f"server-first-{row.kind}-{row.precision}-{row.intra_threads}.log")
        for result, first in zip(results, firsts, strict=True):
            result["first_request"] = first
    return results


def _run_workload(
    row: Row,
    workload: Workload,
    reference: Reference | None,
    pipeline: Pipeline,
    client: Client | None,
    server: ServerProcess | None,
    plan: Plan,
    tick: Callable[[], None],
) -> dict[str, Any]:
    entries = parse_entries(workload.entries)
    payloads = workload.payloads
    count = len(payloads)

    def in_process(index: int, timings: dict[str, float] | None) -> Any:
        return _predict(pipeline, entries, payloads[index % count], timings)

    callers: dict[str, runner.Caller] = {"in-process": in_process}
    clocks: dict[str, runner.CpuClock] = {"in-process": time.process_time}
    if client is not None:
        bodies = [multipart(workload.entries, payload) for payload in payloads]
        http_client = client

        def over_http(index: int, timings: dict[str, float] | None) -> Any:
            data, worker_ms = http_client.predict_timed(*bodies[index % count])
            if timings is not None and worker_ms is not None:
                timings["worker"] = worker_ms / 1000.0
            return data

        callers["http"] = over_http
        clocks["http"] = server.cpu_seconds if server is not None else (lambda: None)
    if reference is not None:
        ref = reference

        def by_reference(index: int, timings: dict[str, float] | None) -> Any:
            return ref(payloads[index % count], timings)

        callers["reference"] = by_reference
        clocks["reference"] = time.process_time

    agreement = {name: Agreement() for name in callers if name != "in-process"}
    faces: list[int] = []
    for index in range(count):  # warm-up: loads models, checks that every mode gives the same answer
        ours = callers["in-process"](index, None)
        faces.append(len(ours.get("facial-recognition", [])))
        for name, call in callers.items():
            if name == "in-process":
                continue
            answer = call(index, None)
            agreement[name].add(workload.name, ours, orjson.loads(answer) if isinstance(answer, bytes) else answer)
        for _ in callers:
            tick()
    measurements = runner.measure(
        callers, clocks, concurrencies=plan.concurrencies, rounds=plan.rounds,
        requests=requests_per_run(workload, plan), tick=tick,
    )
    return {
        "workload": workload.name,
        "model": workload.model,
        "device": row.kind,
        "precision": row.precision,
        "intra_op_threads": row.intra_threads,
        "placement": _placement(pipeline, workload),
        "payloads": count,
        "faces_per_payload": faces if workload.name == "faces" else None,
        "stages_ms": runner.stage_means(measurements, "in-process"),
        "reference_stages_ms": runner.stage_means(measurements, "reference") if reference else None,
        "runs": runner.summarize_runs(measurements),
        "overhead": runner.overheads(measurements),
        "agreement": {name: a.to_json() for name, a in agreement.items()},
    }


def _predict(pipeline: Pipeline, entries: tuple[Entry, ...], payload: bytes | str,
             timings: dict[str, float] | None) -> dict[str, Any]:
    if isinstance(payload, bytes):
        return pipeline.predict(entries, image=payload, timings=timings)
    return pipeline.predict(entries, text=payload, timings=timings)


def _placement(pipeline: Pipeline, workload: Workload) -> list[dict[str, Any]]:
    """Where the workload's models run, from the pipeline's status (provider, device, precision)."""
    keys = ("task", "type", "name", "backend", "provider", "device", "precision", "fallback_reason")
    task = {"faces": "facial-recognition", "ocr": "ocr"}.get(workload.name, "clip")
    kind = workload.name.removeprefix("clip-") if task == "clip" else None
    names = {workload.model, workload.model.split("__")[-1]}  # OCR language variants share the detector
    return [
        {k: model.get(k) for k in keys}
        for model in pipeline.status()
        if model.get("name") in names and model.get("task") == task
        and (kind is None or model.get("type") == kind)
    ]
