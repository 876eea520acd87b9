// Resample weights (Pillow's convolution definition) and the portable scalar passes.
#include <cmath>
#include <cstdint>
#include <vector>

#include "image_internal.h"

namespace immich {
namespace image {
namespace detail {
namespace {

constexpr double kPi = 3.14159265358979323846;

double filter_support(Filter filter) {
  switch (filter) {
    case kBilinear:
      return 1.0;
    case kBicubic:
      return 2.0;
    case kLanczos:
      return 3.0;
  }
  return 1.0;
}

double sinc(double x) {
  if (x == 0.0) return 1.0;
  x = x * kPi;
  return std::sin(x) / x;
}

// The filter shapes Pillow uses: triangle, Keys cubic with a = -0.5, and 3-lobe Lanczos.
// The evaluation order is kept as written so the double weights round the same way.
double filter_value(Filter filter, double x) {
  switch (filter) {
    case kBilinear:
      if (x < 0.0) x = -x;
      return x < 1.0 ? 1.0 - x : 0.0;
    case kBicubic: {
      constexpr double a = -0.5;
      if (x < 0.0) x = -x;
      if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
      if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
      return 0.0;
    }
    case kLanczos:
      return (-3.0 <= x && x < 3.0) ? sinc(x) * sinc(x / 3) : 0.0;
  }
  return 0.0;
}

}  // namespace

void build_axis_weights(Filter filter, int64_t in_size, int64_t out_size, int64_t first, int64_t n,
                        AxisWeights* w) {
  const double scale = static_cast<double>(in_size) / static_cast<double>(out_size);
  // Downscaling widens the filter by the scale factor (antialiasing); upscaling keeps it as is.
  const double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = filter_support(filter) * filterscale;
  const int64_t ksize = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
  w->stride = (ksize + 3) / 4 * 4;
  w->start.assign(static_cast<size_t>(n), 0);
  w->count.assign(static_cast<size_t>(n), 0);
  w->coeffs.assign(static_cast<size_t>(n * w->stride), 0);
  std::vector<double> k(static_cast<size_t>(ksize));
  const double ss = 1.0 / filterscale;
  for (int64_t i = 0; i < n; ++i) {
    // Output sample centres map to input coordinates with the half-pixel offset.
    const double center = (static_cast<double>(first + i) + 0.5) * scale;
    int64_t xmin = static_cast<int64_t>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int64_t xmax = static_cast<int64_t>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    for (int64_t x = 0; x < xmax; ++x) {
      const double v = filter_value(filter, (static_cast<double>(x + xmin) - center + 0.5) * ss);
      k[static_cast<size_t>(x)] = v;
      ww += v;
    }
    int32_t* out = w->coeffs.data() + i * w->stride;
    for (int64_t x = 0; x < xmax; ++x) {
      double v = k[static_cast<size_t>(x)];
      if (ww != 0.0) v /= ww;
      // Round half away from zero, as Pillow converts its weights to fixed point.
      const double fixed = v * static_cast<double>(int64_t{1} << kPrecisionBits);
      out[x] = static_cast<int32_t>(v < 0 ? -0.5 + fixed : 0.5 + fixed);
    }
    w->start[static_cast<size_t>(i)] = xmin;
    w->count[static_cast<size_t>(i)] = static_cast<int32_t>(xmax);
  }
}

void horizontal_row_scalar(const uint8_t* src_row, int64_t /*src_width*/, const AxisWeights& w,
                           uint8_t* out_row) {
  const int64_t n = static_cast<int64_t>(w.start.size());
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* p = src_row + w.start[static_cast<size_t>(i)] * 3;
    const int32_t* k = w.coeffs.data() + i * w.stride;
    const int32_t count = w.count[static_cast<size_t>(i)];
    int32_t s0 = kHalf, s1 = kHalf, s2 = kHalf;
    for (int32_t t = 0; t < count; ++t) {
      s0 += p[3 * t + 0] * k[t];
      s1 += p[3 * t + 1] * k[t];
      s2 += p[3 * t + 2] * k[t];
    }
    out_row[3 * i + 0] = clip8(s0);
    out_row[3 * i + 1] = clip8(s1);
    out_row[3 * i + 2] = clip8(s2);
  }
}

void accumulate_scalar(int32_t* acc, const uint8_t* row, int32_t weight, int64_t n) {
  for (int64_t j = 0; j < n; ++j) acc[j] += row[j] * weight;
}

HorizontalRowFn pick_horizontal() noexcept {
#ifdef IMMICH_IMAGE_X86
  if (__builtin_cpu_supports("avx2")) return horizontal_row_avx2;
#endif
  return horizontal_row_scalar;
}

AccumulateFn pick_accumulate() noexcept {
#ifdef IMMICH_IMAGE_X86
  if (__builtin_cpu_supports("avx2")) return accumulate_avx2;
#endif
  return accumulate_scalar;
}

}  // namespace detail
}  // namespace image
}  // namespace immich
