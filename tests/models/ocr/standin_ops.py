"""TEST-ONLY stand-in for ``immich_ml.ops.ocr`` until the compiled kernels land (helper ``ocr-kernels``).

Same signatures as /work/notes/OCR_API.md, built on the upstream-style reference pipeline
(Pillow/OpenCV/pyclipper/shapely). Installed by tests/conftest.py only when the real module cannot
be imported; the product always imports ``immich_ml.ops.ocr``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from immich_ml.bench import reference_ocr as ref


def det_input_size(height: int, width: int, max_resolution: int) -> tuple[int, int]:
    return ref.det_size(height, width, max_resolution)


def det_preprocess_into(
    image: npt.NDArray[np.uint8], out: npt.NDArray[np.float32], resized_h: int, resized_w: int, *, pad_value: float = 0.0
) -> None:
    from PIL import Image

    resized = np.asarray(
        Image.fromarray(image).resize((resized_w, resized_h), Image.Resampling.LANCZOS), dtype=np.float32
    )[:, :, ::-1]
    out[...] = pad_value
    out[0, :, :resized_h, :resized_w] = ((resized - 0.5) / 127.5).transpose(2, 0, 1)


def db_boxes(
    prob: npt.NDArray[np.float32], src_h: int, src_w: int, *, min_score: float = 0.5, score_mode: str = "fast", **_: Any
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    return ref.db_postprocess(np.ascontiguousarray(prob), src_h, src_w, min_score, score_mode)


def crop_sizes(image_h: int, image_w: int, boxes: npt.NDArray[np.float32]) -> npt.NDArray[np.int32]:
    sizes = []
    for box in boxes:
        w = int(max(np.linalg.norm(box[0] - box[1]), np.linalg.norm(box[2] - box[3])))
        h = int(max(np.linalg.norm(box[0] - box[3]), np.linalg.norm(box[1] - box[2])))
        sizes.append((h, w) if h / max(w, 1) >= 1.5 else (w, h))
    return np.array(sizes, dtype=np.int32).reshape(-1, 2)


def rec_batch_into(
    image: npt.NDArray[np.uint8], boxes: npt.NDArray[np.float32], out: npt.NDArray[np.float32], batch_width: int
) -> None:
    import cv2

    out[...] = 0
    bgr = np.ascontiguousarray(image[:, :, ::-1])
    for i, box in enumerate(boxes):
        c = ref.crop(bgr, box)
        width = min(batch_width, int(math.ceil(48 * c.shape[1] / c.shape[0])))
        resized = cv2.resize(c, (width, 48)).astype(np.float32)
        out[i, :, :, :width] = (resized.transpose(2, 0, 1) / 255 - 0.5) / 0.5


def ctc_greedy_decode(probs: npt.NDArray[np.float32], charset: Sequence[str]) -> list[tuple[str, float]]:
    return ref.ctc_decode(np.asarray(probs), list(charset))
