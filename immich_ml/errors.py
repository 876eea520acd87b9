"""One error hierarchy for the whole service.

Each class knows its HTTP status; ``immich_ml.server.errors`` maps them to responses in one place.
Messages are written for the person reading them: what went wrong and what to do about it.
Errors must stay picklable (they cross the worker-process boundary), so every subclass keeps
``__init__(self, message)`` or defines ``__reduce__``.
"""

from __future__ import annotations

from typing import Any


class ImmichMLError(Exception):
    """Base class. ``status`` is the HTTP status, ``kind`` a stable machine-readable label."""

    status: int = 500
    kind: str = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message,))


class SettingsError(ImmichMLError):
    """An environment variable has a value the service cannot use. Stops start-up."""

    kind = "settings"

    def __init__(self, variable: str, value: str, accepted: str) -> None:
        super().__init__(f"Invalid value {value!r} for {variable}: expected {accepted}.")
        self.variable, self.value, self.accepted = variable, value, accepted

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.variable, self.value, self.accepted))


# --- client errors (4xx) -------------------------------------------------------------------------


class InvalidRequest(ImmichMLError):
    """The request's ``entries`` are malformed (Immich answers 422 here)."""

    status = 422
    kind = "invalid_request"


class InvalidInput(ImmichMLError):
    """The payload or a parameter cannot be used (missing payload, bad option, bad array)."""

    status = 400
    kind = "invalid_input"


class InvalidImage(InvalidInput):
    """The image bytes cannot be decoded, or the image is empty or too large."""

    kind = "invalid_image"


class UnknownModel(InvalidInput):
    """A model name or task/type combination the service does not know."""

    kind = "unknown_model"


class PayloadTooLarge(ImmichMLError):
    status = 413
    kind = "payload_too_large"


# --- server-side errors (5xx) --------------------------------------------------------------------


class ModelLoadError(ImmichMLError):
    """A model could not be loaded even after clearing its cache folder and retrying."""

    kind = "model_load"


class ModelUnavailable(ModelLoadError):
    """A model is not on disk and cannot be downloaded (offline, not on the hub, no setup run)."""

    status = 503
    kind = "model_unavailable"


class FormatUnavailable(ModelLoadError):
    """A native backend cannot serve this model (no ``model.armnn``/``model.rknn``, or a file
    this runtime cannot read); the backend registry loads the ONNX model instead, with a warning."""

    kind = "format_unavailable"


class BackendError(ImmichMLError):
    """The inference runtime failed while running a model."""

    kind = "backend"


class AcceleratorOutOfMemory(BackendError):
    """The accelerator ran out of memory for one run (transient: a smaller batch or the CPU may
    still work). The model layer retries; this reaches a client only when nothing else worked."""

    status = 503
    kind = "accelerator_out_of_memory"


class BackendUnavailable(ImmichMLError):
    """A requested backend or device is not installed or failed to initialise."""

    status = 503
    kind = "backend_unavailable"


class Overloaded(ImmichMLError):
    """Every worker that could take the request has a full queue."""

    status = 503
    kind = "overloaded"
    retry_after_s = 1


class WorkerCrashed(ImmichMLError):
    """The worker process running the request died (signal or exit code in the message)."""

    status = 503
    kind = "worker_crashed"
    retry_after_s = 1


class NotReady(ImmichMLError):
    """The service is starting or no worker for the request's models is up."""

    status = 503
    kind = "not_ready"
    retry_after_s = 2


class WorkerTimeout(ImmichMLError):
    """A request ran longer than ``MACHINE_LEARNING_WORKER_TIMEOUT``; its worker is restarted."""

    status = 504
    kind = "worker_timeout"
    retry_after_s = 1
