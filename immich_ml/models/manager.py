"""The models of one worker: created on first use, loaded once, evicted after ``MODEL_TTL`` idle seconds.

Keyed by (task, type, name) like Immich's cache, so per-request options never create a second copy
and never change the shared one. Eviction closes the session, drops every reference and asks the
allocator to give the memory back, so an idle worker shrinks without being restarted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from immich_ml.backends.base import Target
from immich_ml.config import Settings
from immich_ml.errors import ImmichMLError, UnknownModel
from immich_ml.models.base import InferenceModel
from immich_ml.models.cache import ModelStore
from immich_ml.models.catalog import ModelSpec, resolve
from immich_ml.models.clip.textual import MClipTextual, OpenClipTextual
from immich_ml.models.clip.visual import ClipVisual
from immich_ml.models.constants import ModelSource
from immich_ml.models.facial_recognition.detection import FaceDetector
from immich_ml.models.facial_recognition.recognition import FaceRecognizer
from immich_ml.models.memory import release_memory
from immich_ml.models.ocr.detection import TextDetector
from immich_ml.models.ocr.recognition import TextRecognizer
from immich_ml.schemas import ModelTask, ModelType

log = logging.getLogger(__name__)

ModelKey = tuple[str, str, str]


def model_class(spec: ModelSpec) -> type[InferenceModel]:
    """The class that runs ``spec``; raises UnknownModel for families this build cannot run."""
    match (spec.task, spec.type):
        case (ModelTask.SEARCH, ModelType.VISUAL):
            return ClipVisual
        case (ModelTask.SEARCH, ModelType.TEXTUAL):
            return MClipTextual if spec.source == ModelSource.MCLIP else OpenClipTextual
        case (ModelTask.FACIAL_RECOGNITION, ModelType.DETECTION):
            return FaceDetector
        case (ModelTask.FACIAL_RECOGNITION, ModelType.RECOGNITION):
            return FaceRecognizer
        case (ModelTask.OCR, ModelType.DETECTION):
            return TextDetector
        case (ModelTask.OCR, ModelType.RECOGNITION):
            return TextRecognizer
    raise UnknownModel(f"Task {spec.task.value} has no model type {spec.type.value} ({spec.name}).")


# Immich's preload order: textual, visual, face detection, face recognition, OCR detection, recognition.
_PRELOAD_ORDER: tuple[tuple[str, ModelTask, ModelType], ...] = (
    ("clip_textual", ModelTask.SEARCH, ModelType.TEXTUAL),
    ("clip_visual", ModelTask.SEARCH, ModelType.VISUAL),
    ("facial_recognition_detection", ModelTask.FACIAL_RECOGNITION, ModelType.DETECTION),
    ("facial_recognition_recognition", ModelTask.FACIAL_RECOGNITION, ModelType.RECOGNITION),
    ("ocr_detection", ModelTask.OCR, ModelType.DETECTION),
    ("ocr_recognition", ModelTask.OCR, ModelType.RECOGNITION),
)


def _preload_requests(settings: Settings) -> list[tuple[str, ModelTask, ModelType]]:
    """``(name, task, type)`` for every ``MACHINE_LEARNING_PRELOAD__*`` name, in Immich's load order."""
    return [
        (name, task, model_type)
        for attribute, task, model_type in _PRELOAD_ORDER
        for name in getattr(settings.preload, attribute)
    ]


def _preload_failure(name: str, task: ModelTask, model_type: ModelType, reason: str) -> dict[str, Any]:
    """A ``status()`` row for a preload that failed: the worker serves everything else."""
    return {
        "task": task.value, "type": model_type.value, "name": name, "state": "failed",
        "preload": True, "last_error": reason,
    }


class ModelManager:
    """Thread-safe registry of this worker's models."""

    def __init__(
        self,
        settings: Settings,
        target: Target,
        store: ModelStore,
        *,
        factory: Callable[[ModelSpec], type[InferenceModel]] = model_class,
    ) -> None:
        self._settings = settings
        self._target = target
        self._store = store
        self._factory = factory
        self._lock = threading.Lock()
        self._models: dict[ModelKey, InferenceModel] = {}
        self._preload_failures: list[dict[str, Any]] = []

    def get(self, spec: ModelSpec) -> InferenceModel:
        """The one model object for ``spec`` (created unloaded on first request)."""
        key = (spec.task.value, spec.type.value, spec.name)
        with self._lock:
            model = self._models.get(key)
            if model is None:
                cls = self._factory(spec)
                model = self._models[key] = cls(spec, self._store, self._settings, self._target)
            return model

    def models(self) -> list[InferenceModel]:
        with self._lock:
            return list(self._models.values())

    def preload(self) -> None:
        """Load every ``PRELOAD`` model now; they never expire.

        A preload that fails (a name the catalog rejects, a family this build cannot run, a model
        that cannot be fetched or opened) is logged and reported by :meth:`status` with its
        reason; the worker still starts and serves every other model. (It used to stop start-up,
        so one typo in a setting answered every request with 503.)
        """
        failures: list[dict[str, Any]] = []
        for name, task, model_type in _preload_requests(self._settings):
            try:
                model = self.get(resolve(name, task, model_type))
                model.preloaded = True
                model.load()
            except Exception as error:  # noqa: BLE001 - any failure is reported, none stops start-up
                reason = error.message if isinstance(error, ImmichMLError) else f"{type(error).__name__}: {error}"
                log.error("Preloading %s %s model %r failed; serving without it: %s",
                          task.value, model_type.value, name, reason)
                failures.append(_preload_failure(name, task, model_type, reason))
        with self._lock:
            self._preload_failures = failures
        release_memory()

    def evict_expired(self) -> list[str]:
        """Unload models idle longer than ``MODEL_TTL`` (none when it is <= 0); returns their labels."""
        ttl = self._settings.model_ttl
        if ttl <= 0:
            return []
        evicted = [m.spec.label for m in self.models() if m.unload(idle_s=ttl)]
        if evicted:
            how = release_memory()
            log.info("Evicted %s after %d s idle (%s)", ", ".join(evicted), ttl, how)
        return evicted

    def status(self) -> list[dict[str, Any]]:
        ttl = self._settings.model_ttl
        rows = [model.status(ttl) for model in self.models()]
        with self._lock:
            failed = [dict(f) for f in self._preload_failures]
        # A model object that exists reports its own state and last error (it may have loaded
        # on demand since); the extra rows are for names that never became a model.
        known = {(m["task"], m["type"], m["name"]) for m in rows}
        return rows + [f for f in failed if (f["task"], f["type"], f["name"]) not in known]

    def close(self) -> None:
        for model in self.models():
            model.unload(force=True)
        with self._lock:
            self._models.clear()
        release_memory()
