"""The one place where errors become HTTP responses.

* :class:`immich_ml.errors.ImmichMLError` → its ``status``, body ``{"detail": message}`` (Immich's
  FastAPI shape), plus ``Retry-After`` when the error class has ``retry_after_s``
  (overloaded, worker crashed or restarting).
* Werkzeug's HTTP errors (404, 405, 413 ...) → their status with the same body shape; a body
  over ``MACHINE_LEARNING_MAX_REQUEST_MB`` gets a message that names the setting.
* Anything else → 500 ``{"detail": "Internal server error"}``; the traceback goes to the log,
  never to the client.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from immich_ml.config import Settings
from immich_ml.errors import ImmichMLError, PayloadTooLarge

log = logging.getLogger(__name__)


def json_response(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status=status, mimetype="application/json")


def error_response(status: int, detail: str, kind: str, retry_after_s: int | None = None) -> Response:
    """``{"detail": ...}`` with ``status``; remembers ``kind`` for the metrics of this request."""
    g.error_kind = kind
    response = json_response({"detail": detail}, status)
    if retry_after_s is not None:
        response.headers["Retry-After"] = str(retry_after_s)
    return response


def too_large(settings: Settings) -> PayloadTooLarge:
    """The 413 error for this request, naming the limit that was hit."""
    length = request.content_length
    limit_mb = settings.max_request_mb
    if length is not None and length > settings.max_request_bytes:
        return PayloadTooLarge(
            f"Request body is {length / 2**20:.1f} MiB, over the limit of {limit_mb} MiB "
            "(MACHINE_LEARNING_MAX_REQUEST_MB)."
        )
    return PayloadTooLarge(
        f"Request is too large: the body exceeds {limit_mb} MiB (MACHINE_LEARNING_MAX_REQUEST_MB) "
        "or a text field exceeds the form field limit."
    )


def register_error_handlers(app: Flask, settings: Settings) -> None:
    """Install the mapping above on ``app``."""

    @app.errorhandler(ImmichMLError)
    def _known(error: ImmichMLError) -> Response:
        if error.status >= 500:
            log.warning("%s %s failed: %s", request.method, request.path, error.message)
        retry = getattr(error, "retry_after_s", None)
        return error_response(error.status, error.message, error.kind, retry)

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException) -> Response:
        if isinstance(error, RequestEntityTooLarge):
            return _known(too_large(settings))
        status = error.code or 500
        return error_response(status, error.name, f"http_{status}")

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        log.error("%s %s failed with an unexpected error", request.method, request.path, exc_info=error)
        return error_response(500, "Internal server error", "internal")
