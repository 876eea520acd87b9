"""The ingress's stand-in for the worker pool: sends each group of a request to its deployment.

:class:`RayDispatch` offers what :class:`immich_ml.server.app.PredictionService` asks of the pool,
so the ingress runs the service's own Flask app unchanged. A request's entries are split by
:func:`~immich_ml.ray.groups.split`; every group goes to its deployment at once (routed by model
name through Serve's multiplexing) and the answers are joined into one Immich body.

Ray's failures become the service's own errors, so clients see the same statuses as from a single
host: a replica that dies under a request → tried again on another replica
(``MACHINE_LEARNING_RAY_REQUEST_RETRIES``; predictions have no side effects), then 503 +
``Retry-After``; Serve's queue full → 503 (Overloaded); no replica yet → 503 (NotReady);
``WORKER_TIMEOUT`` → 504. Nothing waits without a bound.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import ray
from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, RequestCancelledError

from immich_ml.config import Settings
from immich_ml.errors import ImmichMLError, NotReady, Overloaded, WorkerCrashed, WorkerTimeout
from immich_ml.ray.groups import merge_bodies, multiplex_id, split
from immich_ml.ray.health import board
from immich_ml.schemas import Entry
from immich_ml.workers.protocol import Done, Failed, Prediction

log = logging.getLogger(__name__)

# Exceptions that mean "the replica went away, another one may answer".
_REPLICA_LOST = (RayActorError, RequestCancelledError)


class RayDispatch:
    """Predictions and health through Ray Serve deployment handles (one per group)."""

    def __init__(self, settings: Settings, handles: Mapping[str, Any]) -> None:
        self._settings = settings
        self._handles = dict(handles)
        self._board = board()

    # --- PredictionService ---------------------------------------------------------------------

    def predict(
        self,
        entries: Sequence[Entry],
        *,
        image: bytes | memoryview | None = None,
        text: str | None = None,
    ) -> Prediction:
        groups = split(entries, tuple(self._handles))
        payload = bytes(image) if image is not None else None
        deadline = time.monotonic() + self._settings.worker_timeout
        calls = {group: self._send(group, members, payload, text) for group, members in groups.items()}
        answers: list[Done] = []
        errors: list[ImmichMLError] = []
        for group, response in calls.items():
            try:
                answer = self._answer(group, groups[group], response, payload, text, deadline)
            except ImmichMLError as error:
                errors.append(error)
                continue
            if isinstance(answer, Failed):
                errors.append(answer.error)
            else:
                answers.append(answer)
        if errors:
            raise errors[0]
        meta: dict[str, Any] = {"timings": {}, "counts": {}}
        for answer in answers:
            for key in ("timings", "counts"):
                for name, value in dict(answer.meta.get(key) or {}).items():
                    meta[key][name] = meta[key].get(name, 0) + value
        return Prediction(merge_bodies([answer.body for answer in answers]), meta, 0)

    def is_ready(self) -> bool:
        live = {report.get("deployment") for report in self.health()}
        return all(group in live for group in self._handles)

    def health(self, timeout: float = 2.0) -> list[dict[str, Any]]:
        """Every live replica's report (see :mod:`.health`); empty when the board does not answer."""
        try:
            reports: list[dict[str, Any]] = ray.get(self._board.snapshot.remote(), timeout=timeout)
        except Exception as error:  # noqa: BLE001 - health must answer even when Ray does not
            log.warning("replica health unavailable: %s", error)
            return []
        return reports

    def snapshot(self) -> list[dict[str, Any]]:
        return self.health(timeout=1.0)

    # --- one group ---------------------------------------------------------------------------------

    def _send(self, group: str, entries: tuple[Entry, ...], image: bytes | None, text: str | None) -> Any:
        handle = self._handles[group].options(multiplexed_model_id=multiplex_id(entries))
        return handle.predict.remote(entries, image, text)

    def _answer(
        self,
        group: str,
        entries: tuple[Entry, ...],
        response: Any,
        image: bytes | None,
        text: str | None,
        deadline: float,
    ) -> Done | Failed:
        tries = 1 + self._settings.ray.request_retries
        for attempt in range(1, tries + 1):
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise TimeoutError
                answer: Done | Failed = response.result(timeout_s=remaining)
                return answer
            except _REPLICA_LOST as error:
                if attempt == tries:
                    raise WorkerCrashed(
                        f"The {group} replica serving this request stopped ({type(error).__name__}); "
                        "retry shortly, a replacement is starting."
                    ) from None
                log.warning("%s replica lost (%s), trying another one", group, type(error).__name__)
                response = self._send(group, entries, image, text)
            except BackPressureError:
                raise Overloaded(
                    f"Every {group} replica is busy and its queue is full "
                    "(MACHINE_LEARNING_RAY_MAX_ONGOING_REQUESTS, MACHINE_LEARNING_QUEUE_DEPTH)."
                ) from None
            except DeploymentUnavailableError:
                raise NotReady(f"The {group} deployment has no running replica yet.") from None
            except TimeoutError:
                response.cancel()
                raise WorkerTimeout(
                    f"The {group} replica did not answer within {self._settings.worker_timeout} s "
                    "(MACHINE_LEARNING_WORKER_TIMEOUT)."
                ) from None
        raise AssertionError("unreachable")
