"""Compiled image kernel (pyx/_image.pyx over csrc/kernels/image*.cpp). Call it through
immich_ml.ops.image, which validates every argument first."""

import numpy as np
from numpy.typing import NDArray

def plan(
    mode: int, src_h: int, src_w: int, dst_h: int, dst_w: int
) -> tuple[int, int, int, int, int, int, int, float]:
    """(status, resized_w, resized_h, crop_x, crop_y, region_w, region_h, scale); status 0 = ok."""

def resize_normalize_chw(
    img: NDArray[np.uint8],
    out: NDArray[np.float32],
    index: int,
    geometry: tuple[int, int, int, int, int, int, float],
    filter: int,
    scale: float,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
) -> int:
    """Fills out[index] (3, H, W) float32; returns the kernel status (0 ok, 1 bad argument, 2 no memory)."""

def resize_hwc(
    img: NDArray[np.uint8],
    out: NDArray[np.uint8],
    index: int,
    geometry: tuple[int, int, int, int, int, int, float],
    filter: int,
) -> int:
    """Fills out[index] (H, W, 3) uint8; returns the kernel status (0 ok, 1 bad argument, 2 no memory)."""

def set_vector_kernels(enabled: bool) -> bool:
    """Use AVX2 loops where the CPU has them (True) or force the portable loops; returns the old value."""
