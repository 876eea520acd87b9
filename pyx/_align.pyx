# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Thin wrappers over csrc/kernels/align.cpp. Callers (immich_ml.ops.align) validate shapes,
dtypes, contiguity and slot ranges; these functions only release the GIL and call."""

from libc.stdint cimport int64_t, uint8_t

cimport align

CROP_SIZE = align.kCropSize


def arcface_template() -> list:
    """The 112x112 ArcFace landmark template as 5 [x, y] pairs (float, crop pixels)."""
    return [[align.kArcfaceTemplate[2 * i], align.kArcfaceTemplate[2 * i + 1]] for i in range(5)]


def set_vector_kernels(bint enabled) -> bool:
    """Test hook: False forces the portable warp loop process-wide. Returns the previous setting."""
    return align.set_vector_kernels(enabled)


def vector_kernels() -> str:
    """The warp loop in use now: "avx2" or "portable"."""
    return align.vector_kernels().decode("ascii")


def similarity_transform(const float[:, ::1] landmarks, double[:, ::1] matrix) -> bool:
    """landmarks (5, 2) float32 -> matrix (2, 3) float64 (written). False when degenerate."""
    cdef bint ok
    with nogil:
        ok = align.similarity_transform(&landmarks[0, 0], &matrix[0, 0])
    return ok


def align_faces_planar(
    const uint8_t[:, :, ::1] image,
    const float[:, :, ::1] landmarks,
    float[:, :, :, ::1] out,
    Py_ssize_t start,
    float mean,
    float scale,
) -> None:
    """image (H, W, 3) uint8, landmarks (N, 5, 2) float32, out (B, 3, 112, 112) float32;
    face i goes to slot start + i."""
    cdef Py_ssize_t count = landmarks.shape[0]
    if count == 0:
        return
    with nogil:
        align.align_faces(&image[0, 0, 0], image.shape[0], image.shape[1], image.strides[0],
                          &landmarks[0, 0, 0], count, mean, scale, &out[start, 0, 0, 0], NULL)


def align_faces_interleaved(
    const uint8_t[:, :, ::1] image,
    const float[:, :, ::1] landmarks,
    uint8_t[:, :, :, ::1] out,
    Py_ssize_t start,
) -> None:
    """image (H, W, 3) uint8, landmarks (N, 5, 2) float32, out (B, 112, 112, 3) uint8;
    face i goes to slot start + i."""
    cdef Py_ssize_t count = landmarks.shape[0]
    if count == 0:
        return
    with nogil:
        align.align_faces(&image[0, 0, 0], image.shape[0], image.shape[1], image.strides[0],
                          &landmarks[0, 0, 0], count, 0.0, 1.0, NULL, &out[start, 0, 0, 0])
