"""SCRFD face detector (InsightFace ``det_*.onnx`` and the starter's SCRFD-2.5G).

Input: one float32 ``[1,3,H,W]`` image (``input.1``), H×W read from the model (640×640 when dynamic),
letterboxed: aspect kept, long side fitted, pasted top-left on a black canvas, RGB ``(x-127.5)/128``.
Graphs that normalise themselves take uint8 ``[1,H,W,3]`` instead. Outputs: per stride (8/16/32, or
8..128 for 5-level models) scores ``(N,1)``, box distances ``(N,4)`` and keypoint offsets
``(N,10)``, with or without a leading batch axis; grouped by their names (``score_8``, ``bbox_8`` ...)
when the graph names them, else in InsightFace's order (all scores, all boxes, all keypoints).
The score threshold is a per-request option (``minScore``, default 0.7) and never stored on the model.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from immich_ml.backends.base import Session, SessionOptions, TensorSpec
from immich_ml.errors import InvalidInput, ModelLoadError
from immich_ml.models.base import InferenceModel, ModelRequest, pixel_buffer
from immich_ml.models.cache import ModelFiles
from immich_ml.models.facial_recognition.metadata import Normalization, read_normalization
from immich_ml.models.timing import Stages
from immich_ml.ops.detect import Detections, decode_scrfd
from immich_ml.ops.image import resize_normalize_into
from immich_ml.schemas import ModelTask, ModelType

DEFAULT_INPUT_SIZE = (640, 640)
DEFAULT_MIN_SCORE = 0.7
DETECTOR_NORMALIZATION = Normalization(mean=127.5, std=128.0)
_NAMED = re.compile(r"^(score|bbox|kps)_(\d+)$")


@dataclass(frozen=True)
class HeadLayout:
    """Which session outputs hold scores, boxes and keypoints, per stride (ascending)."""

    strides: tuple[int, ...]
    scores: tuple[int, ...]
    boxes: tuple[int, ...]
    keypoints: tuple[int, ...]


def head_layout(outputs: Sequence[TensorSpec]) -> HeadLayout:
    """Map a detector's outputs to SCRFD heads; raises ModelLoadError for anything else.

    Keypoint heads are required: the recognizer aligns faces on them.
    """
    named = [_NAMED.match(o.name) for o in outputs]
    if outputs and all(named):
        index: dict[str, dict[int, int]] = {"score": {}, "bbox": {}, "kps": {}}
        for i, match in enumerate(named):
            assert match is not None
            index[match.group(1)][int(match.group(2))] = i
        strides = tuple(sorted(index["score"]))
        if strides and all(sorted(index[kind]) == list(strides) for kind in ("bbox", "kps")):
            return HeadLayout(
                strides,
                tuple(index["score"][s] for s in strides),
                tuple(index["bbox"][s] for s in strides),
                tuple(index["kps"][s] for s in strides),
            )
    levels = {9: 3, 15: 5}.get(len(outputs))
    if levels is None:
        raise ModelLoadError(
            "Not an SCRFD face detector with landmarks: expected 9 outputs (scores, boxes and "
            f"keypoints for 3 strides) or 15, found {len(outputs)} "
            f"({', '.join(o.name for o in outputs)})."
        )
    return HeadLayout(
        (8, 16, 32, 64, 128)[:levels],
        tuple(range(levels)),
        tuple(range(levels, 2 * levels)),
        tuple(range(2 * levels, 3 * levels)),
    )


def parse_min_score(options: dict[str, Any] | Any) -> float:
    """``minScore`` from the request options (default 0.7); must be a number from 0 to 1."""
    value = options.get("minScore", DEFAULT_MIN_SCORE)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInput(f"Option 'minScore' must be a number from 0 to 1, got {value!r}.")
    if not 0.0 <= float(value) <= 1.0:
        raise InvalidInput(f"Option 'minScore' must be a number from 0 to 1, got {value!r}.")
    return float(value)


class FaceDetector(InferenceModel):
    task = ModelTask.FACIAL_RECOGNITION
    type = ModelType.DETECTION

    _input = "input.1"
    _size = DEFAULT_INPUT_SIZE
    _fused = False
    _layout: HeadLayout | None = None
    _norm = DETECTOR_NORMALIZATION

    def _prepare(self, files: ModelFiles) -> None:
        self._norm = read_normalization(files.directory, DETECTOR_NORMALIZATION)

    def _configure(self, session: Session) -> None:
        if len(session.inputs) != 1 or len(session.inputs[0].shape) != 4:
            shapes = ", ".join(f"{i.name}{list(i.shape)}" for i in session.inputs)
            raise ModelLoadError(f"Model '{self.spec.name}' is not a face detector: inputs {shapes}.")
        spec = session.inputs[0]
        self._input = spec.name
        self._fused = spec.dtype == "uint8"
        height, width = spec.shape[1:3] if self._fused else spec.shape[2:4]
        if isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0:
            self._size = (height, width)
        else:
            self._size = DEFAULT_INPUT_SIZE
        try:
            self._layout = head_layout(session.outputs)
        except ModelLoadError as exc:
            raise ModelLoadError(f"Model '{self.spec.name}': {exc.message}") from None
        if any(self._size[0] % s or self._size[1] % s for s in self._layout.strides):
            raise ModelLoadError(
                f"Model '{self.spec.name}': input size {self._size} is not a multiple of its strides."
            )

    def _reset(self) -> None:
        self._layout = None
        self._norm = DETECTOR_NORMALIZATION

    def _shape(self) -> tuple[int, int, int, int]:
        height, width = self._size
        return (1, height, width, 3) if self._fused else (1, 3, height, width)

    def session_options(self) -> SessionOptions:
        return SessionOptions(label=self.spec.label)

    def warmup_shapes(self) -> tuple[dict[str, tuple[int, ...]], ...]:
        return ({self._input: self._shape()},)

    @property
    def input_size(self) -> tuple[int, int]:
        """Model input (height, width) in pixels."""
        return self._size

    def _predict(self, session: Session, request: ModelRequest, stages: Stages) -> Detections:
        image = request.pixels()
        min_score = parse_min_score(request.options)
        layout = self._layout
        assert layout is not None
        norm = self._norm
        with session.bind({self._input: self._shape()}) as call:
            with stages("preprocess"):
                info = resize_normalize_into(
                    image,
                    pixel_buffer(call.inputs[self._input]),
                    0,
                    size=self._size,
                    mode="letterbox",
                    resample="opencv_linear",
                    mean=(norm.mean,) * 3,
                    std=(norm.std,) * 3,
                    scale=1.0,
                )
            with stages("inference"):
                outputs = call.run()
            with stages("postprocess"):
                return self._decode(outputs, layout, min_score, info.scale)

    def _decode(
        self,
        outputs: Sequence[npt.NDArray[Any]],
        layout: HeadLayout,
        min_score: float,
        scale: float,
    ) -> Detections:
        def heads(indices: Sequence[int], width: int) -> list[npt.NDArray[np.float32]]:
            return [np.ascontiguousarray(outputs[i], dtype=np.float32).reshape(-1, width) for i in indices]

        scores = heads(layout.scores, 1)
        boxes = heads(layout.boxes, 4)
        keypoints = heads(layout.keypoints, 10)
        height, width = self._size
        first = layout.strides[0]
        cells = (height // first) * (width // first)
        anchors = max(1, scores[0].shape[0] // cells)
        return decode_scrfd(
            scores,
            boxes,
            keypoints,
            input_size=self._size,
            min_score=min_score,
            scale=scale,
            strides=layout.strides,
            anchors_per_cell=anchors,
        )
