"""Prometheus text exposition (format 0.0.4), written by hand: counters, histograms, and gauges
read from the worker pool when ``/metrics`` is scraped.

Series (all prefixed ``immich_ml_``):

* ``http_requests_total{method,route,status}``
* ``predict_requests_total{task,type,model,status}`` and
  ``predict_duration_seconds{task,type,model}`` (histogram, whole request as the client sees it)
* ``stage_duration_seconds{stage}`` (histogram: decode, preprocess, inference, postprocess,
  serialize, as the pipeline reports them)
* ``batch_size{task,type}`` (histogram: items per dependent run, e.g. faces embedded per image)
* ``errors_total{kind}`` (the ``kind`` of :mod:`immich_ml.errors`)
* per worker slot: ``worker_ready``, ``worker_inflight``, ``worker_queue_depth``,
  ``worker_restarts_total``, ``worker_requests_total``, ``worker_errors_total``
* per loaded model: ``model_loaded``, ``model_load_seconds``, ``model_runs_total``
* per batching model (cross-request batching, kept in the worker and read from its status):
  ``model_batch_size`` (histogram: items per run) and ``model_batch_wait_seconds`` (histogram:
  each item's wait in the batching window); ``model_oom_total{outcome}`` (accelerator
  out-of-memory events, and how many runs then went to the CPU)
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{name}="{_escape(value)}"' for name, value in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


class Counter:
    """A monotonically increasing value per label set."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        self.name, self.help, self.label_names = name, help_text, tuple(labels)
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, *labels: str) -> float:
        with self._lock:
            return self._values.get(labels, 0.0)

    def lines(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return [f"{self.name}{_labels(self.label_names, k)} {_number(v)}" for k, v in items]


class Histogram:
    """Cumulative buckets, sum and count per label set."""

    kind = "histogram"

    def __init__(
        self, name: str, help_text: str, labels: Sequence[str] = (), buckets: Sequence[float] = LATENCY_BUCKETS
    ) -> None:
        self.name, self.help, self.label_names = name, help_text, tuple(labels)
        self.buckets = tuple(sorted(buckets))
        self._series: dict[tuple[str, ...], list[float]] = {}  # bucket counts..., sum, count
        self._lock = threading.Lock()

    def observe(self, value: float, *labels: str) -> None:
        with self._lock:
            series = self._series.setdefault(labels, [0.0] * (len(self.buckets) + 2))
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    series[i] += 1
            series[-2] += value
            series[-1] += 1

    def count(self, *labels: str) -> int:
        with self._lock:
            series = self._series.get(labels)
            return int(series[-1]) if series else 0

    def lines(self) -> list[str]:
        with self._lock:
            items = sorted((k, list(v)) for k, v in self._series.items())
        out = []
        for key, series in items:
            for bound, hits in zip(self.buckets, series, strict=False):
                le = f'le="{_number(bound)}"'
                out.append(f"{self.name}_bucket{_labels(self.label_names, key, le)} {_number(hits)}")
            inf = 'le="+Inf"'
            out.append(f"{self.name}_bucket{_labels(self.label_names, key, inf)} {_number(series[-1])}")
            out.append(f"{self.name}_sum{_labels(self.label_names, key)} {_number(series[-2])}")
            out.append(f"{self.name}_count{_labels(self.label_names, key)} {_number(series[-1])}")
        return out


def _family(name: str, kind: str, help_text: str, lines: Iterable[str]) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *lines]


class ServiceMetrics:
    """Every series the service exports; thread-safe."""

    def __init__(self) -> None:
        self.http_requests = Counter(
            "immich_ml_http_requests_total", "HTTP requests by method, route and status.",
            ("method", "route", "status"),
        )
        self.predict_requests = Counter(
            "immich_ml_predict_requests_total", "Prediction requests per model and HTTP status.",
            ("task", "type", "model", "status"),
        )
        self.predict_duration = Histogram(
            "immich_ml_predict_duration_seconds", "Prediction request latency per model (seconds).",
            ("task", "type", "model"),
        )
        self.stage_duration = Histogram(
            "immich_ml_stage_duration_seconds", "Time per pipeline stage inside a worker (seconds).",
            ("stage",),
        )
        self.batch_size = Histogram(
            "immich_ml_batch_size", "Items per dependent model run (faces, text boxes).",
            ("task", "type"), BATCH_BUCKETS,
        )
        self.errors = Counter("immich_ml_errors_total", "Failed requests by error kind.", ("kind",))
        self._own: list[Counter | Histogram] = [
            self.http_requests, self.predict_requests, self.predict_duration,
            self.stage_duration, self.batch_size, self.errors,
        ]

    def record_prediction(self, meta: Mapping[str, Any]) -> None:
        """Stage timings and batch sizes a worker reported with its answer."""
        for stage, seconds in dict(meta.get("timings") or {}).items():
            self.stage_duration.observe(float(seconds), str(stage))
        for key, count in dict(meta.get("counts") or {}).items():
            task, _, model_type = str(key).partition("/")
            self.batch_size.observe(float(count), task, model_type)

    def render(self, slots: Sequence[Mapping[str, Any]]) -> str:
        """The whole exposition; ``slots`` is the pool's health report (with ``models``)."""
        out: list[str] = []
        for metric in self._own:
            out += _family(metric.name, metric.kind, metric.help, metric.lines())
        out += _worker_families(slots)
        out += _model_families(slots)
        return "\n".join(out) + "\n"


