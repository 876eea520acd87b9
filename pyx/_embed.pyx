# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Thin wrapper over csrc/kernels/embed.cpp. The caller (immich_ml.ops.embed) validates and
allocates."""

cimport embed


def l2_normalize_rows(const float[:, ::1] src, float[:, ::1] dst) -> None:
    """src, dst (rows, cols) float32 C-contiguous, same shape; dst may alias src."""
    if src.shape[0] == 0 or src.shape[1] == 0:
        return
    with nogil:
        embed.l2_normalize_rows(&src[0, 0], &dst[0, 0], src.shape[0], src.shape[1])
