"""ArcFace-style face recognizer: aligned 112×112 crops → one embedding per face.

Input: float32 ``[B,3,112,112]`` RGB ``(x-127.5)/127.5`` (or the starter's normalisation from
``recognition/immich_ml.json``; uint8 ``[B,112,112,3]`` for graphs that normalise themselves).
Output: ``[B,D]`` float32, returned raw (Immich does not L2-normalise face embeddings); D is read from
the model (512 for InsightFace, 128 for the starter's SFace).

All faces of an image are aligned by the compiled warp straight into the session's input buffer and
run in batches drawn from a small fixed set of sizes (1, 2, 4, 8, 16, capped by
``MAX_BATCH_SIZE__FACIAL_RECOGNITION``), so the runtime only ever sees a handful of shapes and its
memory stays flat whatever the face count. With cross-request batching on
(``MACHINE_LEARNING_BATCH_WAIT_MS``), each request aligns its crops into its own buffer and the
crops of concurrent requests share runs (:mod:`immich_ml.models.batching`).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import numpy.typing as npt

from immich_ml.backends.base import Session, SessionOptions
from immich_ml.errors import ModelLoadError
from immich_ml.models.base import InferenceModel, ModelRequest, pixel_buffer
from immich_ml.models.batching import batch_sizes, static_batch
from immich_ml.models.runner import copy_rows
from immich_ml.models.cache import ModelFiles
from immich_ml.models.facial_recognition.metadata import Normalization, read_normalization
from immich_ml.models.timing import Stages
from immich_ml.ops.align import align_faces_into
from immich_ml.ops.detect import Detections
from immich_ml.ops.embed import serialize_embedding
from immich_ml.schemas import DetectedFace, ModelTask, ModelType, missing_dependency

CROP = 112
ARCFACE_NORMALIZATION = Normalization(mean=127.5, std=127.5)
# Without a configured maximum: large enough to amortise per-run overhead, small enough that the
# input buffer stays modest (16 × 3 × 112 × 112 × 4 B = 2.4 MB).
DEFAULT_MAX_BATCH = 16


def float32_text(value: float) -> float:
    """The Python float whose JSON text equals Immich's np.float32 output (shortest float32 digits)."""
    return float(str(np.float32(value)))


def detections_to_json(detections: Detections) -> dict[str, Any]:
    """Detection-only answer, as Immich returns the detector's arrays: rounded boxes, scores, landmarks."""
    return {
        "boxes": np.round(detections.boxes).tolist(),
        "scores": [float32_text(s) for s in detections.scores.tolist()],
        "landmarks": detections.landmarks.tolist(),
    }


class FaceRecognizer(InferenceModel):
    task = ModelTask.FACIAL_RECOGNITION
    type = ModelType.RECOGNITION

    _input = "input.1"
    _fused = False
    _sizes: tuple[int, ...] = (1,)
    _norm = ARCFACE_NORMALIZATION

    def _prepare(self, files: ModelFiles) -> None:
        self._norm = read_normalization(files.directory, ARCFACE_NORMALIZATION)

    def _configure(self, session: Session) -> None:
        if len(session.inputs) != 1 or len(session.inputs[0].shape) != 4 or not session.outputs:
            shapes = ", ".join(f"{i.name}{list(i.shape)}" for i in session.inputs)
            raise ModelLoadError(f"Model '{self.spec.name}' is not a face recognizer: inputs {shapes}.")
        spec = session.inputs[0]
        self._input = spec.name
        self._fused = spec.dtype == "uint8"
        spatial = spec.shape[1:3] if self._fused else spec.shape[2:4]
        if any(isinstance(d, int) and d > 0 and d != CROP for d in spatial):
            raise ModelLoadError(
                f"Model '{self.spec.name}' takes {spatial} crops; only {CROP}×{CROP} is supported."
            )
        maximum = self.settings.max_batch_size.facial_recognition or DEFAULT_MAX_BATCH
        self._sizes = batch_sizes(maximum, static_batch(spec.shape[0]))

    def _batching(self, session: Session) -> None:
        self._make_batching(session, self._shapes, self._sizes, batched=True)

    def _shapes(self, batch: int) -> dict[str, tuple[int, ...]]:
        return {self._input: self._shape(batch)}

    def warmup_shapes(self) -> tuple[dict[str, tuple[int, ...]], ...]:
        return tuple(self._shapes(size) for size in self._sizes)

    def _fill_batch(self, buffers: Any, items: Any, batch: int) -> None:
        copy_rows(self._input)(buffers, items, batch)

    def _reset(self) -> None:
        self._norm = ARCFACE_NORMALIZATION

    def _shape(self, batch: int) -> tuple[int, int, int, int]:
        return (batch, CROP, CROP, 3) if self._fused else (batch, 3, CROP, CROP)

    def session_options(self) -> SessionOptions:
        return SessionOptions(label=self.spec.label)

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        return self._sizes

    def _predict(self, session: Session, request: ModelRequest, stages: Stages) -> list[DetectedFace]:
        image = request.pixels()
        detections = request.upstream
        if not isinstance(detections, Detections):
            raise missing_dependency(self.task, self.type)
        count = int(detections.boxes.shape[0])
        if count == 0:
            return []
        embeddings = self._embed(session, image, detections.landmarks, stages)
        with stages("serialize"):
            boxes = np.round(detections.boxes).tolist()
            scores = detections.scores.tolist()
            return [
                {
                    "boundingBox": {"x1": box[0], "y1": box[1], "x2": box[2], "y2": box[3]},
                    "embedding": serialize_embedding(embeddings[i]),
                    "score": float32_text(scores[i]),
                }
                for i, box in enumerate(boxes)
            ]

    def _embed(
        self,
        session: Session,
        image: npt.NDArray[np.uint8],
        landmarks: npt.NDArray[np.float32],
        stages: Stages,
    ) -> npt.NDArray[np.float32]:
        """Embeddings ``(faces, D)`` float32, one row per landmark set, in order."""
        norm = self._norm
        runner = self._runner
        assert runner is not None
        if self._batcher is not None:
            with stages("preprocess"):
                crops = np.empty(self._shape(len(landmarks)), dtype=np.uint8 if self._fused else np.float32)
                align_faces_into(image, landmarks, pixel_buffer(crops), 0, mean=norm.mean, std=norm.std)
            with stages("inference"):
                return np.stack(self._batcher.submit(list(crops)))
        preprocess = 0.0

        def align(buffers: Any, chunk: Any, batch: int) -> None:
            nonlocal preprocess
            started = time.perf_counter()
            buffer = pixel_buffer(buffers[self._input])
            align_faces_into(image, np.ascontiguousarray(chunk), buffer, 0, mean=norm.mean, std=norm.std)
            if len(chunk) < batch:
                buffer[len(chunk) :] = 0
            preprocess += time.perf_counter() - started

        started = time.perf_counter()
        rows = runner.rows(session, landmarks, align)
        stages.add("preprocess", preprocess)
        stages.add("inference", time.perf_counter() - started - preprocess)
        with stages("postprocess"):
            return np.stack(rows)
