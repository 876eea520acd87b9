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
from immich_ml.errors import UnknownModel
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


def preload_specs(settings: Settings) -> list[ModelSpec]:
    """Models named in ``MACHINE_LEARNING_PRELOAD__*``, in Immich's load order."""
    specs: list[ModelSpec] = []
    for attribute, task, model_type in _PRELOAD_ORDER:
        names: tuple[str, ...] = getattr(settings.preload, attribute)
        specs.extend(resolve(name, task, model_type) for name in names)
    return specs


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
        """Load every ``PRELOAD`` model now; they never expire. Errors propagate (start-up fails)."""
        for spec in preload_specs(self._settings):
            model = self.get(spec)
            model.preloaded = True
            model.load()
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
        return [model.status(ttl) for model in self.models()]

    def close(self) -> None:
        for model in self.models():
            model.unload(force=True)
        with self._lock:
            self._models.clear()
        release_memory()
