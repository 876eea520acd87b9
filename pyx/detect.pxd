# Declarations of csrc/include/immich/detect.h for the _detect wrapper.
from libc.stdint cimport int32_t, int64_t


cdef extern from "immich/detect.h" namespace "immich::detect" nogil:
    cdef struct ScrfdLevel:
        const float* scores
        const float* distances
        const float* keypoints
        int64_t count
        int64_t grid_width
        int32_t stride

    int64_t count_candidates(const ScrfdLevel* levels, int32_t level_count,
                             float min_score) noexcept
    size_t decode_workspace_bytes(int64_t capacity) noexcept
    int64_t decode_scrfd(const ScrfdLevel* levels, int32_t level_count, int32_t anchors_per_cell,
                         float min_score, float scale, float iou_threshold,
                         float* out_boxes, float* out_scores, float* out_keypoints,
                         int64_t capacity, unsigned char* workspace) noexcept
