"""An in-process stand-in for the worker pool, for Flask test-client tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from immich_ml.schemas import Entry
from immich_ml.workers.pool import Prediction


class PoolStandIn:
    """Records what the app hands to the pool and answers as told."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[Entry, ...], bytes | None, str | None]] = []  # images as bytes
        self.error: BaseException | None = None
        self.body = b'{"clip":"[0.25,-0.5]"}'
        self.meta: dict[str, Any] = {
            "timings": {"inference": 0.004, "serialize": 0.0001},
            "counts": {"facial-recognition/recognition": 3},
        }
        self.ready = True
        self.workers: list[dict[str, Any]] = [
            {
                "slot": 0, "role": "device", "device_id": "0", "target": "cpu:0", "pid": 123,
                "state": "ready", "restarts": 2, "last_error": "worker 0 (cpu:0) was killed by signal SIGKILL",
                "inflight": 1, "queue_depth": 0, "capacity": 34, "requests": 7, "errors": 1,
                "uptime_s": 1.0,
                "models": [{
                    "task": "clip", "type": "textual", "name": "ViT-tiny", "state": "loaded",
                    "backend": "ort", "provider": "CPUExecutionProvider", "device": "cpu",
                    "requested": "cpu", "fallback_reason": None, "ttl_remaining_s": 12.5,
                    "load_time_s": 0.25, "runs": 9,
                }],
            }
        ]

    def predict(
        self,
        entries: Sequence[Entry],
        *,
        image: bytes | memoryview | None = None,
        text: str | None = None,
    ) -> Prediction:
        self.calls.append((tuple(entries), None if image is None else bytes(image), text))
        if self.error is not None:
            raise self.error
        # Like a worker: the names its catalog resolved come back with a successful answer.
        resolved = [[e.task.value, e.type.value, e.name, e.name] for e in entries]
        return Prediction(self.body, {**self.meta, "models": resolved}, 0)

    def is_ready(self) -> bool:
        return self.ready

    def health(self, timeout: float = 2.0) -> list[dict[str, Any]]:
        return self.workers

    def snapshot(self) -> list[dict[str, Any]]:
        return self.workers
