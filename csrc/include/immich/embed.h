// Embedding post-processing: row-wise L2 normalization.
//
// Plain C++17, no Python: pointers and sizes in, results written into caller buffers, no
// exceptions, no allocation.
#pragma once

#include <cstdint>

namespace immich::embed {

// out[r, :] = in[r, :] / ||in[r, :]||_2 for `rows` rows of `cols` float32 each (row-major,
// contiguous; `in` and `out` may be the same buffer). The norm is accumulated in double. A row whose
// norm is 0 is written as zeros; a row containing NaN or infinity comes out as NaN or 0 where
// IEEE division says so (no exception, no crash). Results do not depend on the calling thread's
// flush-to-zero / denormals-are-zero mode (ONNX Runtime turns it on): subnormal inputs and outputs
// are kept, and the caller's mode is restored before returning.
void l2_normalize_rows(const float* in, float* out, int64_t rows, int64_t cols) noexcept;

}  // namespace immich::embed
