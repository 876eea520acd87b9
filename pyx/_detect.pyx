# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Thin wrappers over csrc/kernels/detect.cpp. Callers (immich_ml.ops.detect) validate shapes,
dtypes and contiguity and allocate every buffer; these functions only release the GIL and call."""

from libc.stdint cimport int64_t
from libcpp.vector cimport vector

cimport detect


def decode_workspace_bytes(int64_t capacity) -> int:
    """Bytes of uint8 scratch ``decode_scrfd`` needs for ``capacity`` anchors."""
    return detect.decode_workspace_bytes(capacity)


def nms_workspace_bytes(int64_t count) -> int:
    """Bytes of uint8 scratch ``nms`` needs for ``count`` boxes."""
    return detect.nms_workspace_bytes(count)


def decode_scrfd(
    list scores,
    list distances,
    list keypoints,
    list grid_widths,
    list strides,
    int anchors_per_cell,
    float min_score,
    float scale,
    float iou_threshold,
    bint inclusive_area,
    float[::1] out_boxes,
    float[::1] out_scores,
    float[::1] out_keypoints,
    unsigned char[::1] workspace,
) -> int:
    """Per level ``i``: flat float32 heads ``scores[i]`` (n,), ``distances[i]`` (4n,),
    ``keypoints[i]`` (10n,). Outputs are flat (capacity*4,), (capacity,), (capacity*10,).
    Returns the number of detections written."""
    cdef Py_ssize_t level_count = len(scores)
    cdef vector[detect.ScrfdLevel] levels
    cdef detect.ScrfdLevel level
    cdef const float[::1] s
    cdef const float[::1] d
    cdef const float[::1] k
    cdef Py_ssize_t i
    cdef int64_t written
    levels.resize(level_count)
    for i in range(level_count):
        s = scores[i]
        d = distances[i]
        k = keypoints[i]
        level.count = s.shape[0]
        level.scores = &s[0] if s.shape[0] else NULL
        level.distances = &d[0] if d.shape[0] else NULL
        level.keypoints = &k[0] if k.shape[0] else NULL
        level.grid_width = grid_widths[i]
        level.stride = strides[i]
        levels[i] = level
    with nogil:
        written = detect.decode_scrfd(
            levels.data(), <int>level_count, anchors_per_cell, min_score, scale, iou_threshold,
            inclusive_area, &out_boxes[0], &out_scores[0], &out_keypoints[0],
            out_scores.shape[0], &workspace[0])
    return written


def nms(
    const float[:, ::1] boxes,
    const float[::1] scores,
    float iou_threshold,
    bint inclusive_area,
    int64_t[::1] keep,
    unsigned char[::1] workspace,
) -> int:
    """Boxes (n, 4) float32, scores (n,) float32; kept indices go to ``keep`` (n,) int64.
    Returns how many were kept."""
    cdef int64_t written
    with nogil:
        written = detect.nms(&boxes[0, 0], &scores[0], boxes.shape[0], iou_threshold,
                             inclusive_area, &keep[0], &workspace[0])
    return written
