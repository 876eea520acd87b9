// 5-point similarity transform + fused bilinear warp/normalize. See immich/align.h.
#include "immich/align.h"

#include <cmath>
#include <cstring>

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

// GCC/Clang vector extensions: SSE2 on x86-64, NEON on arm64.
typedef float Float4 __attribute__((vector_size(16)));
typedef int32_t Int4 __attribute__((vector_size(16)));

struct Image {
  const uint8_t* data;
  int64_t height;
  int64_t width;
  int64_t row_stride;
};

// floor() without a libm call (x86-64's baseline has no rounding instruction); |v| < 2^62.
inline double floor_small(double v) {
  const double t = static_cast<double>(static_cast<int64_t>(v));
  return t > v ? t - 1.0 : t;
}

inline Float4 lerp(Float4 a, Float4 b, Float4 t) { return a + t * (b - a); }

// value lies in [0, 255] up to a few ulps (a convex combination of bytes), so truncating
// value + 0.5 rounds half up and lands in [0, 255] without clamping.
inline Int4 round_pixels(Float4 value) {
  const Float4 half = {0.5f, 0.5f, 0.5f, 0.5f};
  return __builtin_convertvector(value + half, Int4);
}

// Scalar bilinear sample at (sx, sy) for pixels near or beyond the border: taps outside the image
// read 0. Writes the rounded R, G, B.
inline void sample_one(const Image& im, double sx, double sy, int32_t* rgb) {
  // floor(s) in [-1, size - 1]; written on s itself so NaN and huge values fail too.
  if (!(sx >= -1.0 && sx < static_cast<double>(im.width) && sy >= -1.0 &&
        sy < static_cast<double>(im.height))) {
    rgb[0] = rgb[1] = rgb[2] = 0;
    return;
  }
  const double x0f = floor_small(sx), y0f = floor_small(sy);
  const int64_t x0 = static_cast<int64_t>(x0f), y0 = static_cast<int64_t>(y0f);
  const float fx = static_cast<float>(sx - x0f), fy = static_cast<float>(sy - y0f);
  const bool x0_in = x0 >= 0, x1_in = x0 + 1 < im.width;
  const bool y0_in = y0 >= 0, y1_in = y0 + 1 < im.height;
  const uint8_t* row0 = im.data + y0 * im.row_stride + x0 * 3;
  const uint8_t* row1 = row0 + im.row_stride;
  for (int c = 0; c < 3; ++c) {
    const float p00 = (y0_in && x0_in) ? row0[c] : 0.0f;
    const float p01 = (y0_in && x1_in) ? row0[3 + c] : 0.0f;
    const float p10 = (y1_in && x0_in) ? row1[c] : 0.0f;
    const float p11 = (y1_in && x1_in) ? row1[3 + c] : 0.0f;
    const float top = p00 + fx * (p01 - p00);
    const float bottom = p10 + fx * (p11 - p10);
    rgb[c] = static_cast<int32_t>((top + fy * (bottom - top)) + 0.5f);
  }
}

// The RGB of 4 pixels at byte offsets `offset` from `base`, as channel vectors. Each load reads
// 4 bytes (RGB + the next byte), which the caller guarantees lie inside the image.
struct Channels {
  Float4 r, g, b;
};

inline Channels load4(const uint8_t* base, const int64_t* offset) {
  uint32_t w[4];
  for (int l = 0; l < 4; ++l) std::memcpy(&w[l], base + offset[l], sizeof(uint32_t));
  const Int4 words = {static_cast<int32_t>(w[0]), static_cast<int32_t>(w[1]),
                      static_cast<int32_t>(w[2]), static_cast<int32_t>(w[3])};
  const Int4 byte = {0xFF, 0xFF, 0xFF, 0xFF};
  return Channels{__builtin_convertvector(words & byte, Float4),
                  __builtin_convertvector((words >> 8) & byte, Float4),
                  __builtin_convertvector((words >> 16) & byte, Float4)};
}

