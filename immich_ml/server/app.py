"""The Flask application: Immich's three endpoints plus health, readiness and metrics.

The app only parses and answers; every model runs in a worker process behind the pool, which
returns the response body already serialized (orjson), so a prediction is passed through here
as bytes. No numpy, no runtime is imported in this process.

Endpoints (see docs/http-api.md):

* ``GET /`` → ``{"message":"Immich ML"}``; ``GET /ping`` → ``pong`` (cheap liveness, no IPC)
* ``POST /predict`` → multipart ``entries`` + ``image`` (file) or ``text``, Immich's contract
* ``GET /health`` → per-worker report; ``GET /ready`` → 200 when every worker slot is ready
* ``GET /metrics`` → Prometheus text
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Sequence
from typing import IO, Any, NamedTuple, Protocol, cast

from flask import Flask, Request, Response, current_app, g, request
from werkzeug.exceptions import RequestEntityTooLarge

import immich_ml
from immich_ml.config import Settings
from immich_ml.errors import InvalidImage, InvalidInput, InvalidRequest
from immich_ml.schemas import Entry, check_request, parse_entries
from immich_ml.server import multipart
from immich_ml.server.errors import json_response, register_error_handlers
from immich_ml.server.metrics import CONTENT_TYPE, ServiceMetrics
from immich_ml.workers.pool import Prediction

log = logging.getLogger("immich_ml.server")


class PredictionService(Protocol):
    """What the app needs from the worker pool (:class:`immich_ml.workers.pool.WorkerPool`)."""

    def predict(
        self,
        entries: Sequence[Entry],
        *,
        image: bytes | memoryview | None = None,
        text: str | None = None,
    ) -> Prediction: ...

    def is_ready(self) -> bool: ...

    def health(self, timeout: float = 2.0) -> list[dict[str, Any]]: ...

    def snapshot(self) -> list[dict[str, Any]]: ...


class _UploadBuffer(io.RawIOBase):
    """Where Werkzeug writes an uploaded file: kept in memory as the chunks it arrives in.

    Werkzeug spools uploads over 500 KB to a temporary file, and a ``BytesIO`` re-allocates as
    it grows (about 1 ms of copying for a 0.8 MB photo); collecting the chunks and joining them
    once on ``read()`` copies the image a single time. The body is already capped by
    ``MAX_CONTENT_LENGTH``, so memory stays bounded.
    """

    def __init__(self) -> None:
        super().__init__()
        self._chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._chunks.append(chunk)
        return len(chunk)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        # Werkzeug rewinds the container after writing; reading always starts at the beginning.
        return 0

    def read(self, size: int | None = -1) -> bytes:
        data = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks = [data]
        return data


class _Request(Request):
    """Keeps uploaded files in memory, in an :class:`_UploadBuffer`."""

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        return cast(IO[bytes], _UploadBuffer())


def create_app(
    settings: Settings, pool: PredictionService, metrics: ServiceMetrics | None = None
) -> Flask:
    """The WSGI application for ``settings``, answering predictions through ``pool``."""
    app = Flask("immich_ml")
    app.request_class = _Request
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    metrics = metrics or ServiceMetrics()
    app.extensions["immich_ml.metrics"] = metrics
    register_error_handlers(app, settings)

    @app.before_request
    def _start_clock() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _account(response: Response) -> Response:
        _record(metrics, response)
        return response

    @app.get("/")
    def root() -> Response:
        return json_response({"message": "Immich ML"})

    @app.get("/ping")
    def ping() -> Response:
        return Response("pong", mimetype="text/plain")

    @app.post("/predict")
    def predict() -> Response:
        entries, image, text = _parse_predict_request()
        prediction = pool.predict(entries, image=image, text=text)
        g.prediction_meta = prediction.meta
        response = Response(prediction.body, status=200, mimetype="application/json")
        worker_s = prediction.meta.get("worker_s")
        if worker_s is not None:
            # The models' share of the latency (standard header; browsers' dev tools show it).
            response.headers["Server-Timing"] = f"worker;dur={worker_s * 1000.0:.3f}"
        return response

    @app.get("/health")
    def health() -> Response:
        workers = pool.health()
        ready = [w for w in workers if w["state"] == "ready"]
        if len(ready) == len(workers) and pool.is_ready():
            status = "ok"
        elif any(w["state"] == "failed" for w in workers):
            status = "degraded"
        else:
            status = "starting"
        body = {"status": status, "ready": pool.is_ready(), "version": immich_ml.__version__, "workers": workers}
        return json_response(body, 200 if ready else 503)

    @app.get("/ready")
    def ready() -> Response:
        is_ready = pool.is_ready()
        return json_response({"ready": is_ready}, 200 if is_ready else 503)

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        return Response(metrics.render(pool.health(timeout=1.0)), mimetype=CONTENT_TYPE)

    return app


class _Fields(NamedTuple):
    """The ``/predict`` form fields the service reads."""

    entries: str | None
    image: bytes | memoryview | None
    image_is_text: bool
    text: str | None


def _read_fields() -> _Fields:
    """The form fields, through :mod:`.multipart` (no copy of the image) or else Werkzeug."""
    boundary = multipart.boundary_of(request.content_type)
    length = request.content_length
    if boundary is not None and length is not None:
        limit = current_app.config["MAX_CONTENT_LENGTH"]
        if limit is not None and length > limit:
            raise RequestEntityTooLarge()
        # One read of exactly the announced length: a single copy of the body (Werkzeug's
        # get_data grows a buffer chunk by chunk). Werkzeug re-reads it from here if needed.
        body = request.environ["wsgi.input"].read(length)
        request.environ["wsgi.input"] = io.BytesIO(body)
        fields = multipart.parse(body, boundary) if len(body) == length else None
        if fields is not None:

            def value(name: str) -> str | None:
                part = fields.get(name)
                return part.text() if part is not None and part.filename is None else None

            image = fields.get("image")
            return _Fields(
                entries=value("entries"),
                image=image.data if image is not None and image.filename is not None else None,
                image_is_text=image is not None and image.filename is None,
                text=value("text"),
            )
    # Werkzeug parses the body read above (or the stream, for URL-encoded forms).
    upload = request.files.get("image")
    return _Fields(
        entries=request.form.get("entries"),
        image=upload.stream.read() if upload is not None else None,
        image_is_text="image" in request.form,
        text=request.form.get("text"),
    )


def _parse_predict_request() -> tuple[tuple[Entry, ...], bytes | memoryview | None, str | None]:
    """``entries`` and the payload, validated as far as the HTTP layer can (Immich's statuses)."""
    fields = _read_fields()
    if fields.entries is None:
        raise InvalidRequest("Invalid request format: the 'entries' form field is missing.")
    entries = parse_entries(fields.entries)
    g.entries = entries
    if fields.image is not None:
        if not len(fields.image):
            raise InvalidImage("Image has zero width or height: the uploaded 'image' file is empty.")
    elif fields.image_is_text:
        raise InvalidInput(
            "'image' must be sent as a file part (curl: -F image=@photo.jpg), not as a text field."
        )
    check_request(entries, has_image=fields.image is not None, has_text=fields.text is not None)
    if fields.image is not None:
        return entries, fields.image, None
    return entries, None, fields.text


def _record(metrics: ServiceMetrics, response: Response) -> None:
    """Metrics and the per-request debug line, for every response including errors."""
    elapsed = time.perf_counter() - g.get("started", time.perf_counter())
    route = request.url_rule.rule if request.url_rule is not None else "other"
    status = str(response.status_code)
    metrics.http_requests.labels(metrics.method_label(request.method), route, status).inc()
    kind = g.get("error_kind")
    if kind is not None:
        metrics.errors.labels(kind).inc()
    meta = g.get("prediction_meta")
    if meta is not None:
        metrics.record_prediction(meta)
    entries: tuple[Entry, ...] = g.get("entries", ())
    # Model labels are names a worker's catalog resolved (learnt from its answers), never a
    # client's string: made-up names, and any name not yet seen resolved, count as "other".
    for entry in entries:
        task, model_type = entry.task.value, entry.type.value
        model = metrics.models.label(task, model_type, entry.name)
        metrics.predict_requests.labels(task, model_type, model, status).inc()
        metrics.predict_duration.labels(task, model_type, model).observe(elapsed)
    if log.isEnabledFor(logging.DEBUG):
        label = ",".join(f"{e.task}/{e.type}/{e.name}" for e in entries) or "-"
        log.debug(
            "%s %s %s %.1f ms entries=%s", request.method, request.path, status, elapsed * 1000, label
        )
