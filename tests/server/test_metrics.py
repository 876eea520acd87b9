"""The hand-written Prometheus exposition: histogram arithmetic, escaping, line syntax."""

from __future__ import annotations

import re

from immich_ml.server.metrics import Counter, Histogram, ServiceMetrics

SAMPLE = re.compile(
    r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*",?)*\})? '
    r"(-?[0-9.e+-]+|\+Inf|-Inf|NaN)$"
)


def test_histogram_buckets_are_cumulative() -> None:
    histogram = Histogram("h", "help", ("task",), buckets=(0.0025, 0.005, 0.025))
    for value in (0.003, 0.02, 100.0):
        histogram.observe(value, "clip")
    assert histogram.lines() == [
        'h_bucket{task="clip",le="0.0025"} 0',
        'h_bucket{task="clip",le="0.005"} 1',
        'h_bucket{task="clip",le="0.025"} 2',
        'h_bucket{task="clip",le="+Inf"} 3',
        f'h_sum{{task="clip"}} {0.003 + 0.02 + 100.0!r}',
        'h_count{task="clip"} 3',
    ]


def test_label_values_are_escaped() -> None:
    counter = Counter("c_total", "help", ("model",))
    counter.inc('a"b\\c\nd', amount=2)
    assert counter.lines() == ['c_total{model="a\\"b\\\\c\\nd"} 2']


def test_every_line_is_valid_exposition_syntax() -> None:
    metrics = ServiceMetrics()
    metrics.http_requests.inc("POST", "/predict", "200")
    metrics.predict_duration.observe(0.012, "clip", "textual", 'odd "name"')
    metrics.record_prediction({"timings": {"decode": 0.001}, "counts": {"ocr/recognition": 5}})
    slots = [{
        "slot": 0, "role": "device", "target": "cuda:0", "state": "ready", "inflight": 2,
        "queue_depth": 1, "restarts": 0, "requests": 5, "errors": 0,
        "models": [{"task": "clip", "type": "visual", "name": "ViT", "state": "loaded", "backend": "ort",
                    "provider": "CUDAExecutionProvider", "device": "cuda:0", "load_time_s": 1.5, "runs": 4}],
    }]
    text = metrics.render(slots)
    families = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            families.add(line.split()[2])
        elif not line.startswith("# HELP "):
            assert SAMPLE.match(line), line
    assert {"immich_ml_worker_ready", "immich_ml_worker_queue_depth", "immich_ml_model_load_seconds",
            "immich_ml_batch_size", "immich_ml_stage_duration_seconds"} <= families
    assert 'immich_ml_worker_inflight{slot="0",role="device",target="cuda:0"} 2' in text
    assert 'immich_ml_batch_size_bucket{task="ocr",type="recognition",le="8"} 1' in text
    assert text.endswith("\n")


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
    text = ServiceMetrics().render([{"slot": 0, "role": "device", "target": "cuda:0", "models": [model]}])
    labels = 'slot="0",task="clip",type="visual",model="ViT-B-32__openai"'
    assert f'immich_ml_model_batch_size_bucket{{{labels},le="4"}} 1' in text
    assert f'immich_ml_model_batch_size_bucket{{{labels},le="+Inf"}} 2' in text
    assert f"immich_ml_model_batch_size_sum{{{labels}}} 11" in text
    assert f'immich_ml_model_batch_wait_seconds_bucket{{{labels},le="0.002"}} 3' in text
    assert f"immich_ml_model_batch_wait_seconds_count{{{labels}}} 11" in text
    assert f'immich_ml_model_oom_total{{{labels},outcome="cpu_run"}} 1' in text
    assert all(SAMPLE.match(line) for line in text.splitlines() if not line.startswith("#"))
