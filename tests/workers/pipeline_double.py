"""A stand-in for ``immich_ml.pipeline.Pipeline`` that the pool tests inject through the
``pipeline_factory`` spawn argument (``"pipeline_double:PipelineDouble"``).

It answers in Immich's response shapes without any model, and the request text scripts
misbehaviour, so pool behaviour can be tested deterministically:

* ``sleep:<s>`` sleeps ``s`` seconds, then answers;
* ``kill:<SIGNAME>`` sends that signal to its own process (``kill:SIGSEGV``, ``kill:SIGKILL``);
* ``exit:<code>`` calls ``os._exit(code)``;
* ``raise:<kind>`` raises ``invalid`` → InvalidInput, ``unknown`` → UnknownModel,
  ``bug`` → ValueError (an unexpected error).

Model name ``missing`` raises UnknownModel. Every answer carries ``servedBy`` (pid and target); image answers carry ``imageSha256``.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from collections.abc import Sequence
from typing import Any

import orjson

from immich_ml.backends.base import Target
from immich_ml.config import Settings
from immich_ml.errors import BackendError, InvalidInput, UnknownModel
from immich_ml.schemas import Entry


class PipelineDouble:
    def __init__(self, settings: Settings, target: Target) -> None:
        self.settings = settings
        self.target = target
        self._lock = threading.Lock()
        self._loaded: dict[tuple[str, str, str], float] = {}
        self._preloaded: set[tuple[str, str, str]] = set()
        self._runs: dict[tuple[str, str, str], int] = {}

    # --- pipeline API ---------------------------------------------------------------------

    def predict(
        self,
        entries: Sequence[Entry],
        *,
        image: bytes | None = None,
        text: str | None = None,
        timings: dict[str, float] | None = None,
    ) -> dict[str, Any]:
        started = time.perf_counter()
        if text is not None:
            self._script(text)
        response: dict[str, Any] = {}
        for entry in entries:
            if entry.name == "missing":
                raise UnknownModel(f"Unknown model 'missing' for {entry.task}/{entry.type}.")
            self._touch(entry.key)
        for entry in entries:
            if entry.task == "clip":
                seed = len(image) if image is not None else len(text or "")
                response["clip"] = orjson.dumps([seed / 10.0, 0.5, -0.25]).decode()
            elif entry.task == "facial-recognition" and entry.type == "recognition":
                count = (len(image) % 3) if image is not None else 0
                response["facial-recognition"] = [
                    {
                        "boundingBox": {"x1": 1.0, "y1": 2.0, "x2": 3.0, "y2": 4.0},
                        "embedding": "[0.1,0.2]",
                        "score": 0.9,
                    }
                    for _ in range(count)
                ]
        if image is not None:
            response["imageHeight"], response["imageWidth"] = len(image), 1
            response["imageSha256"] = hashlib.sha256(image).hexdigest()
        response["servedBy"] = {"pid": os.getpid(), "target": f"{self.target.kind}:{self.target.device_id}"}
        if timings is not None:
            timings["inference"] = time.perf_counter() - started
        return response

    def preload(self) -> None:
        p = self.settings.preload
        for names, task, model_type in (
            (p.clip_textual, "clip", "textual"),
            (p.clip_visual, "clip", "visual"),
            (p.facial_recognition_detection, "facial-recognition", "detection"),
            (p.facial_recognition_recognition, "facial-recognition", "recognition"),
        ):
            for name in names:
                key = (task, model_type, name)
                self._touch(key)
                self._preloaded.add(key)

    def evict_expired(self) -> list[str]:
        if self.settings.model_ttl <= 0:
            return []
        now = time.monotonic()
        with self._lock:
            gone = [
                key for key, used in self._loaded.items()
                if key not in self._preloaded and now - used > self.settings.model_ttl
            ]
            for key in gone:
                del self._loaded[key]
        return ["/".join(key) for key in gone]

    def self_test(self) -> None:
        pass

    def status(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        with self._lock:
            return [
                {
                    "task": task,
                    "type": model_type,
                    "name": name,
                    "state": "loaded",
                    "backend": "double",
                    "provider": "DoubleProvider",
                    "device": f"{self.target.kind}:{self.target.device_id}",
                    "requested": self.target.kind,
                    "fallback_reason": None,
                    "ttl_remaining_s": None
                    if (task, model_type, name) in self._preloaded
                    else max(0.0, self.settings.model_ttl - (now - used)),
                    "load_time_s": 0.01,
                    "runs": self._runs.get((task, model_type, name), 0),
                }
                for (task, model_type, name), used in self._loaded.items()
            ]

    def close(self) -> None:
        pass

    # --- helpers --------------------------------------------------------------------------

    def _touch(self, key: tuple[str, str, str]) -> None:
        with self._lock:
            self._loaded[key] = time.monotonic()
            self._runs[key] = self._runs.get(key, 0) + 1

    @staticmethod
    def _script(text: str) -> None:
        verb, _, argument = text.partition(":")
        if verb == "sleep":
            time.sleep(float(argument))
        elif verb == "kill":
            os.kill(os.getpid(), signal.Signals[argument])
            time.sleep(10)
        elif verb == "exit":
            os._exit(int(argument))
        elif verb == "raise":
            if argument == "invalid":
                raise InvalidInput("The double was asked to reject this input.")
            if argument == "unknown":
                raise UnknownModel("Unknown model 'x'. Valid names: a, b.")
            raise ValueError("a bug inside the pipeline")


class FailingPipeline(PipelineDouble):
    """Fails its device self-test, as a worker on a missing GPU would."""

    def self_test(self) -> None:
        raise BackendError("self-test failed: no such device (double)")


class SlowStartPipeline(PipelineDouble):
    """Takes a second to start, to observe the ``starting`` state."""

    def preload(self) -> None:
        time.sleep(1.0)
        super().preload()