// Crop rows ahead of the one being sampled whose source taps are requested early: a face's source
// region is usually cold (a photo is far larger than the caches, each face touches a new part),
// and the walk across it is slanted, which hardware prefetchers do not follow. Measured: 2x.
constexpr int kPrefetchRows = 4;

// A prefetch the compiler cannot drop: GCC 12 was seen deleting __builtin_prefetch here (the
// address comes from a float-to-int conversion) depending on inlining and -O level.
inline void prefetch_line(const uint8_t* p) {
#if defined(__x86_64__) || defined(__i386__)
  asm volatile("prefetcht0 (%0)" : : "r"(p));
#elif defined(__aarch64__)
  asm volatile("prfm pldl1keep, [%0]" : : "r"(p));
#else
  __builtin_prefetch(p);
#endif
}

// Requests the cache lines under the taps of the source point (sx, sy), clamped into the image.
inline void prefetch(const Image& im, double sx, double sy) {
  const double max_x = static_cast<double>(im.width - 1), max_y = static_cast<double>(im.height - 1);
  const double x = sx > 0.0 ? (sx < max_x ? sx : max_x) : 0.0;
  const double y = sy > 0.0 ? (sy < max_y ? sy : max_y) : 0.0;
  const uint8_t* tap =
      im.data + static_cast<int64_t>(y) * im.row_stride + static_cast<int64_t>(x) * 3;
  prefetch_line(tap);
  prefetch_line(tap + (y < max_y ? im.row_stride : 0));
}

// Runs every crop pixel through the sampler and hands the rounded RGB to the sink, 4 pixels of a
// row at a time (sink.store4) where all their taps are inside the image, else one by one
// (sink.store1). Coordinates of the vector path are float offsets from the row start's integer
// part, which keeps them within ~1e-5 px of the double computation.
template <typename Sink>
void warp(const Image& im, const double* inv, Sink& sink) {
  constexpr double kVectorRange = 16777216.0;  // 2^24: integer parts fit int32 with room to spare
  const Float4 lane = {0.0f, 1.0f, 2.0f, 3.0f};
  const float step_x = static_cast<float>(inv[0]), step_y = static_cast<float>(inv[3]);
  const Int4 zero = {0, 0, 0, 0};
  const int32_t fast_w = static_cast<int32_t>(im.width < kVectorRange ? im.width - 2 : -1);
  const int32_t fast_h = static_cast<int32_t>(im.height < kVectorRange ? im.height - 1 : -1);
  for (int y = 0; y < kPrefetchRows; ++y) {
    for (int x = 0; x < kCropSize; x += 4) {
      prefetch(im, inv[0] * x + inv[1] * y + inv[2], inv[3] * x + inv[4] * y + inv[5]);
    }
  }
  for (int y = 0; y < kCropSize; ++y) {
    const double start_x = inv[1] * y + inv[2], start_y = inv[4] * y + inv[5];
    const double end_x = start_x + inv[0] * (kCropSize - 1);
    const double end_y = start_y + inv[3] * (kCropSize - 1);
    const bool vector_row = std::fabs(start_x) < kVectorRange && std::fabs(end_x) < kVectorRange &&
                            std::fabs(start_y) < kVectorRange && std::fabs(end_y) < kVectorRange;
    const double base_x = vector_row ? floor_small(start_x) : 0.0;
    const double base_y = vector_row ? floor_small(start_y) : 0.0;
    const float frac_x = static_cast<float>(start_x - base_x);
    const float frac_y = static_cast<float>(start_y - base_y);
    const int32_t int_x = static_cast<int32_t>(base_x), int_y = static_cast<int32_t>(base_y);
    const double ahead_x = start_x + kPrefetchRows * inv[1];
    const double ahead_y = start_y + kPrefetchRows * inv[4];
    for (int x = 0; x < kCropSize; x += 4) {
      const int64_t index = static_cast<int64_t>(y) * kCropSize + x;
      prefetch(im, ahead_x + inv[0] * x, ahead_y + inv[3] * x);
      if (vector_row) {
        const Float4 column = lane + static_cast<float>(x);
        const Float4 rx = frac_x + step_x * column, ry = frac_y + step_y * column;
        Int4 tx = __builtin_convertvector(rx, Int4), ty = __builtin_convertvector(ry, Int4);
        tx += __builtin_convertvector(tx, Float4) > rx;  // true lanes are -1: truncation -> floor
        ty += __builtin_convertvector(ty, Float4) > ry;
        const Float4 fx = rx - __builtin_convertvector(tx, Float4);
        const Float4 fy = ry - __builtin_convertvector(ty, Float4);
        const Int4 x0 = tx + int_x, y0 = ty + int_y;
        const Int4 inside = (x0 >= zero) & (x0 < fast_w) & (y0 >= zero) & (y0 < fast_h);
        if ((inside[0] & inside[1]) & (inside[2] & inside[3])) {
          int64_t offset[4];
          for (int l = 0; l < 4; ++l) offset[l] = y0[l] * im.row_stride + x0[l] * 3;
          const Channels p00 = load4(im.data, offset), p01 = load4(im.data + 3, offset);
          const Channels p10 = load4(im.data + im.row_stride, offset);
          const Channels p11 = load4(im.data + im.row_stride + 3, offset);
          sink.store4(index, round_pixels(lerp(lerp(p00.r, p01.r, fx), lerp(p10.r, p11.r, fx), fy)),
                      round_pixels(lerp(lerp(p00.g, p01.g, fx), lerp(p10.g, p11.g, fx), fy)),
                      round_pixels(lerp(lerp(p00.b, p01.b, fx), lerp(p10.b, p11.b, fx), fy)));
          continue;
        }
      }
      for (int l = 0; l < 4; ++l) {
        int32_t rgb[3];
        sample_one(im, start_x + inv[0] * (x + l), start_y + inv[3] * (x + l), rgb);
        sink.store1(index + l, rgb);
      }
    }
  }
}

