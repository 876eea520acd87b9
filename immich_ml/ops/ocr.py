"""PP-OCR pre/post-processing as Immich v3 runs it (RapidOCR 3.x semantics), compiled.

Façade over ``immich_ml._core._ocr`` (csrc/kernels/ocr_*.cpp): validates arrays and parameters
(raising :class:`~immich_ml.errors.InvalidInput`), allocates what the caller does not pass, and
calls kernels that run without the GIL and write into the caller's buffers:

- :func:`det_input_size` / :func:`det_preprocess_into`: the detector input (Pillow LANCZOS resize,
  BGR, ``(x - 0.5) / 127.5``), bit-exact, straight into the bound input with padding;
- :func:`db_boxes`: DB post-processing end to end (OpenCV's contours / min-area rectangles /
  fillPoly rasterisation and pyclipper's round offset reproduced), boxes in reading order;
- :func:`crop_sizes` / :func:`rec_batch_into`: perspective crops (OpenCV's fixed-point bicubic),
  rotation, height-48 resize (OpenCV's fixed-point bilinear), normalisation, right padding, straight
  into the recognizer's batch buffer;
- :func:`ctc_greedy_decode`: greedy CTC decoding with the model's charset.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from immich_ml._core import _ocr
from immich_ml.errors import ImmichMLError, InvalidInput

__all__ = [
    "crop_sizes",
    "ctc_greedy_decode",
    "db_boxes",
    "det_input_size",
    "det_preprocess_into",
    "rec_batch_into",
]

_STATUS_OK, _STATUS_INVALID, _STATUS_NO_MEMORY = 0, 1, 2
# Crops larger than this many pixels cannot come from a real box (boxes are clipped to the image).
_MAX_CROP_PIXELS = 1 << 28


def det_input_size(height: int, width: int, max_resolution: int) -> tuple[int, int]:
    """Upstream's detector size: r = min(max_resolution / min(h, w), 1); each side int(side * r)
    rounded to the nearest multiple of 32 with Python's round (ties to even), never below 32.
    Returns (resized_h, resized_w)."""
    for name, value in (("height", height), ("width", width), ("max_resolution", max_resolution)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise InvalidInput(f"{name} must be a positive integer, got {value!r}")
    ratio = min(float(max_resolution) / min(height, width), 1.0)
    resized_h = int(round(int(height * ratio) / 32) * 32)
    resized_w = int(round(int(width * ratio) / 32) * 32)
    return max(resized_h, 32), max(resized_w, 32)


def det_preprocess_into(
    image: NDArray[np.uint8],
    out: NDArray[np.float32],
    resized_h: int,
    resized_w: int,
    *,
    pad_value: float = 0.0,
) -> None:
    """Pillow-LANCZOS-exact resize of the whole RGB image to (resized_h, resized_w), RGB→BGR,
    ``(x - 0.5) * float32(1 / 127.5)`` (Immich v3's arithmetic, bit for bit), written into
    ``out[0, :, :resized_h, :resized_w]``; every other element of ``out`` is set to pad_value.

    image: (H, W, 3) uint8 RGB, packed pixels (rows may be strided).
    out: (1, 3, BH, BW) float32 C-contiguous, BH >= resized_h, BW >= resized_w.
    """
    src_h, src_w = _check_image(image)
    if not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.ndim != 4:
        raise InvalidInput("out must be a float32 array of shape (1, 3, H, W)")
    if out.shape[0] != 1 or out.shape[1] != 3:
        raise InvalidInput(f"out must have shape (1, 3, H, W), got {out.shape}")
    _check_writable_contiguous(out, "out")
    for name, value, limit in (("resized_h", resized_h, out.shape[2]), ("resized_w", resized_w, out.shape[3])):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 < value <= limit:
            raise InvalidInput(f"{name} must be in 1..{limit} (the size of out), got {value!r}")
    if not math.isfinite(pad_value):
        raise InvalidInput(f"pad_value must be finite, got {pad_value}")
    status = _ocr.det_preprocess(image, out, int(resized_h), int(resized_w), float(pad_value))
    _raise_for(status, f"resize a {src_w}x{src_h} image to {resized_w}x{resized_h}")


def db_boxes(
    prob: NDArray[np.float32],
    src_h: int,
    src_w: int,
    *,
    min_score: float = 0.5,
    score_mode: Literal["fast", "slow"] = "fast",
    threshold: float = 0.3,
    max_candidates: int = 1000,
    unclip_ratio: float = 1.6,
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """DB post-processing end to end (RapidOCR's DBPostProcess + filter_det_res, Immich's order).

    prob: (h, w) float32 probability map; may be a strided view such as ``out[0, 0, :rh, :rw]``
        (columns must be packed). src_h, src_w: the original image size.
    Steps: prob > threshold, 2x2 dilation, contours (outer and hole borders, at most
    max_candidates), min-area rect (short side < 3 dropped), score = mean prob inside the quad
    ("fast") or the contour ("slow"), dropped if < min_score, round-joined unclip by
    area * unclip_ratio / perimeter, min-area rect again (short side < 5 dropped), scaled to source
    pixels with rounding, corners TL, TR, BR, BL clipped to [0, W-1] x [0, H-1], boxes with an edge
    <= 3 px dropped, then reading order (lines by TL.y with a 10 px gap, left to right).
    Returns (boxes float32 (N, 4, 2) whole source pixels x, y; scores float32 (N,)).
    """
    if not isinstance(prob, np.ndarray) or prob.dtype != np.float32 or prob.ndim != 2:
        raise InvalidInput("prob must be a 2-D float32 array (the detector's probability map)")
    if prob.shape[0] == 0 or prob.shape[1] == 0:
        raise InvalidInput(f"prob must not be empty, got shape {prob.shape}")
    if prob.shape[1] > 1 and prob.strides[1] != 4 or prob.strides[0] < 0 or prob.strides[0] % 4:
        raise InvalidInput(
            f"prob rows must be packed float32 (strides (*, 4)), got strides {prob.strides}"
        )
    if prob.shape[0] > 1 and prob.strides[0] < prob.shape[1] * 4:
        raise InvalidInput(f"prob rows overlap (strides {prob.strides})")
    if not np.isfinite(prob).all():
        raise InvalidInput("prob contains NaN or infinite values")
    for name, value in (("src_h", src_h), ("src_w", src_w), ("max_candidates", max_candidates)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise InvalidInput(f"{name} must be a positive integer, got {value!r}")
    if score_mode not in ("fast", "slow"):
        raise InvalidInput(f"score_mode must be 'fast' or 'slow', got {score_mode!r}")
    for name, fvalue in (("min_score", min_score), ("threshold", threshold), ("unclip_ratio", unclip_ratio)):
        if not isinstance(fvalue, (int, float, np.floating)) or not math.isfinite(fvalue):
            raise InvalidInput(f"{name} must be a finite number, got {fvalue!r}")
    if unclip_ratio <= 0:
        raise InvalidInput(f"unclip_ratio must be > 0, got {unclip_ratio}")
    capacity = int(max_candidates)
    boxes = np.empty((capacity, 4, 2), dtype=np.float32)
    scores = np.empty(capacity, dtype=np.float32)
    status, count = _ocr.db_boxes(
        prob, int(src_h), int(src_w), float(min_score), score_mode == "slow", float(threshold),
        min(capacity, 2**31 - 1), float(unclip_ratio), boxes, scores,
    )
    _raise_for(status, f"post-process a {prob.shape[1]}x{prob.shape[0]} probability map")
    return boxes[:count].copy(), scores[:count].copy()


def crop_sizes(image_h: int, image_w: int, boxes: NDArray[np.float32]) -> NDArray[np.int32]:
    """(N, 2) [w, h] of each crop as the recognizer sees it: w = int(max(top, bottom edge)),
    h = int(max(left, right edge)) in float32 as RapidOCR computes them, swapped when h / w >= 1.5
    (the crop is then rotated 90°). image_h/image_w are validated only (the size does not depend on
    them). Degenerate or non-finite quads give [0, 0]."""
    _check_positive(image_h, "image_h")
    _check_positive(image_w, "image_w")
    quads = _check_boxes(boxes)
    out = np.zeros((quads.shape[0], 2), dtype=np.int32)
    if quads.shape[0]:
        _ocr.crop_sizes(quads, out)
    return out


def rec_batch_into(
    image: NDArray[np.uint8],
    boxes: NDArray[np.float32],
    out: NDArray[np.float32],
    batch_width: int,
) -> None:
    """Fills the recognizer's batch input from the quads of one batch.

    For quad i: perspective crop (cv2.warpPerspective INTER_CUBIC + BORDER_REPLICATE semantics,
    OpenCV's fixed point) → np.rot90 if h / w >= 1.5 → RGB→BGR → cv2.resize INTER_LINEAR to height
    out.shape[2] (48) and width min(batch_width, ceil(48 * w / h)) → (x / 255 - 0.5) / 0.5 →
    ``out[i, :, :, :width]``; ``out[i, :, :, width:] = 0``; rows i >= n all zero. A quad whose crop
    is empty (degenerate, non-finite) leaves its row zero.

    image: (H, W, 3) uint8 RGB, packed pixels. boxes: (n, 4, 2) float32 source-pixel quads.
    out: (B >= n, 3, 48, BW) float32 C-contiguous. batch_width: 1..BW.
    """
    src_h, src_w = _check_image(image)
    quads = _check_boxes(boxes)
    if not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.ndim != 4 or out.shape[1] != 3:
        raise InvalidInput("out must be a float32 array of shape (B, 3, 48, W)")
    _check_writable_contiguous(out, "out")
    if out.shape[2] <= 0 or out.shape[3] <= 0:
        raise InvalidInput(f"out must have a positive height and width, got shape {out.shape}")
    if quads.shape[0] > out.shape[0]:
        raise InvalidInput(f"{quads.shape[0]} boxes do not fit a batch of {out.shape[0]}")
    if isinstance(batch_width, bool) or not isinstance(batch_width, (int, np.integer)) or not 0 < batch_width <= out.shape[3]:
        raise InvalidInput(f"batch_width must be in 1..{out.shape[3]}, got {batch_width!r}")
    if quads.shape[0]:
        sizes = np.zeros((quads.shape[0], 2), dtype=np.int32)
        _ocr.crop_sizes(quads, sizes)
        if (sizes.astype(np.int64).prod(axis=1) > _MAX_CROP_PIXELS).any():
            raise InvalidInput(
                f"a box is far larger than the {src_w}x{src_h} image: boxes must be in image pixels"
            )
    status = _ocr.rec_batch(image, quads, out, int(batch_width))
    _raise_for(status, f"crop {quads.shape[0]} boxes from a {src_w}x{src_h} image")


def ctc_greedy_decode(probs: NDArray[np.float32], charset: Sequence[str]) -> list[tuple[str, float]]:
    """Greedy CTC decoding per row of (N, T, C) probabilities: argmax (first maximum) and its
    probability per step; drop repeats, then blanks (index 0); text = the kept symbols joined;
    score = mean probability of the kept steps (0.0 when none), not rounded."""
    if not isinstance(probs, np.ndarray) or probs.dtype != np.float32 or probs.ndim != 3:
        raise InvalidInput("probs must be a float32 array of shape (N, T, C)")
    if any(s % 4 for s in probs.strides):
        raise InvalidInput(f"probs strides must be whole float32 elements, got {probs.strides}")
    n, t, c = probs.shape
    if len(charset) != c:
        raise InvalidInput(
            f"charset has {len(charset)} entries but the recognizer gives {c} classes "
            "(expected blank + the model's characters + space)"
        )
    labels = np.zeros((n, max(t, 1)), dtype=np.int32)
    lengths = np.zeros(n, dtype=np.int32)
    means = np.zeros(n, dtype=np.float32)
    # The kernel checks for NaN/inf on its single pass over probs.
    if n and not _ocr.ctc_greedy(probs, labels, lengths, means):
        raise InvalidInput("probs contains NaN or infinite values")
    symbols = list(charset)
    return [
        ("".join(symbols[k] for k in labels[i, : lengths[i]]), float(means[i])) for i in range(n)
    ]


def _check_positive(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise InvalidInput(f"{name} must be a positive integer, got {value!r}")


def _check_image(image: object) -> tuple[int, int]:
    if not isinstance(image, np.ndarray):
        raise InvalidInput(f"image must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise InvalidInput(f"image must be uint8 (H, W, 3) RGB, got {image.dtype} {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InvalidInput(f"image has zero width or height: shape {image.shape}")
    if image.strides[2] != 1 or (image.shape[1] > 1 and image.strides[1] != 3) or image.strides[0] < 0:
        raise InvalidInput(
            f"image pixels must be packed RGB (strides (*, 3, 1)), got {image.strides}: "
            "pass np.ascontiguousarray(image)"
        )
    return int(image.shape[0]), int(image.shape[1])


def _check_boxes(boxes: object) -> NDArray[np.float32]:
    if not isinstance(boxes, np.ndarray) or boxes.dtype != np.float32:
        raise InvalidInput("boxes must be a float32 array of shape (N, 4, 2)")
    if boxes.ndim != 3 or boxes.shape[1:] != (4, 2):
        raise InvalidInput(f"boxes must have shape (N, 4, 2), got {boxes.shape}")
    if not np.isfinite(boxes).all():
        raise InvalidInput("boxes contain NaN or infinite coordinates")
    return np.ascontiguousarray(boxes)


def _check_writable_contiguous(array: NDArray[np.float32], name: str) -> None:
    if not array.flags.c_contiguous:
        raise InvalidInput(f"{name} must be C-contiguous")
    if not array.flags.writeable:
        raise InvalidInput(f"{name} must be writeable")


def _raise_for(status: int, what: str) -> None:
    if status == _STATUS_NO_MEMORY:
        raise ImmichMLError(f"Not enough memory to {what}")
    if status != _STATUS_OK:
        raise InvalidInput(f"Cannot {what}: invalid arguments")
