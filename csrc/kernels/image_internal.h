// Private pieces shared by the image kernel's translation units (geometry/driver, weights, passes).
#ifndef IMMICH_IMAGE_INTERNAL_H
#define IMMICH_IMAGE_INTERNAL_H

#include <cstdint>
#include <vector>

#include "immich/image.h"

namespace immich {
namespace image {
namespace detail {

// Fixed-point weights carry this many fractional bits: Pillow's 8-bit resample uses 32 - 8 - 2 so a
// sum of 255 * weight stays inside int32 even with negative lobes.
constexpr int kPrecisionBits = 22;
constexpr int32_t kHalf = int32_t{1} << (kPrecisionBits - 1);

// Integer weights of one axis for a contiguous run of output positions.
// Output i (0-based within the run) reads source positions start[i] .. start[i] + count[i] - 1
// with weights coeffs[i * stride .. i * stride + count[i] - 1]; coeffs past count[i] up to
// `stride` are zero so vector code may read whole groups of 4.
struct AxisWeights {
  std::vector<int64_t> start;
  std::vector<int32_t> count;
  std::vector<int32_t> coeffs;
  int64_t stride = 0;
};

// Fills `w` for outputs [first, first + n) of a resample from in_size to out_size samples.
// May throw std::bad_alloc (callers catch it).
void build_axis_weights(Filter filter, int64_t in_size, int64_t out_size, int64_t first, int64_t n,
                        AxisWeights* w);

// One source row -> one resampled row of w.start.size() RGB pixels (uint8, rounded and clamped).
using HorizontalRowFn = void (*)(const uint8_t* src_row, int64_t src_width, const AxisWeights& w,
                                 uint8_t* out_row);

// acc[j] += row[j] * weight for j in [0, n): one tap of the vertical pass.
using AccumulateFn = void (*)(int32_t* acc, const uint8_t* row, int32_t weight, int64_t n);

void horizontal_row_scalar(const uint8_t* src_row, int64_t src_width, const AxisWeights& w,
                           uint8_t* out_row);
void accumulate_scalar(int32_t* acc, const uint8_t* row, int32_t weight, int64_t n);

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define IMMICH_IMAGE_X86 1
void horizontal_row_avx2(const uint8_t* src_row, int64_t src_width, const AxisWeights& w,
                         uint8_t* out_row);
void accumulate_avx2(int32_t* acc, const uint8_t* row, int32_t weight, int64_t n);
#endif

// The fastest implementations this CPU runs.
HorizontalRowFn pick_horizontal() noexcept;
AccumulateFn pick_accumulate() noexcept;

// Pillow's rounding of a fixed-point sum back to a uint8 sample.
inline uint8_t clip8(int32_t sum) {
  const int32_t v = sum >> kPrecisionBits;
  return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

}  // namespace detail
}  // namespace image
}  // namespace immich

#endif  // IMMICH_IMAGE_INTERNAL_H