// NCHW float32 crop, one plane per channel: (pixel - mean) * scale in float32 arithmetic.
struct PlanarSink {
  float* out;
  float mean;
  float scale;
  void store4(int64_t i, Int4 r, Int4 g, Int4 b) const {
    const Float4 m = {mean, mean, mean, mean}, s = {scale, scale, scale, scale};
    const Float4 planes[3] = {(__builtin_convertvector(r, Float4) - m) * s,
                              (__builtin_convertvector(g, Float4) - m) * s,
                              (__builtin_convertvector(b, Float4) - m) * s};
    for (int c = 0; c < 3; ++c) std::memcpy(out + c * kPlane + i, &planes[c], sizeof(Float4));
  }
  void store1(int64_t i, const int32_t* rgb) const {
    for (int c = 0; c < 3; ++c) out[c * kPlane + i] = (static_cast<float>(rgb[c]) - mean) * scale;
  }
};

// NHWC uint8 crop.
struct InterleavedSink {
  uint8_t* out;
  void store4(int64_t i, Int4 r, Int4 g, Int4 b) const {
    const Int4 packed = r | (g << 8) | (b << 16);
    // 4-byte stores; each one's spare byte is overwritten by the next pixel's red.
    for (int l = 0; l < 3; ++l) std::memcpy(out + 3 * (i + l), &packed[l], 4);
    const int32_t last = packed[3];
    std::memcpy(out + 3 * (i + 3), &last, 3);
  }
  void store1(int64_t i, const int32_t* rgb) const {
    for (int c = 0; c < 3; ++c) out[3 * i + c] = static_cast<uint8_t>(rgb[c]);
  }
};

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
  PlanarSink sink{out, mean, scale};
  warp(Image{image, height, width, row_stride}, inv, sink);
}

void warp_interleaved(const uint8_t* image, int64_t height, int64_t width, int64_t row_stride,
                      const double* matrix, uint8_t* out) noexcept {
  double inv[6];
  if (!invert(matrix, inv)) {
    std::memset(out, 0, 3 * kPlane);
    return;
  }
  InterleavedSink sink{out};
  warp(Image{image, height, width, row_stride}, inv, sink);
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

}  // namespace immich::align
