// Resample weights (Pillow's convolution definition) and the portable scalar passes.
#include <atomic>
#include <cmath>
#include <cstdint>
#include <vector>

#include "image_internal.h"

namespace immich {
namespace image {
namespace detail {
namespace {

constexpr double kPi = 3.14159265358979323846;

std::atomic<bool> g_vector_kernels{true};

#ifdef IMMICH_IMAGE_X86
bool use_avx2() noexcept {
  return g_vector_kernels.load(std::memory_order_relaxed) && __builtin_cpu_supports("avx2");
}
#endif

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

void horizontal_rows_scalar(const uint8_t* const* src_rows, int64_t /*src_width*/,
                            const AxisWeights& w, uint8_t* const* out_rows) {
  const int64_t n = static_cast<int64_t>(w.start.size());
  for (int r = 0; r < kRowBlock; ++r) {
    if (r > 0 && out_rows[r] == out_rows[r - 1]) continue;  // a repeated tail row
    for (int64_t i = 0; i < n; ++i) horizontal_pixel(src_rows[r], w, i, out_rows[r] + 3 * i);
  }
}

void prepare_horizontal_scalar(AxisWeights*) {}

void vertical_row_scalar(const uint8_t* first_row, int64_t stride, const int32_t* k, int32_t count,
                         int64_t n, uint8_t* out) {
  // Blocks of columns keep the accumulators in cache (or registers) across all taps.
  constexpr int64_t kBlock = 64;
  int32_t acc[kBlock];
  for (int64_t j0 = 0; j0 < n; j0 += kBlock) {
    const int64_t m = n - j0 < kBlock ? n - j0 : kBlock;
    for (int64_t j = 0; j < m; ++j) acc[j] = kHalf;
    for (int32_t t = 0; t < count; ++t) {
      const uint8_t* row = first_row + t * stride + j0;
      const int32_t weight = k[t];
      for (int64_t j = 0; j < m; ++j) acc[j] += row[j] * weight;
    }
    for (int64_t j = 0; j < m; ++j) out[j0 + j] = clip8(acc[j]);
  }
}

void planar_row_scalar(const uint8_t* rgb, int64_t n, const float* gain, const float* bias, float* r,
                       float* g, float* b) {
  for (int64_t x = 0; x < n; ++x) {
    r[x] = static_cast<float>(rgb[3 * x + 0]) * gain[0] + bias[0];
    g[x] = static_cast<float>(rgb[3 * x + 1]) * gain[1] + bias[1];
    b[x] = static_cast<float>(rgb[3 * x + 2]) * gain[2] + bias[2];
  }
}

HorizontalKernel pick_horizontal() noexcept {
#ifdef IMMICH_IMAGE_X86
  if (use_avx2()) return {prepare_horizontal_avx2, horizontal_rows_avx2};
#endif
  return {prepare_horizontal_scalar, horizontal_rows_scalar};
}

VerticalRowFn pick_vertical() noexcept {
#ifdef IMMICH_IMAGE_X86
  if (use_avx2()) return vertical_row_avx2;
#endif
  return vertical_row_scalar;
}

PlanarRowFn pick_planar() noexcept {
#ifdef IMMICH_IMAGE_X86
  if (use_avx2()) return planar_row_avx2;
#endif
  return planar_row_scalar;
}

}  // namespace detail

bool set_vector_kernels(bool enabled) noexcept { return detail::g_vector_kernels.exchange(enabled); }
}  // namespace image
}  // namespace immich
