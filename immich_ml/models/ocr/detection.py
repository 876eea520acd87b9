"""PP-OCRv5 DB text detector: image → text quadrilaterals with box scores, in reading order.

Input ``x`` float32 ``[1,3,H,W]``: the image resized as upstream resizes it (Pillow LANCZOS, short
side to ``maxResolution`` at most, sides rounded to multiples of 32), BGR, ``(x - 0.5) / 127.5``, then
padded up to a bucket shape (:mod:`.buckets`) so the runtime sees a handful of shapes. Output: a
probability map ``[1,1,H,W]`` whose unpadded part goes through DB post-processing. Both ends are the
compiled kernels of :mod:`immich_ml.ops.ocr`; options come with each request (:mod:`.options`).

Images with a side under 32 pixels have no text, as upstream decides. Where the model's input is
static (an RKNN export), that shape is the only bucket and a larger image is resized to fit it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from immich_ml.backends.base import Session, SessionOptions
from immich_ml.errors import InvalidInput, ModelLoadError
from immich_ml.models.base import InferenceModel, ModelRequest
from immich_ml.models.ocr.buckets import detector_bucket
from immich_ml.models.ocr.options import parse_detection
from immich_ml.models.timing import Stages
from immich_ml.ops import ocr
from immich_ml.schemas import ModelTask, ModelType

MIN_SIDE = 32
# Why OCR models run on ONNX Runtime on ARM NN / RKNN devices (shown in /health).
ONNX_RUNTIME_REASON = (
    "OCR models run on ONNX Runtime on {kind} devices: Immich publishes no {kind} export of them "
    "(an RKNN detector at detection/rknpu/<soc>/model.rknn is used when present)"
)


@dataclass(frozen=True)
class TextBoxes:
    """Detected text: ``boxes`` (N,4,2) float32 corners TL,TR,BR,BL in image pixels (x, y),
    ``scores`` (N,) float32, in reading order; ``height``/``width`` of the image they refer to."""

    boxes: npt.NDArray[np.float32]
    scores: npt.NDArray[np.float32]
    height: int
    width: int

    @staticmethod
    def empty(height: int, width: int) -> TextBoxes:
        return TextBoxes(np.zeros((0, 4, 2), np.float32), np.zeros((0,), np.float32), height, width)

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def normalized(self) -> npt.NDArray[np.float32]:
        """Boxes as Immich stores them: (N, 8) float32 x/W, y/H."""
        scale = np.array([self.width, self.height], dtype=np.float32)
        return (self.boxes / scale).reshape(-1, 8).astype(np.float32, copy=False)


def float32_text(value: float) -> float:
    """The Python float whose JSON text equals upstream's np.float32 output (shortest float32 digits)."""
    return float(str(np.float32(value)))


def text_boxes_to_json(found: TextBoxes) -> dict[str, Any]:
    """A detection-only answer: normalized boxes and their scores."""
    return {
        "box": [float32_text(v) for v in found.normalized().reshape(-1).tolist()],
        "boxScore": [float32_text(s) for s in found.scores.tolist()],
    }


def float_buffer(array: npt.NDArray[np.generic]) -> npt.NDArray[np.float32]:
    """A bound input buffer the OCR kernels write into (the graphs take float32)."""
    if array.dtype != np.float32:
        raise ModelLoadError(f"OCR input buffer of dtype {array.dtype}; float32 expected.")
    return cast(npt.NDArray[np.float32], array)


def replicate_edges(buffer: npt.NDArray[np.float32], height: int, width: int) -> None:
    """Fill the bucket's padding with the image's last column and row.

    A constant pad (black, 0.0) next to a bright image is an edge the DB network reads as text:
    measured on rendered pages, zero padding added boxes along the border and moved box scores by
    up to 0.08, edge replication by under 0.01 for small pads (benchmarks/README.md).
    """
    if width < buffer.shape[3]:
        buffer[0, :, :height, width:] = buffer[0, :, :height, width - 1 : width]
    if height < buffer.shape[2]:
        buffer[0, :, height:, :] = buffer[0, :, height - 1 : height, :]


class TextDetector(InferenceModel):
    task = ModelTask.OCR
    type = ModelType.DETECTION

    _input = "x"
    _static: tuple[int, int] | None = None

    def _configure(self, session: Session) -> None:
        if len(session.inputs) != 1 or len(session.inputs[0].shape) != 4 or not session.outputs:
            shapes = ", ".join(f"{i.name}{list(i.shape)}" for i in session.inputs)
            raise ModelLoadError(f"Model '{self.spec.name}' is not a DB text detector: inputs {shapes}.")
        spec = session.inputs[0]
        if spec.dtype != "float32":
            raise ModelLoadError(f"Model '{self.spec.name}': input {spec.name} is {spec.dtype}, not float32.")
        self._input = spec.name
        height, width = spec.shape[2:4]
        if isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0:
            if height % 32 or width % 32:
                raise ModelLoadError(f"Model '{self.spec.name}': input {height}x{width} is not a multiple of 32.")
            self._static = (height, width)
        else:
            self._static = None

    def _reset(self) -> None:
        self._static = None

    def session_options(self) -> SessionOptions:
        return SessionOptions(label=self.spec.label, onnx_runtime_reason=ONNX_RUNTIME_REASON)

    def shape_for(self, height: int, width: int, max_resolution: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """((resized_h, resized_w), (bucket_h, bucket_w)) for an image of ``height`` x ``width``."""
        resized = ocr.det_input_size(height, width, max_resolution)
        static = self._static
        if static is None:
            return resized, detector_bucket(*resized)
        rh, rw = resized
        if rh > static[0] or rw > static[1]:
            scale = min(static[0] / height, static[1] / width)
            rh = min(static[0], max(32, round(height * scale / 32) * 32))
            rw = min(static[1], max(32, round(width * scale / 32) * 32))
        return (rh, rw), static

    def _predict(self, session: Session, request: ModelRequest, stages: Stages) -> TextBoxes:
        image = request.image
        if image is None:
            raise InvalidInput("Either image or text must be provided")
        options = parse_detection(request.options, self.settings.preload.ocr_max_resolution)
        height, width = int(image.shape[0]), int(image.shape[1])
        if height < MIN_SIDE or width < MIN_SIDE:
            return TextBoxes.empty(height, width)
        (rh, rw), (bh, bw) = self.shape_for(height, width, options.max_resolution)
        with session.bind({self._input: (1, 3, bh, bw)}) as call:
            buffer = float_buffer(call.inputs[self._input])
            with stages("preprocess"):
                ocr.det_preprocess_into(np.ascontiguousarray(image), buffer, rh, rw)
                replicate_edges(buffer, rh, rw)
            with stages("inference"):
                outputs = call.run()
            with stages("postprocess"):
                prob = np.asarray(outputs[0], dtype=np.float32)
                prob = prob.reshape(prob.shape[-2], prob.shape[-1])[:rh, :rw]
                boxes, scores = ocr.db_boxes(
                    prob, height, width, min_score=options.min_score, score_mode=options.score_mode
                )
        return TextBoxes(boxes, scores, height, width)
