"""Routing, request parsing, error mapping and limits through Flask's test client."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
from typing import Any

import orjson
import pytest
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from server_stand_ins import PoolStandIn

from immich_ml.errors import (
    InvalidImage,
    NotReady,
    Overloaded,
    UnknownModel,
    WorkerCrashed,
    WorkerTimeout,
)
from immich_ml.schemas import ModelTask, ModelType
from immich_ml.server.metrics import ModelLabels

TEXT_ENTRIES = '{"clip":{"textual":{"modelName":"ViT-B-32__openai","options":{"language":"de"}}}}'
FACE_ENTRIES = (
    '{"facial-recognition":{"detection":{"modelName":"buffalo_l","options":{"minScore":0.7}},'
    '"recognition":{"modelName":"buffalo_l"}}}'
)


def post(client: FlaskClient, **fields: Any) -> Any:
    data = {}
    for name, value in fields.items():
        data[name] = (io.BytesIO(value), "blob", "application/octet-stream") if isinstance(value, bytes) else value
    return client.post("/predict", data=data, content_type="multipart/form-data")


def detail(response: Any) -> str:
    parsed = orjson.loads(response.data)
    assert set(parsed) == {"detail"}
    return str(parsed["detail"])


def test_root_and_ping(client: FlaskClient) -> None:
    root = client.get("/")
    assert root.status_code == 200 and root.mimetype == "application/json"
    assert root.data == b'{"message":"Immich ML"}'
    ping = client.get("/ping")
    assert (ping.status_code, ping.mimetype, ping.data) == (200, "text/plain", b"pong")


def test_text_request_reaches_the_pool_and_body_passes_through(
    client: FlaskClient, pool: PoolStandIn
) -> None:
    response = post(client, entries=TEXT_ENTRIES, text="ein Hund")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.data == pool.body
    (entries, image, text), = pool.calls
    assert (image, text) == (None, "ein Hund")
    assert [(e.task, e.type, e.name, e.options) for e in entries] == [
        (ModelTask.SEARCH, ModelType.TEXTUAL, "ViT-B-32__openai", {"language": "de"})
    ]
    assert "Server-Timing" not in response.headers  # the worker did not say how long it took


def test_the_workers_time_goes_out_as_server_timing(client: FlaskClient, pool: PoolStandIn) -> None:
    pool.meta = {**pool.meta, "worker_s": 0.0123456}
    response = post(client, entries=TEXT_ENTRIES, text="ein Hund")
    assert response.headers["Server-Timing"] == "worker;dur=12.346"


def test_image_wins_over_text_and_arrives_byte_for_byte(client: FlaskClient, pool: PoolStandIn) -> None:
    image = bytes(range(256)) * 4000
    assert post(client, entries=FACE_ENTRIES, image=image, text="ignored").status_code == 200
    (entries, sent, text), = pool.calls
    assert sent == image and text is None
    assert [e.type for e in entries] == [ModelType.DETECTION, ModelType.RECOGNITION]


def test_urlencoded_text_requests_work_too(client: FlaskClient, pool: PoolStandIn) -> None:
    response = client.post("/predict", data={"entries": TEXT_ENTRIES, "text": "dog"})
    assert response.status_code == 200 and pool.calls[0][2] == "dog"


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        ({"text": "dog"}, 422, "'entries' form field is missing"),
        ({"entries": "{not json", "text": "dog"}, 422, "Invalid request format"),
        ({"entries": '{"nope":{"visual":{"modelName":"x"}}}', "text": "d"}, 422, "unknown task 'nope'"),
        ({"entries": '{"clip":{"visual":{}}}', "text": "d"}, 422, "needs a string 'modelName'"),
        ({"entries": TEXT_ENTRIES}, 400, "Either image or text must be provided"),
        ({"entries": '{"facial-recognition":{"recognition":{"modelName":"buffalo_l"}}}', "image": b"x"},
         400, "Task facial-recognition of type recognition depends on output of detection"),
        ({"entries": FACE_ENTRIES, "image": b""}, 400, "zero width or height"),
        ({"entries": FACE_ENTRIES, "image_as_text": "abc"}, 400, "must be sent as a file part"),
    ],
)
def test_bad_requests_get_immich_statuses_and_never_reach_the_pool(
    client: FlaskClient, pool: PoolStandIn, fields: dict[str, Any], status: int, message: str
) -> None:
    if "image_as_text" in fields:
        fields["image"] = fields.pop("image_as_text")
    response = post(client, **fields)
    assert response.status_code == status
    assert message in detail(response)
    assert pool.calls == []


@pytest.mark.parametrize(
    ("error", "status", "retry_after"),
    [
        (UnknownModel("Unknown CLIP model 'x'. Valid names: ViT-B-32__openai, ..."), 400, None),
        (InvalidImage("Cannot decode the image: not a JPEG, PNG or WebP file."), 400, None),
        (Overloaded("busy"), 503, "1"),
        (WorkerCrashed("worker 0 (cpu:0) was killed by signal SIGKILL"), 503, "1"),
        (NotReady("starting"), 503, "2"),
        (WorkerTimeout("too slow"), 504, "1"),
    ],
)
def test_pool_errors_map_to_their_status(
    client: FlaskClient, pool: PoolStandIn, error: Exception, status: int, retry_after: str | None
) -> None:
    pool.error = error
    response = post(client, entries=TEXT_ENTRIES, text="x")
    assert response.status_code == status
    assert detail(response) == str(error)
    assert response.headers.get("Retry-After") == retry_after


def test_unexpected_errors_are_logged_but_not_leaked(
    client: FlaskClient, pool: PoolStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    pool.error = RuntimeError("secret internal state at 0xdeadbeef")
    with caplog.at_level(logging.ERROR):
        response = post(client, entries=TEXT_ENTRIES, text="x")
    assert response.status_code == 500
    assert detail(response) == "Internal server error"
    assert b"deadbeef" not in response.data
    assert any(r.exc_info and "0xdeadbeef" in str(r.exc_info[1]) for r in caplog.records)


def test_oversized_bodies_get_413_naming_the_setting(client: FlaskClient, pool: PoolStandIn) -> None:
    response = post(client, entries=FACE_ENTRIES, image=b"\xff" * (2**20 + 1000))
    assert response.status_code == 413
    assert "MACHINE_LEARNING_MAX_REQUEST_MB" in detail(response) and "1 MiB" in detail(response)
    assert pool.calls == []


def test_unknown_routes_and_methods_use_the_same_body_shape(client: FlaskClient) -> None:
    missing = client.get("/nope")
    assert (missing.status_code, detail(missing)) == (404, "Not Found")
    wrong = client.get("/predict")
    assert (wrong.status_code, detail(wrong)) == (405, "Method Not Allowed")


def test_ready_follows_the_pool(client: FlaskClient, pool: PoolStandIn) -> None:
    assert client.get("/ready").status_code == 200
    pool.ready = False
    response = client.get("/ready")
    assert response.status_code == 503 and orjson.loads(response.data) == {"ready": False}


def test_health_reports_workers_and_models(client: FlaskClient, pool: PoolStandIn) -> None:
    report = orjson.loads(client.get("/health").data)
    assert report["status"] == "ok" and report["ready"] is True
    (worker,) = report["workers"]
    assert worker["pid"] == 123 and worker["restarts"] == 2 and "SIGKILL" in worker["last_error"]
    assert worker["models"][0]["provider"] == "CPUExecutionProvider"
    pool.workers[0]["state"] = "failed"
    pool.ready = False
    response = client.get("/health")
    assert response.status_code == 503 and orjson.loads(response.data)["status"] == "degraded"


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the series ``name{labels}`` in an exposition, or None."""
    for family in text_string_to_metric_families(text):
        for series in family.samples:
            if series.name == name and series.labels == labels:
                return float(series.value)
    return None


