// 5-point similarity transform + fused bilinear warp/normalize. See immich/align.h.
#include "immich/align.h"

#include <cmath>

namespace immich::align {

const double kArcfaceTemplate[kLandmarks * 2] = {
    38.2946, 51.6963, 73.5318, 51.5014, 56.0252, 71.7366, 41.5493, 92.3655, 70.7299, 92.2041,
};

namespace {

constexpr int64_t kPlane = static_cast<int64_t>(kCropSize) * kCropSize;
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

// Bilinear sample of the 3 channels at (sx, sy), taps outside the image reading 0, rounded to the
// nearest integer as an 8-bit warp would store it.
inline void sample(const uint8_t* image, int64_t height, int64_t width, int64_t row_stride,
                   double sx, double sy, int* rgb) {
  const double fx0 = std::floor(sx);
  const double fy0 = std::floor(sy);
  // Far outside (this also catches coordinates too large for int64).
  if (!(fx0 >= -1.0 && fx0 < static_cast<double>(width) && fy0 >= -1.0 &&
        fy0 < static_cast<double>(height))) {
    rgb[0] = rgb[1] = rgb[2] = 0;
    return;
  }
  const int64_t x0 = static_cast<int64_t>(fx0);
  const int64_t y0 = static_cast<int64_t>(fy0);
  const float fx = static_cast<float>(sx - fx0);
  const float fy = static_cast<float>(sy - fy0);
  const bool inside = x0 >= 0 && y0 >= 0 && x0 + 1 < width && y0 + 1 < height;
  const uint8_t* row0 = image + y0 * row_stride + x0 * 3;
  const uint8_t* row1 = row0 + row_stride;
  const bool x0_in = x0 >= 0, x1_in = x0 + 1 < width;
  const bool y0_in = y0 >= 0, y1_in = y0 + 1 < height;
  for (int c = 0; c < 3; ++c) {
    float p00, p01, p10, p11;
    if (inside) {
      p00 = row0[c];
      p01 = row0[3 + c];
      p10 = row1[c];
      p11 = row1[3 + c];
    } else {
      p00 = (y0_in && x0_in) ? row0[c] : 0.0f;
      p01 = (y0_in && x1_in) ? row0[3 + c] : 0.0f;
      p10 = (y1_in && x0_in) ? row1[c] : 0.0f;
      p11 = (y1_in && x1_in) ? row1[3 + c] : 0.0f;
    }
    const float top = p00 + fx * (p01 - p00);
    const float bottom = p10 + fx * (p11 - p10);
    const float value = top + fy * (bottom - top);
    const int rounded = static_cast<int>(value + 0.5f);
    rgb[c] = rounded < 0 ? 0 : (rounded > 255 ? 255 : rounded);
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
                 const double* matrix, const float* lut, float* out) noexcept {
  double inv[6];
  if (!invert(matrix, inv)) {
    for (int64_t i = 0; i < 3 * kPlane; ++i) out[i] = lut[0];
    return;
  }
  for (int y = 0; y < kCropSize; ++y) {
    const double row_x = inv[1] * y + inv[2];
    const double row_y = inv[4] * y + inv[5];
    float* r = out + y * kCropSize;
    for (int x = 0; x < kCropSize; ++x) {
      int rgb[3];
      sample(image, height, width, row_stride, inv[0] * x + row_x, inv[3] * x + row_y, rgb);
      r[x] = lut[rgb[0]];
      r[kPlane + x] = lut[rgb[1]];
      r[2 * kPlane + x] = lut[rgb[2]];
    }
  }
}

void warp_interleaved(const uint8_t* image, int64_t height, int64_t width, int64_t row_stride,
                      const double* matrix, uint8_t* out) noexcept {
  double inv[6];
  if (!invert(matrix, inv)) {
    for (int64_t i = 0; i < 3 * kPlane; ++i) out[i] = 0;
    return;
  }
  for (int y = 0; y < kCropSize; ++y) {
    const double row_x = inv[1] * y + inv[2];
    const double row_y = inv[4] * y + inv[5];
    uint8_t* r = out + static_cast<int64_t>(y) * kCropSize * 3;
    for (int x = 0; x < kCropSize; ++x) {
      int rgb[3];
      sample(image, height, width, row_stride, inv[0] * x + row_x, inv[3] * x + row_y, rgb);
      r[3 * x] = static_cast<uint8_t>(rgb[0]);
      r[3 * x + 1] = static_cast<uint8_t>(rgb[1]);
      r[3 * x + 2] = static_cast<uint8_t>(rgb[2]);
    }
  }
}

void align_faces(const uint8_t* image, int64_t height, int64_t width, int64_t row_stride,
                 const float* landmarks, int64_t face_count, double mean, double std,
                 float* out_planar, uint8_t* out_interleaved) noexcept {
  float lut[256];
  for (int v = 0; v < 256; ++v) {
    lut[v] = static_cast<float>((v - mean) / std);
  }
  for (int64_t i = 0; i < face_count; ++i) {
    double matrix[6];
    similarity_transform(landmarks + i * kLandmarks * 2, matrix);
    if (out_planar != nullptr) {
      warp_planar(image, height, width, row_stride, matrix, lut, out_planar + i * 3 * kPlane);
    } else {
      warp_interleaved(image, height, width, row_stride, matrix, out_interleaved + i * 3 * kPlane);
    }
  }
}

}  // namespace immich::align
