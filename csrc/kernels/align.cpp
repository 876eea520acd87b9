// 5-point similarity transform + fused bilinear warp/normalize. See immich/align.h.
#include "immich/align.h"

#include <atomic>
#include <cmath>
#include <cstring>

#include "align_internal.h"

namespace immich::align {

const double kArcfaceTemplate[kLandmarks * 2] = {
    38.2946, 51.6963, 73.5318, 51.5014, 56.0252, 71.7366, 41.5493, 92.3655, 70.7299, 92.2041,
};

using namespace detail;

namespace {

// Landmarks closer than this (RMS distance to their centroid, pixels) carry no scale or angle.
constexpr double kMinSpread = 1e-6;

// Inverse of a forward 2x3 affine matrix: crop -> source. False when it is not invertible.
bool invert(const double* m, double* inv) {
  const double det = m[0] * m[4] - m[1] * m[3];
  if (!(std::fabs(det) > 0.0) || !std::isfinite(det)) return false;
  inv[0] = m[4] / det;
  inv[1] = -m[1] / det;
  inv[3] = -m[3] / det;
  inv[4] = m[0] / det;
  inv[2] = -(inv[0] * m[2] + inv[1] * m[5]);
  inv[5] = -(inv[3] * m[2] + inv[4] * m[5]);
  for (int i = 0; i < 6; ++i) {
    if (!std::isfinite(inv[i])) return false;
  }
  return true;
}

std::atomic<bool> g_vector_kernels{true};

#ifdef IMMICH_ALIGN_X86
bool use_avx2(const Image& im) {
  return g_vector_kernels.load(std::memory_order_relaxed) && __builtin_cpu_supports("avx2") &&
         avx2_fits(im);
}
#endif

// Runs every crop pixel through the sampler and hands the rounded RGB to the sink, 4 pixels of a
// row at a time (sink.store4) where all their taps are inside the image or all are certainly
// outside, else one by one (sink.store1).
template <typename Sink>
void warp(const Image& im, const double* inv, const Sink& sink) {
  const float step_x = static_cast<float>(inv[0]), step_y = static_cast<float>(inv[3]);
  prefetch_first_rows(im, inv);
  for (int y = 0; y < kCropSize; ++y) {
    const Row row = row_setup(im, inv, y);
    if (row.black) {
      const Int4 zero = {0, 0, 0, 0};
      for (int x = 0; x < kCropSize; x += 4) sink.store4(int64_t{y} * kCropSize + x, zero, zero, zero);
      continue;
    }
    const double ahead_x = row.start_x + kPrefetchRows * inv[1];
    const double ahead_y = row.start_y + kPrefetchRows * inv[4];
    for (int x = 0; x < kCropSize; x += 4) {
      prefetch(im, ahead_x + inv[0] * x, ahead_y + inv[3] * x);
      warp_group4(im, inv, row, step_x, step_y, y, x, sink);
    }
  }
}

}  // namespace

bool similarity_transform(const float* landmarks, double* matrix) noexcept {
  for (int i = 0; i < 6; ++i) matrix[i] = 0.0;
  double mx = 0.0, my = 0.0, tx = 0.0, ty = 0.0;
  for (int i = 0; i < kLandmarks; ++i) {
    if (!std::isfinite(landmarks[2 * i]) || !std::isfinite(landmarks[2 * i + 1])) return false;
    mx += landmarks[2 * i];
    my += landmarks[2 * i + 1];
    tx += kArcfaceTemplate[2 * i];
    ty += kArcfaceTemplate[2 * i + 1];
  }
  mx /= kLandmarks;
  my /= kLandmarks;
  tx /= kLandmarks;
  ty /= kLandmarks;
  double spread = 0.0, dot = 0.0, cross = 0.0;
  for (int i = 0; i < kLandmarks; ++i) {
    const double px = landmarks[2 * i] - mx, py = landmarks[2 * i + 1] - my;
    const double qx = kArcfaceTemplate[2 * i] - tx, qy = kArcfaceTemplate[2 * i + 1] - ty;
    spread += px * px + py * py;
    dot += px * qx + py * qy;
    cross += px * qy - py * qx;
  }
  if (!(spread > kLandmarks * kMinSpread * kMinSpread)) return false;
  const double a = dot / spread, b = cross / spread;
  const double m[6] = {a, -b, tx - (a * mx - b * my), b, a, ty - (b * mx + a * my)};
  for (double v : m) {
    if (!std::isfinite(v)) return false;
  }
  for (int i = 0; i < 6; ++i) matrix[i] = m[i];
  return true;
}

void warp_planar(const uint8_t* image, int64_t height, int64_t width, int64_t row_stride,
                 const double* matrix, float mean, float scale, float* out) noexcept {
  double inv[6];
  if (!invert(matrix, inv)) {
    const float black = (0.0f - mean) * scale;
    for (int64_t i = 0; i < 3 * kPlane; ++i) out[i] = black;
    return;
  }
  const Image im{image, height, width, row_stride};
#ifdef IMMICH_ALIGN_X86
  if (use_avx2(im)) return warp_planar_avx2(im, inv, mean, scale, out);
#endif
  warp(im, inv, PlanarSink{out, mean, scale});
}

void warp_interleaved(const uint8_t* image, int64_t height, int64_t width, int64_t row_stride,
                      const double* matrix, uint8_t* out) noexcept {
  double inv[6];
  if (!invert(matrix, inv)) {
    std::memset(out, 0, 3 * kPlane);
    return;
  }
  const Image im{image, height, width, row_stride};
#ifdef IMMICH_ALIGN_X86
  if (use_avx2(im)) return warp_interleaved_avx2(im, inv, out);
#endif
  warp(im, inv, InterleavedSink{out});
}

void align_faces(const uint8_t* image, int64_t height, int64_t width, int64_t row_stride,
                 const float* landmarks, int64_t face_count, float mean, float scale,
                 float* out_planar, uint8_t* out_interleaved) noexcept {
  for (int64_t i = 0; i < face_count; ++i) {
    double matrix[6];
    similarity_transform(landmarks + i * kLandmarks * 2, matrix);
    if (out_planar != nullptr) {
      warp_planar(image, height, width, row_stride, matrix, mean, scale,
                  out_planar + i * 3 * kPlane);
    } else {
      warp_interleaved(image, height, width, row_stride, matrix, out_interleaved + i * 3 * kPlane);
    }
  }
}

bool set_vector_kernels(bool enabled) noexcept { return g_vector_kernels.exchange(enabled); }

const char* vector_kernels() noexcept {
#ifdef IMMICH_ALIGN_X86
  if (g_vector_kernels.load(std::memory_order_relaxed) && __builtin_cpu_supports("avx2")) return "avx2";
#endif
  return "portable";
}

}  // namespace immich::align