def test_metrics_count_requests_errors_stages_and_models(client: FlaskClient, pool: PoolStandIn) -> None:
    post(client, entries=FACE_ENTRIES, image=b"jpeg")
    pool.error = UnknownModel("no")
    post(client, entries='{"clip":{"visual":{"modelName":"made-up-name"}}}', image=b"jpeg")
    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    text = response.get_data(as_text=True)
    face = {"task": "facial-recognition", "type": "detection", "model": "buffalo_l", "status": "200"}
    assert sample(text, "immich_ml_predict_requests_total", **face) == 1
    other = {"task": "clip", "type": "visual", "model": "other", "status": "400"}
    assert sample(text, "immich_ml_predict_requests_total", **other) == 1
    assert "made-up-name" not in text
    assert sample(text, "immich_ml_errors_total", kind="unknown_model") == 1
    assert sample(text, "immich_ml_http_requests_total", method="POST", route="/predict", status="200") == 1
    assert sample(text, "immich_ml_stage_duration_seconds_count", stage="inference") == 1
    batch = {"task": "facial-recognition", "type": "recognition", "le": "4.0"}
    assert sample(text, "immich_ml_batch_size_bucket", **batch) == 1
    assert sample(text, "immich_ml_worker_restarts_total", slot="0", role="device", target="cpu:0") == 2
    assert any(line.startswith("immich_ml_model_load_seconds{") and line.endswith(" 0.25") for line in text.splitlines())
    latency = {"task": "facial-recognition", "type": "detection", "model": "buffalo_l"}
    assert sample(text, "immich_ml_predict_duration_seconds_count", **latency) == 1


