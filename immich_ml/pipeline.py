"""All models of one worker process, chained the way Immich chains them, behind one thread-safe object.

``predict`` takes the parsed ``entries`` of a ``/predict`` request and the raw payload and returns the
exact response body Immich's server expects (embeddings already JSON-array strings, ``imageHeight``/
``imageWidth`` for images). The image is decoded once for every model that needs it; entries that
depend on nothing run first (concurrently when there are several), then the dependent ones (face
recognition after detection) get their upstream's output.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from immich_ml.backends import registry
from immich_ml.backends.base import Target
from immich_ml.config import Settings
from immich_ml.errors import InvalidImage, InvalidInput
from immich_ml.models.base import InferenceModel, ModelRequest
from immich_ml.models.cache import ModelStore
from immich_ml.models.catalog import ModelSpec, resolve
from immich_ml.models.facial_recognition.recognition import detections_to_json
from immich_ml.models.manager import ModelManager
from immich_ml.models.ocr.detection import TextBoxes, text_boxes_to_json
from immich_ml.models.timing import Stages
from immich_ml.ops.detect import Detections
from immich_ml.ops.image import decode_image
from immich_ml.schemas import DEPENDENCIES, IMAGE_TYPES, Entry, ModelTask, ModelType, check_request

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class _Step:
    entry: Entry
    spec: ModelSpec
    model: InferenceModel
    depends_on: tuple[ModelTask, ModelType] | None


class Pipeline:
    """All models of one worker process, on one :class:`Target`. Thread-safe.

    ``store`` may be given to share or configure the model cache (tests point it at a fake hub).
    """

    def __init__(self, settings: Settings, target: Target, *, store: ModelStore | None = None) -> None:
        self._settings = settings
        self._target = target
        self._store = store or ModelStore(settings, formats=registry.preferred_formats(settings, target))
        self._manager = ModelManager(settings, target, self._store)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    @property
    def manager(self) -> ModelManager:
        return self._manager

    # --- requests --------------------------------------------------------------------------------

    def predict(
        self,
        entries: Sequence[Entry],
        *,
        image: bytes | None = None,
        text: str | None = None,
        timings: dict[str, float] | None = None,
    ) -> dict[str, Any]:
        """Run ``entries`` on the payload; returns Immich's response body. Raises errors.*."""
        stages = Stages(timings)
        steps = self._plan(entries, image, text)
        decoded: npt.NDArray[np.uint8] | None = None
        response: dict[str, Any] = {}
        image_steps = [s for s in steps if s.entry.type in IMAGE_TYPES]
        if image_steps:
            assert image is not None
            for step in image_steps:  # the decode may use their input sizes; load errors come first
                step.model.load()
            decoded, (height, width) = self._decode(image, image_steps, stages)
            response["imageHeight"] = height
            response["imageWidth"] = width
        outputs: dict[tuple[ModelTask, ModelType], Any] = {}
        independent = [s for s in steps if s.depends_on is None]
        dependent = [s for s in steps if s.depends_on is not None]
        for group in (independent, dependent):
            results = self._run_group(group, decoded, text, outputs, stages)
            for step, result in zip(group, results, strict=True):
                outputs[(step.entry.task, step.entry.type)] = result
                response[step.entry.task.value] = result
        for task, value in list(response.items()):
            if isinstance(value, Detections):
                response[task] = detections_to_json(value)
            elif isinstance(value, TextBoxes):
                response[task] = text_boxes_to_json(value)
        return response

    def _plan(self, entries: Sequence[Entry], image: bytes | None, text: str | None) -> list[_Step]:
        if not entries:
            raise InvalidInput("No models requested: 'entries' is empty.")
        check_request(entries, has_image=image is not None, has_text=text is not None)
        steps = []
        for entry in entries:
            spec = resolve(entry.name, entry.task, entry.type)
            steps.append(
                _Step(entry, spec, self._manager.get(spec), DEPENDENCIES.get((entry.task, entry.type)))
            )
        return steps

    def _decode(
        self, data: bytes, steps: Sequence[_Step], stages: Stages
    ) -> tuple[npt.NDArray[np.uint8], tuple[int, int]]:
        """Decode once for every image model; returns the pixels and the submitted image's (H, W)."""
        min_side: int | None = None
        if self._settings.fast_decode:
            sides = [step.model.min_image_side() for step in steps]
            if all(side is not None for side in sides):
                min_side = max(side for side in sides if side is not None)
        with stages("decode"):
            pixels = decode_image(data, max_pixels=self._settings.max_image_pixels, min_side=min_side)
            height, width = int(pixels.shape[0]), int(pixels.shape[1])
            if min_side is not None:
                height, width = _stored_size(data, (height, width))
        return pixels, (height, width)

    def _run_group(
        self,
        group: Sequence[_Step],
        image: npt.NDArray[np.uint8] | None,
        text: str | None,
        outputs: dict[tuple[ModelTask, ModelType], Any],
        stages: Stages,
    ) -> list[Any]:
        def run(step: _Step) -> Any:
            upstream = outputs.get(step.depends_on) if step.depends_on is not None else None
            request = ModelRequest(
                image=image if step.entry.type in IMAGE_TYPES else None,
                text=text if step.entry.type == ModelType.TEXTUAL else None,
                options=step.entry.options,
                upstream=upstream,
            )
            return step.model.predict(request, stages)

        if len(group) <= 1:
            return [run(step) for step in group]
        futures = [self._executor().submit(run, step) for step in group]
        # Every entry finishes before the first error (in entry order) is raised, so no model call
        # still runs for a request that has been answered. Immich's asyncio.gather raises at once
        # but likewise lets the other entries run to the end.
        errors = [f.exception() for f in futures]
        for error in errors:
            if error is not None:
                raise error
        return [f.result() for f in futures]

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="immich-ml-entry")
            return self._pool

    # --- lifecycle -------------------------------------------------------------------------------

    def preload(self) -> None:
        """Load the ``MACHINE_LEARNING_PRELOAD__*`` models now; they never expire."""
        self._manager.preload()

    def evict_expired(self) -> list[str]:
        """Unload models idle longer than ``MODEL_TTL`` and give their memory back; returns labels."""
        return self._manager.evict_expired()

    def self_test(self) -> None:
        """Run a one-node model on this worker's device; raises BackendError when it does not work."""
        placement = registry.self_test(self._settings, self._target)
        log.info("Self-test on %s ran on %s (%s)", self._target, placement.provider, placement.device)

    def status(self) -> list[dict[str, Any]]:
        """Per model: task, type, name, state, where it runs (from its session) and usage counters."""
        return self._manager.status()

    def close(self) -> None:
        """Unload every model (even one in use: call when no request can arrive any more)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        self._manager.close()


def _stored_size(data: bytes, fallback: tuple[int, int]) -> tuple[int, int]:
    """(H, W) from the image header, for when the decoder returned a downscaled image."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as probe:
            width, height = probe.size
    except Exception as exc:  # noqa: BLE001 - the decoder already accepted the bytes
        raise InvalidImage(f"Cannot read the image size: {exc}") from exc
    if width <= 0 or height <= 0:
        return fallback
    return height, width
