"""PP-OCRv5 text recognizer (CRNN/SVTR + CTC): the detector's quads → texts with scores.

Each quad is cut out with a perspective warp, turned upright when tall, resized to height 48 and
written straight into the recognizer's batch buffer by the compiled kernel. Crops run sorted by
aspect ratio in batches of ``MACHINE_LEARNING_MAX_BATCH_SIZE__OCR`` (default 6), as upstream runs them,
so every batch has upstream's width; that width is then padded on the right to a bucket
(:mod:`.buckets`) and a short batch is padded with empty rows, so the runtime sees few shapes.
CTC greedy decoding uses the charset stored in the model's ``character`` metadata.

A text is kept when its score is above the request's ``minScore`` (strictly, as upstream); the answer
is Immich's ``{box, boxScore, text, textScore}`` with boxes normalized to the image size.
"""

from __future__ import annotations

import math
import numpy as np
import numpy.typing as npt

from immich_ml.backends.base import Session, SessionOptions
from immich_ml.errors import InvalidInput, ModelLoadError
from immich_ml.models.base import InferenceModel, ModelRequest
from immich_ml.models.cache import ModelFiles
from immich_ml.models.ocr.buckets import batch_sizes, padded_batch, recognizer_width
from immich_ml.models.ocr.charset import decoding_charset, read_dictionary
from immich_ml.models.ocr.detection import ONNX_RUNTIME_REASON, TextBoxes, float32_text, float_buffer
from immich_ml.models.ocr.options import parse_recognition
from immich_ml.models.timing import Stages
from immich_ml.ops import ocr
from immich_ml.schemas import ModelTask, ModelType, OcrResult

HEIGHT = 48
MIN_WIDTH = 320  # upstream's rec_img_shape width: every batch is at least 320 wide


def empty_result() -> OcrResult:
    return {"text": [], "box": [], "boxScore": [], "textScore": []}


def upstream_batch_width(ratios: npt.NDArray[np.float64]) -> int:
    """RapidOCR's width for a batch: ``int(48 * max(320/48, widest w/h))``."""
    return int(HEIGHT * max(MIN_WIDTH / HEIGHT, float(ratios.max())))


def plan(crop_sizes: npt.NDArray[np.int32], batch: int) -> list[npt.NDArray[np.intp]]:
    """Crop indices per run: sorted by w/h ascending (stable), cut into runs of ``batch``."""
    ratios = crop_sizes[:, 0].astype(np.float64) / np.maximum(crop_sizes[:, 1], 1)
    order = np.argsort(ratios, kind="stable")
    return [order[i : i + batch] for i in range(0, len(order), batch)]


class TextRecognizer(InferenceModel):
    task = ModelTask.OCR
    type = ModelType.RECOGNITION

    _input = "x"
    _charset: list[str] = []
    _static_width: int | None = None
    _sizes: tuple[int, ...] = (1,)

    def _prepare(self, files: ModelFiles) -> None:
        self._charset = decoding_charset(read_dictionary(files.directory / "model.onnx"))

    def _configure(self, session: Session) -> None:
        if len(session.inputs) != 1 or len(session.inputs[0].shape) != 4 or not session.outputs:
            shapes = ", ".join(f"{i.name}{list(i.shape)}" for i in session.inputs)
            raise ModelLoadError(f"Model '{self.spec.name}' is not a text recognizer: inputs {shapes}.")
        spec = session.inputs[0]
        channels, height, width = spec.shape[1:4]
        if spec.dtype != "float32" or (isinstance(channels, int) and channels != 3):
            raise ModelLoadError(f"Model '{self.spec.name}': input {spec.name} must be float32 [N,3,48,W].")
        if isinstance(height, int) and height != HEIGHT:
            raise ModelLoadError(f"Model '{self.spec.name}' takes height {height}; only {HEIGHT} is supported.")
        self._input = spec.name
        self._static_width = width if isinstance(width, int) and width > 0 else None
        classes = session.outputs[0].shape[-1]
        if isinstance(classes, int) and classes != len(self._charset):
            raise ModelLoadError(
                f"Model '{self.spec.name}' has {classes} classes but its 'character' metadata gives "
                f"{len(self._charset)} (with blank and space): the dictionary does not belong to this model."
            )
        batch = spec.shape[0]
        maximum = self.settings.max_batch_size.ocr
        self._sizes = (batch,) if isinstance(batch, int) and batch > 0 else batch_sizes(maximum)

    def _reset(self) -> None:
        self._charset = []
        self._static_width = None

    def session_options(self) -> SessionOptions:
        return SessionOptions(label=self.spec.label, onnx_runtime_reason=ONNX_RUNTIME_REASON)

    @property
    def charset(self) -> list[str]:
        return self._charset

    def _predict(self, session: Session, request: ModelRequest, stages: Stages) -> OcrResult:
        image = request.image
        found = request.upstream
        if image is None:
            raise InvalidInput("Either image or text must be provided")
        if not isinstance(found, TextBoxes):
            raise InvalidInput("Task ocr of type recognition depends on output of detection")
        options = parse_recognition(request.options)
        if len(found) == 0:
            return empty_result()
        image = np.ascontiguousarray(image)
        texts, scores = self._read(session, image, found.boxes, stages)
        with stages("serialize"):
            keep = [i for i, score in enumerate(scores) if score > options.min_score]
            boxes = found.normalized()
            return {
                "text": [texts[i] for i in keep],
                "box": [float32_text(v) for i in keep for v in boxes[i].tolist()],
                "boxScore": [float32_text(float(found.scores[i])) for i in keep],
                "textScore": [scores[i] for i in keep],
            }

    def _read(
        self, session: Session, image: npt.NDArray[np.uint8], boxes: npt.NDArray[np.float32], stages: Stages
    ) -> tuple[list[str], list[float]]:
        """Text and score (rounded to 5 decimals, as upstream) per box, in the boxes' order."""
        count = int(boxes.shape[0])
        texts = [""] * count
        scores = [0.0] * count
        with stages("preprocess"):
            sizes = ocr.crop_sizes(int(image.shape[0]), int(image.shape[1]), boxes)
            runs = plan(sizes, self._sizes[-1])
        for indices in runs:
            ratios = sizes[indices, 0].astype(np.float64) / np.maximum(sizes[indices, 1], 1)
            width = upstream_batch_width(ratios)
            padded_width = recognizer_width(width) if self._static_width is None else self._static_width
            width = min(width, padded_width)
            rows = padded_batch(len(indices), self._sizes)
            with session.bind({self._input: (rows, 3, HEIGHT, padded_width)}) as call:
                buffer = float_buffer(call.inputs[self._input])
                with stages("preprocess"):
                    batch_boxes = np.ascontiguousarray(boxes[indices])
                    ocr.rec_batch_into(image, batch_boxes, buffer, width)
                with stages("inference"):
                    outputs = call.run()
                with stages("postprocess"):
                    probs = np.asarray(outputs[0], dtype=np.float32)
                    steps = probs.shape[1]
                    # Steps over the bucket's extra padding are not part of upstream's output.
                    used = min(steps, math.ceil(steps * width / padded_width))
                    decoded = ocr.ctc_greedy_decode(probs[: len(indices), :used], self._charset)
            for index, (text, score) in zip(indices.tolist(), decoded, strict=True):
                texts[index] = text
                scores[index] = round(float(score), 5)
        return texts, scores

