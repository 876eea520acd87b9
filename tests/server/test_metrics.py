"""The Prometheus exposition (prometheus_client + the pool collector): names, syntax, promtool."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from immich_ml.server.metrics import ServiceMetrics

SAMPLE = re.compile(
    r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*",?)*\})? '
    r"(-?[0-9.e+-]+|\+Inf|-Inf|NaN)$"
)
SLOTS: list[dict[str, Any]] = [{
    "slot": 0, "role": "device", "target": "cuda:0", "state": "ready", "inflight": 2,
    "queue_depth": 1, "restarts": 0, "requests": 5, "errors": 0,
    "models": [
        {"task": "clip", "type": "visual", "name": "ViT", "state": "loaded", "backend": "ort",
         "provider": "CUDAExecutionProvider", "device": "cuda:0", "load_time_s": 1.5, "runs": 4},
        {"task": "ocr", "type": "detection", "name": "typo", "state": "failed", "preload": True,
         "last_error": "Unknown model 'typo'"},
    ],
}]
# Every family the service exported before it moved to prometheus_client, by exposed name.
STABLE_NAMES = {
    "immich_ml_http_requests_total", "immich_ml_predict_requests_total",
    "immich_ml_predict_duration_seconds", "immich_ml_stage_duration_seconds", "immich_ml_batch_size",
    "immich_ml_errors_total", "immich_ml_worker_ready", "immich_ml_worker_inflight",
    "immich_ml_worker_queue_depth", "immich_ml_worker_restarts_total", "immich_ml_worker_requests_total",
    "immich_ml_worker_errors_total", "immich_ml_model_loaded", "immich_ml_model_load_seconds",
    "immich_ml_model_runs_total",
}


def exposition() -> str:
    metrics = ServiceMetrics()
    metrics.http_requests.labels("POST", "/predict", "200").inc()
    metrics.predict_duration.labels("clip", "textual", 'odd "name"\n').observe(0.012)
    metrics.record_prediction({"timings": {"decode": 0.001}, "counts": {"ocr/recognition": 5}})
    return metrics.render(SLOTS).decode()


def test_names_types_and_values_are_stable() -> None:
    text = exposition()
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))
    assert STABLE_NAMES <= set(types), STABLE_NAMES - set(types)
    assert types["immich_ml_worker_restarts_total"] == "counter"
    assert types["immich_ml_predict_duration_seconds"] == "histogram"
    assert "_created" not in text
    assert re.search(r'^immich_ml_worker_inflight\{[^}]*target="cuda:0"[^}]*\} 2\.0$', text, re.MULTILINE)
    assert re.search(r'^immich_ml_batch_size_bucket\{[^}]*le="8\.0"[^}]*type="recognition"\} 1\.0$', text, re.MULTILINE)
    assert re.search(r'immich_ml_model_loaded\{[^}]*model="typo"[^}]*\} 0\.0', text)
    for line in text.splitlines():
        assert line.startswith("#") or SAMPLE.match(line), line


def test_the_output_parses_back() -> None:
    families = {f.name: f for f in text_string_to_metric_families(exposition())}
    duration = families["immich_ml_predict_duration_seconds"]
    count = [s for s in duration.samples if s.name.endswith("_count")]
    assert count[0].labels["model"] == 'odd "name"\n' and count[0].value == 1


def test_promtool_accepts_the_exposition(tmp_path: Any) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package 'prometheus'; scripts/test.sh installs it)")
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=exposition(), capture_output=True, text=True, timeout=60
    )
    # promtool exits 3 for lint findings (not errors), 1 for invalid exposition; accept neither.
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_batch_histograms_per_model_from_worker_status() -> None:
    from immich_ml.models.batching import SIZE_BUCKETS, WAIT_BUCKETS_MS, Distribution

    sizes, waits = Distribution(SIZE_BUCKETS), Distribution(WAIT_BUCKETS_MS)
    for size in (3, 8):
        sizes.observe(size)
    for wait in [2.0] * 3 + [4.0] * 8:
        waits.observe(wait)
    model = {"task": "clip", "type": "visual", "name": "ViT-B-32__openai", "state": "loaded",
             "batching": {"size": sizes.as_dict(), "wait": waits.as_dict()},
             "oom": {"events": 2, "cpu_runs": 1}}
    text = ServiceMetrics().render([{"slot": 0, "role": "device", "target": "cuda:0", "models": [model]}]).decode()
    samples = {
        (s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k not in ("slot", "task", "type", "model")))): s.value
        for family in text_string_to_metric_families(text) for s in family.samples
        if s.labels.get("model") == "ViT-B-32__openai"
    }
    assert samples[("immich_ml_model_batch_size_bucket", (("le", "4.0"),))] == 1
    assert samples[("immich_ml_model_batch_size_bucket", (("le", "+Inf"),))] == 2
    assert samples[("immich_ml_model_batch_size_sum", ())] == 11
    assert samples[("immich_ml_model_batch_wait_seconds_bucket", (("le", "0.002"),))] == 3
    assert samples[("immich_ml_model_batch_wait_seconds_count", ())] == 11
    assert samples[("immich_ml_model_oom_total", (("outcome", "cpu_run"),))] == 1
    assert all(SAMPLE.match(line) for line in text.splitlines() if not line.startswith("#"))
