"""SCRFD face-detector post-processing: decode the anchor heads, threshold, rescale, NMS.

Façade over ``immich_ml._core._detect`` (csrc/kernels/detect.cpp): validates the model outputs and
parameters (raising :class:`~immich_ml.errors.InvalidInput`), allocates every buffer, and calls the
compiled kernel, which runs without the GIL. The arithmetic reproduces Immich v3's SCRFD
post-processing step for step (float32 decode, division by the letterbox scale, then OpenCV's
``cv2.dnn.NMSBoxes``), so boxes, landmarks and NMS decisions match it bit for bit; equal scores keep
stride, then anchor order (NMSBoxes' stable sort).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from immich_ml._core import _detect
from immich_ml.errors import InvalidInput

__all__ = ["Detections", "decode_scrfd"]

# Anchor indices are 32-bit inside the kernel.
_MAX_CANDIDATES = 2**32 - 1


@dataclass(frozen=True)
class Detections:
    """Faces found in one image, highest score first.

    boxes: (N, 4) float32 x1, y1, x2, y2 in source-image pixels (not rounded).
    scores: (N,) float32 detector confidence.
    landmarks: (N, 5, 2) float32 (x, y) source-image pixels: left eye, right eye, nose tip, left
        and right mouth corners.
    """

    boxes: NDArray[np.float32]
    scores: NDArray[np.float32]
    landmarks: NDArray[np.float32]

    def __len__(self) -> int:
        return int(self.scores.shape[0])


def _finite(name: str, value: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{name} must be a number, got {value!r}.") from None
    if not math.isfinite(number):
        raise InvalidInput(f"{name} must be finite, got {value!r}.")
    return number


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise InvalidInput(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def _head(array: object, name: str, count: int, width: int) -> NDArray[np.float32]:
    """One model output as a flat float32 view; accepted shapes (count, width), (1, count, width),
    and for width 1 also (count,)."""
    if not isinstance(array, np.ndarray):
        raise InvalidInput(f"{name} must be a numpy array, got {type(array).__name__}.")
    if array.dtype != np.float32:
        raise InvalidInput(f"{name} must be float32, got {array.dtype}.")
    shape = array.shape
    if not (
        shape == (count, width)
        or shape == (1, count, width)
        or (width == 1 and shape == (count,))
    ):
        raise InvalidInput(
            f"{name} has shape {shape}; expected ({count}, {width}) or (1, {count}, {width})."
        )
    if not array.flags.c_contiguous:
        raise InvalidInput(f"{name} must be C-contiguous.")
    return array.reshape(-1)


def decode_scrfd(
    scores: Sequence[NDArray[np.float32]],
    boxes: Sequence[NDArray[np.float32]],
    keypoints: Sequence[NDArray[np.float32]] | None,
    *,
    input_size: tuple[int, int],
    min_score: float,
    scale: float,
    strides: Sequence[int] = (8, 16, 32),
    anchors_per_cell: int = 2,
    iou_threshold: float = 0.4,
) -> Detections:
    """Decodes SCRFD's per-stride heads into faces in source-image pixels.

    scores[i], boxes[i], keypoints[i]: the heads of stride ``strides[i]``, float32 C-contiguous,
        shapes (N, 1), (N, 4), (N, 10) or with a leading batch dimension of 1, where
        N = (height // stride) * (width // stride) * anchors_per_cell. Anchor centres are
        (x * stride, y * stride) over the grid in row-major order, each repeated per anchor.
        Distances and keypoint offsets are in stride units.
    keypoints: required. SCRFD always exports them and the recognizer needs them for alignment;
        ``None`` raises InvalidInput.
    input_size: (height, width) of the model input in pixels.
    min_score: anchors with score >= min_score are candidates.
    scale: model-input pixels per source pixel (letterbox ``ResizeInfo.scale``); boxes and landmarks
        are divided by it.
    iou_threshold: a candidate is suppressed when its overlap with a kept, higher-scoring face is
        greater than this, overlap as ``cv2.dnn.NMSBoxes`` computes it for boxes
        (x1, y1, x2 - x1, y2 - y1): geometric areas, equal to the threshold is kept, two boxes of
        zero area overlap fully. Candidates scoring <= 0 are dropped (NMSBoxes' score threshold 0,
        as Immich v3 calls it).

    Candidates whose box or landmarks are not finite are dropped. Ties in score keep stride order,
    then anchor order. Raises InvalidInput for malformed heads or parameters.
    """
    if keypoints is None:
        raise InvalidInput("decode_scrfd needs the keypoint heads: the SCRFD model has no landmarks.")
    levels = len(strides)
    if levels == 0:
        raise InvalidInput("strides must name at least one detector level.")
    for name, heads in (("scores", scores), ("boxes", boxes), ("keypoints", keypoints)):
        if len(heads) != levels:
            raise InvalidInput(
                f"{name} has {len(heads)} heads but there are {levels} strides {tuple(strides)}."
            )
    if len(input_size) != 2:
        raise InvalidInput(f"input_size must be (height, width), got {input_size!r}.")
    height = _positive_int("input_size height", input_size[0])
    width = _positive_int("input_size width", input_size[1])
    anchors = _positive_int("anchors_per_cell", anchors_per_cell)
    min_score = _finite("min_score", min_score)
    iou_threshold = _finite("iou_threshold", iou_threshold)
    scale = _finite("scale", scale)
    if scale <= 0.0:
        raise InvalidInput(f"scale must be positive, got {scale!r}.")

    flat_scores, flat_boxes, flat_keypoints = [], [], []
    grid_widths, level_strides = [], []
    capacity = 0
    for i in range(levels):
        stride = _positive_int(f"strides[{i}]", strides[i])
        grid_width = width // stride
        count = (height // stride) * grid_width * anchors
        flat_scores.append(_head(scores[i], f"scores[{i}] (stride {stride})", count, 1))
        flat_boxes.append(_head(boxes[i], f"boxes[{i}] (stride {stride})", count, 4))
        flat_keypoints.append(_head(keypoints[i], f"keypoints[{i}] (stride {stride})", count, 10))
        grid_widths.append(grid_width)
        level_strides.append(stride)
        capacity += count
    if capacity > _MAX_CANDIDATES:
        raise InvalidInput(f"{capacity} anchors is more than the decoder supports.")

    # Buffers sized to this image's candidates (an upper bound on detections), not to every anchor.
    candidates = _detect.count_candidates(flat_scores, min_score)
    out_boxes = np.empty((candidates, 4), dtype=np.float32)
    out_scores = np.empty(candidates, dtype=np.float32)
    out_landmarks = np.empty((candidates, 5, 2), dtype=np.float32)
    if candidates:
        workspace = np.empty(_detect.decode_workspace_bytes(candidates), dtype=np.uint8)
        found = _detect.decode_scrfd(
            flat_scores, flat_boxes, flat_keypoints, grid_widths, level_strides, anchors,
            min_score, scale, iou_threshold,
            out_boxes.reshape(-1), out_scores, out_landmarks.reshape(-1), workspace,
        )  # fmt: skip
    else:
        found = 0
    return Detections(out_boxes[:found], out_scores[:found], out_landmarks[:found])

