# Declarations of csrc/include/immich/image.h for the _image wrapper.
from libc.stdint cimport int32_t, int64_t, uint8_t


cdef extern from "immich/image.h" namespace "immich::image" nogil:
    cdef enum Filter:
        kBilinear
        kBicubic
        kLanczos
        kOpenCvLinear

    cdef enum Mode:
        kShortest
        kSquash
        kLetterbox

    cdef enum Status:
        kOk
        kInvalidArgument
        kOutOfMemory

    cdef struct Geometry:
        int64_t resized_w
        int64_t resized_h
        int64_t crop_x
        int64_t crop_y
        int64_t region_w
        int64_t region_h
        double scale

    cdef struct Source:
        const uint8_t* data
        int64_t height
        int64_t width
        int64_t row_stride

    cdef struct Normalization:
        float scale
        float mean[3]
        float std[3]

    Status plan_geometry(Mode mode, int64_t src_h, int64_t src_w, int64_t dst_h, int64_t dst_w,
                         Geometry* geometry) noexcept
    Status resize_normalize_chw(const Source& src, const Geometry& geometry, Filter filter,
                                const Normalization& norm, float* out, int64_t out_h,
                                int64_t out_w) noexcept
    Status resize_hwc(const Source& src, const Geometry& geometry, Filter filter, uint8_t* out,
                      int64_t out_h, int64_t out_w) noexcept
    bint set_vector_kernels(bint enabled) noexcept
