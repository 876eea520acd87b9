# Declarations of csrc/include/immich/align.h for the _align wrapper.
from libc.stdint cimport int64_t, uint8_t
from libcpp cimport bool


cdef extern from "immich/align.h" namespace "immich::align" nogil:
    const int kCropSize
    const double kArcfaceTemplate[10]
    bool similarity_transform(const float* landmarks, double* matrix) noexcept
    void align_faces(const uint8_t* image, int64_t height, int64_t width, int64_t row_stride,
                     const float* landmarks, int64_t face_count, float mean, float scale,
                     float* out_planar, uint8_t* out_interleaved) noexcept
    bool set_vector_kernels(bool enabled) noexcept
    const char* vector_kernels() noexcept
