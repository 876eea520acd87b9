"""Face alignment for ArcFace recognizers: 5-point similarity transform + warp into the batch buffer.

Façade over ``immich_ml._core._align`` (csrc/kernels/align.cpp): validates (raising
:class:`~immich_ml.errors.InvalidInput`) and calls the compiled kernel, which runs without the GIL.

Conventions, shared with insightface's ``norm_crop`` / ``cv2.warpAffine`` that Immich uses:
the transform maps source pixels onto the 112x112 crop; crop pixel (x, y) takes the bilinear sample
of the source at M^-1 (x, y) with pixel centres at integer coordinates; samples outside the image
read 0. The sample is rounded to an integer (as an 8-bit warp stores it) before normalization, which
is ``(pixel - mean) * float32(1 / std)`` in float32 (``cv2.dnn.blobFromImages``' formula).

Degenerate landmarks (any NaN or infinity, or all five points within 1e-6 px RMS of their centroid,
so that no scale or angle can be estimated) do not raise: :func:`similarity_transform` returns an
all-zero matrix and the face's crop is that of an all-black image, i.e. every value
(0 - mean) / std (-1.0 with the defaults), or 0 for uint8 output.
"""

from __future__ import annotations

import math
from typing import cast

import numpy as np
from numpy.typing import NDArray

from immich_ml._core import _align
from immich_ml.errors import InvalidInput

__all__ = ["ARCFACE_TEMPLATE", "CROP_SIZE", "align_faces_into", "similarity_transform"]

CROP_SIZE: int = _align.CROP_SIZE
_FLOAT32_MAX = float(np.finfo(np.float32).max)

ARCFACE_TEMPLATE: NDArray[np.float32] = np.array(_align.arcface_template(), dtype=np.float32)
"""(5, 2) float32 (x, y) in 112x112 crop pixels: left eye, right eye, nose tip, left and right
mouth corners. Read-only."""
ARCFACE_TEMPLATE.setflags(write=False)


def _check(array: object, name: str, dtype: type[np.generic], shape: str) -> np.ndarray:
    if not isinstance(array, np.ndarray):
        raise InvalidInput(f"{name} must be a numpy array, got {type(array).__name__}.")
    if array.dtype != dtype:
        raise InvalidInput(f"{name} must be {np.dtype(dtype).name} {shape}, got {array.dtype}.")
    if not array.flags.c_contiguous:
        raise InvalidInput(f"{name} must be C-contiguous.")
    return array


def similarity_transform(landmarks: NDArray[np.float32]) -> NDArray[np.float64]:
    """Umeyama least-squares similarity (rotation, uniform scale, translation; no reflection)
    taking ``landmarks`` onto :data:`ARCFACE_TEMPLATE`.

    landmarks: (5, 2) float32 (x, y) source pixels, C-contiguous.
    Returns the forward (2, 3) float64 matrix [[a, -b, tx], [b, a, ty]] (source -> crop), the one
    ``cv2.warpAffine`` takes. Degenerate landmarks give an all-zero matrix (see module docstring).
    """
    _check(landmarks, "landmarks", np.float32, "(5, 2)")
    if landmarks.shape != (5, 2):
        raise InvalidInput(f"landmarks must have shape (5, 2), got {landmarks.shape}.")
    matrix = np.empty((2, 3), dtype=np.float64)
    _align.similarity_transform(landmarks, matrix)
    return matrix


def align_faces_into(
    image: NDArray[np.uint8],
    landmarks: NDArray[np.float32],
    out: NDArray[np.float32] | NDArray[np.uint8],
    start: int = 0,
    *,
    mean: float = 127.5,
    std: float = 127.5,
) -> None:
    """Aligns every face of one image and writes face i into batch slot ``start + i`` of ``out``.

    image: (H, W, 3) uint8 RGB, C-contiguous.
    landmarks: (N, 5, 2) float32 (x, y) source pixels, C-contiguous (Detections.landmarks).
    out: float32 (B, 3, 112, 112) NCHW RGB, value = (pixel - mean) / std (see module docstring for
        the exact float32 arithmetic); or uint8
        (B, 112, 112, 3) NHWC raw RGB (mean and std unused) for graphs that normalize themselves.
        C-contiguous and writable; slots outside [start, start + N) are not touched.
    """
    _check(image, "image", np.uint8, "(H, W, 3)")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise InvalidInput(f"image must have shape (H, W, 3) with H, W > 0, got {image.shape}.")
    _check(landmarks, "landmarks", np.float32, "(N, 5, 2)")
    if landmarks.ndim != 3 or landmarks.shape[1:] != (5, 2):
        raise InvalidInput(f"landmarks must have shape (N, 5, 2), got {landmarks.shape}.")
    if not isinstance(out, np.ndarray):
        raise InvalidInput(f"out must be a numpy array, got {type(out).__name__}.")
    if out.dtype == np.float32:
        expected: tuple[int, ...] = (3, CROP_SIZE, CROP_SIZE)
    elif out.dtype == np.uint8:
        expected = (CROP_SIZE, CROP_SIZE, 3)
    else:
        raise InvalidInput(f"out must be float32 (B, 3, 112, 112) or uint8 (B, 112, 112, 3), got {out.dtype}.")
    if out.ndim != 4 or out.shape[1:] != expected:
        raise InvalidInput(f"out of dtype {out.dtype} must have shape (B, {', '.join(map(str, expected))}), got {out.shape}.")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise InvalidInput("out must be C-contiguous and writable.")
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)):
        raise InvalidInput(f"start must be an integer, got {start!r}.")
    count = landmarks.shape[0]
    if start < 0 or start + count > out.shape[0]:
        raise InvalidInput(f"{count} faces from slot {start} do not fit a batch of {out.shape[0]}.")
    if out.dtype == np.float32:
        mean, std = float(mean), float(std)
        if not (math.isfinite(mean) and math.isfinite(std)) or abs(std) < 1e-30:
            raise InvalidInput(f"mean and std must be finite and std non-zero, got {mean!r}, {std!r}.")
        planar = cast(NDArray[np.float32], out)
        _align.align_faces_planar(image, landmarks, planar, int(start), mean, 1.0 / std)
    else:
        _align.align_faces_interleaved(image, landmarks, cast(NDArray[np.uint8], out), int(start))
