# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Thin wrappers over csrc/kernels/detect.cpp. Callers (immich_ml.ops.detect) validate shapes,
dtypes and contiguity and allocate every buffer; these functions only release the GIL and call."""

from libc.stdint cimport int64_t
from libcpp.vector cimport vector

cimport detect


def decode_workspace_bytes(int64_t capacity) -> int:
    """Bytes of uint8 scratch ``decode_scrfd`` needs for ``capacity`` candidates."""
    return detect.decode_workspace_bytes(capacity)


cdef vector[detect.ScrfdLevel] _levels(list scores, list distances, list keypoints,
                                       list grid_widths, list strides) except *:
    """Level descriptors pointing into the arrays, which the caller's lists keep alive."""
    cdef vector[detect.ScrfdLevel] levels
    cdef detect.ScrfdLevel level
    cdef const float[::1] view
    cdef Py_ssize_t i
    levels.resize(len(scores))
    for i in range(len(scores)):
        view = scores[i]
        level.count = view.shape[0]
        level.scores = &view[0] if view.shape[0] else NULL
        level.distances = NULL
        level.keypoints = NULL
        level.grid_width = 0
        level.stride = 0
        if distances is not None:
            view = distances[i]
            level.distances = &view[0] if view.shape[0] else NULL
            view = keypoints[i]
            level.keypoints = &view[0] if view.shape[0] else NULL
            level.grid_width = grid_widths[i]
            level.stride = strides[i]
        levels[i] = level
    return levels


def count_candidates(list scores, float min_score) -> int:
    """Anchors with a finite score >= min_score over flat float32 score heads."""
    cdef vector[detect.ScrfdLevel] levels = _levels(scores, None, None, None, None)
    cdef int64_t count
    with nogil:
        count = detect.count_candidates(levels.data(), <int>levels.size(), min_score)
    return count


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
    float[::1] out_boxes,
    float[::1] out_scores,
    float[::1] out_keypoints,
    unsigned char[::1] workspace,
) -> int:
    """Per level ``i``: flat float32 heads ``scores[i]`` (n,), ``distances[i]`` (4n,),
    ``keypoints[i]`` (10n,). Outputs are flat (capacity*4,), (capacity,), (capacity*10,) with
    capacity >= count_candidates(...). Returns the number of detections written."""
    cdef vector[detect.ScrfdLevel] levels = _levels(scores, distances, keypoints, grid_widths,
                                                    strides)
    cdef int64_t written
    with nogil:
        written = detect.decode_scrfd(
            levels.data(), <int>levels.size(), anchors_per_cell, min_score, scale, iou_threshold,
            &out_boxes[0], &out_scores[0], &out_keypoints[0],
            out_scores.shape[0], &workspace[0])
    return written

