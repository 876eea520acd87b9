"""Prometheus metrics on ``prometheus_client``: the service's own counters and histograms, plus
gauges read from the worker pool when ``/metrics`` is scraped (a custom collector).

Series (all prefixed ``immich_ml_``; names are the ones the hand-written exposition had):

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

Every label value is bounded: a client never names a series. Model labels are names a worker's
catalog resolved (learnt from its answers, at most :data:`MAX_MODEL_LABELS`), anything else is
``other``; HTTP methods outside the standard set are ``other`` too.
* per batching model (cross-request batching, kept in the worker and read from its status):
  ``model_batch_size`` (histogram: items per run) and ``model_batch_wait_seconds`` (histogram:
  each item's wait in the batching window); ``model_oom_total{outcome}`` (accelerator
  out-of-memory events, and how many runs then went to the CPU)
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString
from prometheus_client.registry import Collector

# The text format (0.0.4) every Prometheus server reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0)
# Distinct (task, type, model) label sets the request metrics may ever carry: the catalog has
# fewer models than this, so the cap only bites if something upstream misbehaves.
MAX_MODEL_LABELS = 256
OTHER = "other"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})

# ``*_created`` series double the output and no dashboard reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]


class ModelLabels:
    """Which requested model names may become label values: those a worker's catalog resolved.

    A worker reports ``(task, type, requested name, resolved name)`` for each entry it ran; a
    request's model label is the resolved name when that request name was seen resolved before,
    else ``other``. Thread-safe; holds at most ``limit`` names.
    """

    def __init__(self, limit: int = MAX_MODEL_LABELS) -> None:
        self._limit = limit
        self._resolved: dict[tuple[str, str, str], str] = {}
        self._lock = threading.Lock()

    def learn(self, resolved: Iterable[Sequence[str]]) -> None:
        with self._lock:
            for row in resolved:
                if len(row) != 4:
                    continue
                task, model_type, requested, name = (str(part) for part in row)
                key = (task, model_type, requested)
                if key not in self._resolved and len(self._resolved) < self._limit:
                    self._resolved[key] = name

    def label(self, task: str, model_type: str, requested: str) -> str:
        with self._lock:
            return self._resolved.get((task, model_type, requested), OTHER)


class ServiceMetrics:
    """Every series the service exports; thread-safe (``prometheus_client`` locks its values)."""

    def __init__(self) -> None:
        self.http_requests = Counter(
            "immich_ml_http_requests", "HTTP requests by method, route and status.",
            ("method", "route", "status"), registry=None,
        )
        self.predict_requests = Counter(
            "immich_ml_predict_requests", "Prediction requests per model and HTTP status.",
            ("task", "type", "model", "status"), registry=None,
        )
        self.predict_duration = Histogram(
            "immich_ml_predict_duration_seconds", "Prediction request latency per model (seconds).",
            ("task", "type", "model"), registry=None, buckets=LATENCY_BUCKETS,
        )
        self.stage_duration = Histogram(
            "immich_ml_stage_duration_seconds", "Time per pipeline stage inside a worker (seconds).",
            ("stage",), registry=None, buckets=LATENCY_BUCKETS,
        )
        self.batch_size = Histogram(
            "immich_ml_batch_size", "Items per dependent model run (faces, text boxes).",
            ("task", "type"), registry=None, buckets=BATCH_BUCKETS,
        )
        self.errors = Counter("immich_ml_errors", "Failed requests by error kind.", ("kind",), registry=None)
        self.models = ModelLabels()
        self._own: tuple[Collector, ...] = (
            self.http_requests, self.predict_requests, self.predict_duration,
            self.stage_duration, self.batch_size, self.errors,
        )

    @staticmethod
    def method_label(method: str) -> str:
        return method if method in _METHODS else OTHER

    def record_prediction(self, meta: Mapping[str, Any]) -> None:
        """Stage timings, batch sizes and resolved model names a worker reported with its answer."""
        for stage, seconds in dict(meta.get("timings") or {}).items():
            self.stage_duration.labels(str(stage)).observe(float(seconds))
        for key, count in dict(meta.get("counts") or {}).items():
            task, _, model_type = str(key).partition("/")
            self.batch_size.labels(task, model_type).observe(float(count))
        self.models.learn(meta.get("models") or ())

    def render(self, slots: Sequence[Mapping[str, Any]]) -> bytes:
        """The whole exposition; ``slots`` is the pool's health report (with ``models``)."""
        registry = CollectorRegistry(auto_describe=False)
        for metric in self._own:
            registry.register(metric)
        registry.register(PoolCollector(slots))
        return generate_latest(registry)


