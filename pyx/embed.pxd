# Declarations of csrc/include/immich/embed.h for the _embed wrapper.
from libc.stdint cimport int64_t


cdef extern from "immich/embed.h" namespace "immich::embed" nogil:
    void l2_normalize_rows(const float* src, float* dst, int64_t rows, int64_t cols) noexcept
