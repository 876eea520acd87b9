"""Compiled face alignment (pyx/_align.pyx). Use immich_ml.ops.align, which validates."""

import numpy as np
from numpy.typing import NDArray

CROP_SIZE: int

def arcface_template() -> list[list[float]]: ...
def set_vector_kernels(enabled: bool) -> bool:
    """Test hook: False forces the portable warp loop process-wide; returns the previous setting."""

def vector_kernels() -> str:
    """The warp loop in use now: "avx2" or "portable"."""

def similarity_transform(landmarks: NDArray[np.float32], matrix: NDArray[np.float64]) -> bool: ...
def align_faces_planar(
    image: NDArray[np.uint8],
    landmarks: NDArray[np.float32],
    out: NDArray[np.float32],
    start: int,
    mean: float,
    scale: float,
) -> None: ...
def align_faces_interleaved(
    image: NDArray[np.uint8],
    landmarks: NDArray[np.float32],
    out: NDArray[np.uint8],
    start: int,
) -> None: ...