_WORKER_SERIES = (
    ("immich_ml_worker_ready", "gauge", "1 when the worker slot is ready.", "state"),
    ("immich_ml_worker_inflight", "gauge", "Requests sent to the worker and not answered yet.", "inflight"),
    ("immich_ml_worker_queue_depth", "gauge", "Requests waiting for a worker thread.", "queue_depth"),
    ("immich_ml_worker_restarts_total", "counter", "Times the slot's worker was replaced.", "restarts"),
    ("immich_ml_worker_requests_total", "counter", "Requests the slot answered.", "requests"),
    ("immich_ml_worker_errors_total", "counter", "Requests the slot answered with an error.", "errors"),
)
_SLOT_LABELS = ("slot", "role", "target")
_MODEL_LABELS = ("slot", "task", "type", "model", "backend", "provider", "device")


def _worker_families(slots: Sequence[Mapping[str, Any]]) -> list[str]:
    out: list[str] = []
    for name, kind, help_text, field in _WORKER_SERIES:
        lines = []
        for slot in slots:
            labels = _labels(_SLOT_LABELS, (str(slot["slot"]), str(slot["role"]), str(slot["target"])))
            raw = slot.get(field)
            value = float(raw == "ready") if field == "state" else float(raw or 0)
            lines.append(f"{name}{labels} {_number(value)}")
        out += _family(name, kind, help_text, lines)
    return out


def _model_families(slots: Sequence[Mapping[str, Any]]) -> list[str]:
    loaded, load_time, runs = [], [], []
    for slot in slots:
        for model in slot.get("models") or []:
            values = (
                str(slot["slot"]), str(model.get("task", "")), str(model.get("type", "")),
                str(model.get("name", "")), str(model.get("backend", "")),
                str(model.get("provider", "")), str(model.get("device", "")),
            )
            labels = _labels(_MODEL_LABELS, values)
            loaded.append(f"immich_ml_model_loaded{labels} {int(model.get('state') == 'loaded')}")
            if model.get("load_time_s") is not None:
                load_time.append(f"immich_ml_model_load_seconds{labels} {_number(float(model['load_time_s']))}")
            if model.get("runs") is not None:
                runs.append(f"immich_ml_model_runs_total{labels} {_number(float(model['runs']))}")
    return (
        _batch_families(slots)
        + _family("immich_ml_model_loaded", "gauge", "1 while the model is loaded in the worker.", loaded)
        + _family("immich_ml_model_load_seconds", "gauge", "Seconds the last load of the model took.", load_time)
        + _family("immich_ml_model_runs_total", "counter", "Inference runs of the model in the worker.", runs)
    )


_BATCH_LABELS = ("slot", "task", "type", "model")


def _histogram_lines(name: str, labels: Sequence[str], data: Mapping[str, Any], scale: float) -> list[str]:
    """A worker-kept cumulative histogram (models/batching.py Distribution) in exposition lines."""
    out = []
    for bound, hits in zip(data["buckets"], data["cumulative"], strict=True):
        le = f'le="{_number(float(bound) * scale)}"'
        out.append(f"{name}_bucket{_labels(_BATCH_LABELS, labels, le)} {_number(float(hits))}")
    inf = 'le="+Inf"'
    out.append(f"{name}_bucket{_labels(_BATCH_LABELS, labels, inf)} {_number(float(data['count']))}")
    out.append(f"{name}_sum{_labels(_BATCH_LABELS, labels)} {_number(float(data['sum']) * scale)}")
    out.append(f"{name}_count{_labels(_BATCH_LABELS, labels)} {_number(float(data['count']))}")
    return out


def _batch_families(slots: Sequence[Mapping[str, Any]]) -> list[str]:
    sizes: list[str] = []
    waits: list[str] = []
    ooms: list[str] = []
    for slot in slots:
        for model in slot.get("models") or []:
            labels = (str(slot["slot"]), str(model.get("task", "")), str(model.get("type", "")),
                      str(model.get("name", "")))
            batching = model.get("batching")
            if batching:
                sizes += _histogram_lines("immich_ml_model_batch_size", labels, batching["size"], 1.0)
                waits += _histogram_lines("immich_ml_model_batch_wait_seconds", labels, batching["wait"], 0.001)
            oom = model.get("oom")
            if oom and oom.get("events"):
                for outcome, key in (("event", "events"), ("cpu_run", "cpu_runs")):
                    outcome_label = f'outcome="{outcome}"'
                    ooms.append(f"immich_ml_model_oom_total{_labels(_BATCH_LABELS, labels, outcome_label)} "
                                f"{_number(float(oom[key]))}")
    return (
        _family("immich_ml_model_batch_size", "histogram", "Items per cross-request batched run.", sizes)
        + _family("immich_ml_model_batch_wait_seconds", "histogram",
                  "Time an item waited in the batching window (seconds).", waits)
        + _family("immich_ml_model_oom_total", "counter",
                  "Accelerator out-of-memory events, and runs then moved to the CPU.", ooms)
    )
