"""Compiled OCR kernels (pyx/_ocr.pyx over csrc/kernels/ocr_*.cpp). Call them through
immich_ml.ops.ocr, which validates every argument first."""

import numpy as np
from numpy.typing import NDArray

def det_preprocess(
    img: NDArray[np.uint8],
    out: NDArray[np.float32],
    resized_h: int,
    resized_w: int,
    pad_value: float,
) -> int:
    """Fills out[0] (3, BH, BW); returns the kernel status (0 ok, 1 bad argument, 2 no memory)."""

def db_boxes(
    prob: NDArray[np.float32],
    src_h: int,
    src_w: int,
    min_score: float,
    slow_score: bool,
    threshold: float,
    max_candidates: int,
    unclip_ratio: float,
    boxes: NDArray[np.float32],
    scores: NDArray[np.float32],
) -> tuple[int, int]:
    """Fills boxes (capacity, 4, 2) and scores (capacity,); returns (status, count)."""

def crop_sizes(boxes: NDArray[np.float32], out: NDArray[np.int32]) -> None:
    """out[i] = (w, h) of crop i after the 90° rotation."""

def rec_batch(
    img: NDArray[np.uint8], boxes: NDArray[np.float32], out: NDArray[np.float32], batch_width: int
) -> int:
    """Fills out[i] for every box and zeroes the rows past them; returns the first bad status or 0."""

def ctc_greedy(
    probs: NDArray[np.float32],
    labels: NDArray[np.int32],
    lengths: NDArray[np.int32],
    mean_prob: NDArray[np.float32],
) -> bool:
    """Greedy CTC over probs (N, T, C); fills labels (N, T), lengths (N,), mean_prob (N,).
    Returns False when probs holds a NaN or infinite value."""