def test_clients_cannot_create_metric_series(client: FlaskClient, pool: PoolStandIn) -> None:
    # Before: names from undecodable-image and 503/504 answers became labels (model="attacker-0" ...).
    errors = [InvalidImage("cannot decode"), Overloaded("busy"), WorkerTimeout("late"), NotReady("starting")]
    for i, error in enumerate(errors * 5):
        pool.error = error
        post(client, entries=f'{{"clip":{{"visual":{{"modelName":"attacker-{i}"}}}}}}', image=b"jpeg")
    for method in ("FOO1", "FOO2"):
        client.open("/predict", method=method)
    text = client.get("/metrics").get_data(as_text=True)
    assert "attacker" not in text and "FOO" not in text
    other = {"task": "clip", "type": "visual", "model": "other", "status": "503"}
    assert sample(text, "immich_ml_predict_requests_total", **other) == 10
    # A name a worker resolved keeps its own label, also when a later request for it fails.
    pool.error = None
    post(client, entries=FACE_ENTRIES, image=b"jpeg")
    pool.error = Overloaded("busy")
    post(client, entries=FACE_ENTRIES, image=b"jpeg")
    text = client.get("/metrics").get_data(as_text=True)
    face = {"task": "facial-recognition", "type": "detection", "model": "buffalo_l", "status": "503"}
    assert sample(text, "immich_ml_predict_requests_total", **face) == 1


def test_model_labels_are_capped() -> None:
    labels = ModelLabels(limit=3)
    labels.learn([("clip", "visual", f"name-{i}", f"name-{i}") for i in range(10)])
    assert [labels.label("clip", "visual", f"name-{i}") for i in (0, 2, 3, 9)] == ["name-0", "name-2", "other", "other"]


def test_one_debug_line_per_request(client: FlaskClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="immich_ml.server"):
        post(client, entries=TEXT_ENTRIES, text="x")
    (line,) = [r.getMessage() for r in caplog.records if r.name == "immich_ml.server"]
    assert line.startswith("POST /predict 200 ") and " ms entries=clip/textual/ViT-B-32__openai" in line


def test_service_process_imports_no_numpy_or_runtime() -> None:
    code = (
        "import sys, immich_ml.__main__, immich_ml.server.run;"
        "bad = [m for m in ('numpy', 'onnxruntime', 'PIL', 'immich_ml.pipeline', 'immich_ml.models')"
        " if m in sys.modules]; print(bad)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_bodies_the_fast_reader_declines_are_parsed_by_werkzeug(client: FlaskClient, pool: PoolStandIn) -> None:
    body = (
        b"--b1\r\nContent-Disposition: form-data; name=\"entries\"\r\nContent-Length: 39\r\n\r\n"
        + TEXT_ENTRIES.encode()
        + b"\r\n--b1\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\nein Hund\r\n--b1--\r\n"
    )
    response = client.post("/predict", data=body, content_type="multipart/form-data; boundary=b1")
    assert response.status_code == 200
    (entries, image, text), = pool.calls
    assert (entries[0].name, image, text) == ("ViT-B-32__openai", None, "ein Hund")
