"""ArcFace-style face recognizer: aligned 112×112 crops → one embedding per face.

Input: float32 ``[B,3,112,112]`` RGB ``(x-127.5)/127.5`` (or the starter's normalisation from
``recognition/immich_ml.json``; uint8 ``[B,112,112,3]`` for graphs that normalise themselves).
Output: ``[B,D]`` float32, returned raw (Immich does not L2-normalise face embeddings); D is read from
the model (512 for InsightFace, 128 for the starter's SFace).

All faces of an image are aligned by the compiled warp straight into the session's input buffer and
run in batches drawn from a small fixed set of sizes (1, 2, 4, 8, 16, capped by
``MAX_BATCH_SIZE__FACIAL_RECOGNITION``), so the runtime only ever sees a handful of shapes and its
memory stays flat whatever the face count.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from immich_ml.backends.base import Session, SessionOptions
from immich_ml.errors import ModelLoadError
from immich_ml.models.base import InferenceModel, ModelRequest, pixel_buffer
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


def batch_sizes(maximum: int, fixed: int | None = None) -> tuple[int, ...]:
    """The batch sizes a recognizer runs: powers of two below ``maximum`` plus ``maximum`` itself, or
    only ``fixed`` when the model's batch axis is static."""
    if fixed is not None:
        return (fixed,)
    sizes = {1, max(1, maximum)}
    size = 2
    while size < maximum:
        sizes.add(size)
        size *= 2
    return tuple(sorted(sizes))


def plan_batches(count: int, sizes: tuple[int, ...]) -> list[tuple[int, int]]:
    """Split ``count`` faces into runs of ``(faces, batch)``: greedy largest size first, so no run is
    padded unless the model's batch is fixed above the faces left (then the last run is padded)."""
    runs: list[tuple[int, int]] = []
    left = count
    while left > 0:
        fitting = [s for s in sizes if s <= left]
        batch = fitting[-1] if fitting else sizes[0]
        faces = min(batch, left)
        runs.append((faces, batch))
        left -= faces
    return runs


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
        batch = spec.shape[0]
        fixed = batch if isinstance(batch, int) and batch > 0 else None
        maximum = self.settings.max_batch_size.facial_recognition or DEFAULT_MAX_BATCH
        self._sizes = batch_sizes(maximum, fixed)

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
        rows: list[npt.NDArray[np.float32]] = []
        start = 0
        for faces, batch in plan_batches(len(landmarks), self._sizes):
            with session.bind({self._input: self._shape(batch)}) as call:
                buffer = pixel_buffer(call.inputs[self._input])
                with stages("preprocess"):
                    align_faces_into(
                        image, landmarks[start : start + faces], buffer, 0, mean=norm.mean, std=norm.std
                    )
                    if faces < batch:
                        buffer[faces:] = 0
                with stages("inference"):
                    outputs = call.run()
                with stages("postprocess"):
                    out = np.asarray(outputs[0], dtype=np.float32).reshape(batch, -1)
                    rows.append(out[:faces].copy())
            start += faces
        return np.concatenate(rows, axis=0)
