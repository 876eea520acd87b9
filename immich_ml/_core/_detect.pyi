"""Compiled SCRFD decode + NMS (pyx/_detect.pyx). Use immich_ml.ops.detect, which validates."""

import numpy as np
from numpy.typing import NDArray

def count_candidates(scores: list[NDArray[np.float32]], min_score: float) -> int: ...
def decode_workspace_bytes(capacity: int) -> int: ...
def decode_scrfd(
    scores: list[NDArray[np.float32]],
    distances: list[NDArray[np.float32]],
    keypoints: list[NDArray[np.float32]],
    grid_widths: list[int],
    strides: list[int],
    anchors_per_cell: int,
    min_score: float,
    scale: float,
    iou_threshold: float,
    out_boxes: NDArray[np.float32],
    out_scores: NDArray[np.float32],
    out_keypoints: NDArray[np.float32],
    workspace: NDArray[np.uint8],
) -> int: ...