_WORKER_SERIES = (
    ("immich_ml_worker_ready", "gauge", "1 when the worker slot is ready.", "state"),
    ("immich_ml_worker_inflight", "gauge", "Requests sent to the worker and not answered yet.", "inflight"),
    ("immich_ml_worker_queue_depth", "gauge", "Requests waiting for a worker thread.", "queue_depth"),
    ("immich_ml_worker_restarts", "counter", "Times the slot's worker was replaced.", "restarts"),
    ("immich_ml_worker_requests", "counter", "Requests the slot answered.", "requests"),
    ("immich_ml_worker_errors", "counter", "Requests the slot answered with an error.", "errors"),
)
_SLOT_LABELS = ("slot", "role", "target")
_MODEL_LABELS = ("slot", "task", "type", "model", "backend", "provider", "device")


class PoolCollector(Collector):
    """Per-worker and per-model families from one health report of the pool."""

    def __init__(self, slots: Sequence[Mapping[str, Any]]) -> None:
        self._slots = slots

    def collect(self) -> Iterator[Metric]:
        yield from self._worker_families()
        yield from self._model_families()
        yield from self._batch_families()

    def _worker_families(self) -> Iterator[Metric]:
        for name, kind, help_text, field in _WORKER_SERIES:
            family: GaugeMetricFamily | CounterMetricFamily
            if kind == "gauge":
                family = GaugeMetricFamily(name, help_text, labels=_SLOT_LABELS)
            else:
                family = CounterMetricFamily(name, help_text, labels=_SLOT_LABELS)
            for slot in self._slots:
                raw = slot.get(field)
                value = float(raw == "ready") if field == "state" else float(raw or 0)
                family.add_metric([str(slot["slot"]), str(slot["role"]), str(slot["target"])], value)
            yield family

    def _model_families(self) -> Iterator[Metric]:
        loaded = GaugeMetricFamily(
            "immich_ml_model_loaded", "1 while the model is loaded in the worker.", labels=_MODEL_LABELS
        )
        load_time = GaugeMetricFamily(
            "immich_ml_model_load_seconds", "Seconds the last load of the model took.", labels=_MODEL_LABELS
        )
        runs = CounterMetricFamily(
            "immich_ml_model_runs", "Inference runs of the model in the worker.", labels=_MODEL_LABELS
        )
        for slot in self._slots:
            for model in slot.get("models") or []:
                values = [
                    str(slot["slot"]), str(model.get("task", "")), str(model.get("type", "")),
                    str(model.get("name", "")), str(model.get("backend") or ""),
                    str(model.get("provider") or ""), str(model.get("device") or ""),
                ]
                loaded.add_metric(values, float(model.get("state") == "loaded"))
                if model.get("load_time_s") is not None:
                    load_time.add_metric(values, float(model["load_time_s"]))
                if model.get("runs") is not None:
                    runs.add_metric(values, float(model["runs"]))
        yield from (loaded, load_time, runs)

    def _batch_families(self) -> Iterator[Metric]:
        sizes = HistogramMetricFamily(
            "immich_ml_model_batch_size", "Items per cross-request batched run.", labels=_BATCH_LABELS
        )
        waits = HistogramMetricFamily(
            "immich_ml_model_batch_wait_seconds",
            "Time an item waited in the batching window (seconds).",
            labels=_BATCH_LABELS,
        )
        ooms = CounterMetricFamily(
            "immich_ml_model_oom",
            "Accelerator out-of-memory events, and runs then moved to the CPU.",
            labels=(*_BATCH_LABELS, "outcome"),
        )
        for slot in self._slots:
            for model in slot.get("models") or []:
                labels = [str(slot["slot"]), str(model.get("task", "")), str(model.get("type", "")),
                          str(model.get("name", ""))]
                batching = model.get("batching")
                if batching:
                    _add_histogram(sizes, labels, batching["size"], 1.0)
                    _add_histogram(waits, labels, batching["wait"], 0.001)
                oom = model.get("oom")
                if oom and oom.get("events"):
                    for outcome, key in (("event", "events"), ("cpu_run", "cpu_runs")):
                        ooms.add_metric([*labels, outcome], float(oom[key]))
        yield from (sizes, waits, ooms)


_BATCH_LABELS = ("slot", "task", "type", "model")


def _add_histogram(family: HistogramMetricFamily, labels: list[str], data: Mapping[str, Any], scale: float) -> None:
    """A worker-kept cumulative histogram (models/batching.py Distribution) as one series."""
    buckets = [
        (floatToGoString(float(bound) * scale), float(hits))  # type: ignore[no-untyped-call]
        for bound, hits in zip(data["buckets"], data["cumulative"], strict=True)
    ]
    buckets.append(("+Inf", float(data["count"])))
    family.add_metric(labels, buckets, float(data["sum"]) * scale)
