// AVX2 versions of the two inner loops, picked at run time when the CPU has AVX2.
#include "image_internal.h"

#ifdef IMMICH_IMAGE_X86

namespace immich {
namespace image {
namespace detail {

__attribute__((target("avx2"))) void horizontal_row_avx2(const uint8_t* src_row, int64_t src_width,
                                                        const AxisWeights& w, uint8_t* out_row) {
  horizontal_row_scalar(src_row, src_width, w, out_row);
}

__attribute__((target("avx2"))) void accumulate_avx2(int32_t* acc, const uint8_t* row,
                                                    int32_t weight, int64_t n) {
  for (int64_t j = 0; j < n; ++j) acc[j] += row[j] * weight;
}

}  // namespace detail
}  // namespace image
}  // namespace immich

#endif  // IMMICH_IMAGE_X86
