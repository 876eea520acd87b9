# Declarations of csrc/include/immich/ocr.h for the _ocr wrapper.
from libc.stdint cimport int32_t, int64_t, uint8_t


cdef extern from "immich/ocr.h" namespace "immich::ocr" nogil:
    cdef enum Status:
        kOk
        kInvalidArgument
        kOutOfMemory

    cdef struct ProbMap:
        const float* data
        int64_t height
        int64_t width
        int64_t row_stride

    cdef struct DbParams:
        float threshold
        double min_score
        double unclip_ratio
        int32_t max_candidates
        int32_t slow_score
        int64_t src_h
        int64_t src_w

    Status det_preprocess(const uint8_t* rgb, int64_t height, int64_t width, int64_t row_stride,
                          int64_t resized_h, int64_t resized_w, float* out, int64_t out_h,
                          int64_t out_w, float pad_value) noexcept
    Status db_boxes(const ProbMap& prob, const DbParams& params, float* boxes, float* scores,
                    int64_t capacity, int64_t* count) noexcept
    void crop_size(const float* quad, int32_t* w, int32_t* h) noexcept
    Status rec_crop(const uint8_t* rgb, int64_t height, int64_t width, int64_t row_stride,
                    const float* quad, int64_t batch_width, float* out, int64_t out_h,
                    int64_t out_w) noexcept
    bint ctc_greedy(const float* probs, int64_t n, int64_t t, int64_t c, int64_t stride_n,
                    int64_t stride_t, int64_t stride_c, int32_t* labels, int32_t* lengths,
                    float* mean_prob) noexcept
