// Private pieces shared by the image kernel's translation units (geometry/driver, weights, passes).
#ifndef IMMICH_IMAGE_INTERNAL_H
#define IMMICH_IMAGE_INTERNAL_H

#include <cstddef>
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
// `stride` are zero so vector code may read whole groups of 4. `packed` holds whatever layout
// the chosen horizontal kernel wants (filled by its prepare function).
struct AxisWeights {
  std::vector<int64_t> start;
  std::vector<int32_t> count;
  std::vector<int32_t> coeffs;
  std::vector<int16_t> packed;
  int64_t stride = 0;
};

// Fills `w` for outputs [first, first + n) of a resample from in_size to out_size samples.
// May throw std::bad_alloc (callers catch it).
void build_axis_weights(Filter filter, int64_t in_size, int64_t out_size, int64_t first, int64_t n,
                        AxisWeights* w);

// The horizontal pass works on kRowBlock rows at once so the weights are loaded once per block.
constexpr int kRowBlock = 4;

// kRowBlock rows of RGB pixels -> kRowBlock resampled rows of w.start.size() RGB pixels (rounded,
// clamped). src_width is the number of pixels readable in every source row. A caller with fewer
// rows repeats the last source/output pair (the same values are then written twice).
using HorizontalRowsFn = void (*)(const uint8_t* const* src_rows, int64_t src_width,
                                  const AxisWeights& w, uint8_t* const* out_rows);
struct HorizontalKernel {
  void (*prepare)(AxisWeights* w);  // may throw std::bad_alloc
  HorizontalRowsFn rows;
};

// out[j] = clip8(half + sum_t rows[t][j] * k[t]) for j in [0, n), where rows[t] = first_row +
// t * stride: one output row of the vertical pass.
using VerticalRowFn = void (*)(const uint8_t* first_row, int64_t stride, const int32_t* k,
                               int32_t count, int64_t n, uint8_t* out);

// One row of RGB bytes -> three float planes: plane c gets rgb[3x + c] * gain[c] + bias[c] for x in
// [0, n). The vector code multiplies then adds (never fused), as the x86 scalar code does, so both
// round alike.
using PlanarRowFn = void (*)(const uint8_t* rgb, int64_t n, const float* gain, const float* bias,
                             float* r, float* g, float* b);

void prepare_horizontal_scalar(AxisWeights* w);
void horizontal_rows_scalar(const uint8_t* const* src_rows, int64_t src_width,
                            const AxisWeights& w, uint8_t* const* out_rows);
void vertical_row_scalar(const uint8_t* first_row, int64_t stride, const int32_t* k, int32_t count,
                         int64_t n, uint8_t* out);
void planar_row_scalar(const uint8_t* rgb, int64_t n, const float* gain, const float* bias, float* r,
                       float* g, float* b);

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define IMMICH_IMAGE_X86 1
void prepare_horizontal_avx2(AxisWeights* w);
void horizontal_rows_avx2(const uint8_t* const* src_rows, int64_t src_width,
                          const AxisWeights& w, uint8_t* const* out_rows);
void vertical_row_avx2(const uint8_t* first_row, int64_t stride, const int32_t* k, int32_t count,
                       int64_t n, uint8_t* out);
void planar_row_avx2(const uint8_t* rgb, int64_t n, const float* gain, const float* bias, float* r,
                     float* g, float* b);
#endif

// Where a resample driver writes its output: row y of the region (width RGB pixels), or the
// padding of row y from pixel from_x on. The float32 CHW and uint8 HWC outputs implement it.
class RowSink {
 public:
  virtual void row(int64_t y, const uint8_t* rgb, int64_t width) const noexcept = 0;
  virtual void fill(int64_t y, int64_t from_x) const noexcept = 0;

 protected:
  ~RowSink() = default;
};

// OpenCV's INTER_LINEAR resize (kOpenCvLinear; image_opencv_linear.cpp) of the geometry's region
// into rows 0 .. out_h - 1 of `sink` (rows past the region are padding). Arguments are checked by
// the caller.
Status resize_opencv_linear(const Source& src, const Geometry& g, const RowSink& sink,
                            int64_t out_h) noexcept;

// The fastest implementations this CPU runs.
HorizontalKernel pick_horizontal() noexcept;
VerticalRowFn pick_vertical() noexcept;
PlanarRowFn pick_planar() noexcept;

// Pillow's rounding of a fixed-point sum back to a uint8 sample.
inline uint8_t clip8(int32_t sum) {
  const int32_t v = sum >> kPrecisionBits;
  return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

// Output pixel i of one row, plain C++ (also the edge case of the vector code).
inline void horizontal_pixel(const uint8_t* src_row, const AxisWeights& w, int64_t i,
                             uint8_t* out_pixel) {
  const uint8_t* p = src_row + w.start[static_cast<size_t>(i)] * 3;
  const int32_t* k = w.coeffs.data() + i * w.stride;
  const int32_t count = w.count[static_cast<size_t>(i)];
  int32_t s0 = kHalf, s1 = kHalf, s2 = kHalf;
  for (int32_t t = 0; t < count; ++t) {
    s0 += p[3 * t + 0] * k[t];
    s1 += p[3 * t + 1] * k[t];
    s2 += p[3 * t + 2] * k[t];
  }
  out_pixel[0] = clip8(s0);
  out_pixel[1] = clip8(s1);
  out_pixel[2] = clip8(s2);
}

}  // namespace detail
}  // namespace image
}  // namespace immich

#endif  // IMMICH_IMAGE_INTERNAL_H
