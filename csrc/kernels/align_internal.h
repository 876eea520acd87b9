// Pieces of the face warp shared by the portable loop (align.cpp) and the AVX2 loop
// (align_x86.cpp). Both produce bit-identical crops: every value goes through the same float32
// operations in the same order (no FMA contraction: the AVX2 functions are compiled for
// target("avx2") only, which has no FMA), the vector path only widening 4 lanes to 8.
#pragma once

#include <climits>
#include <cstdint>
#include <cstring>

#include "immich/align.h"

namespace immich::align::detail {

constexpr int64_t kPlane = static_cast<int64_t>(kCropSize) * kCropSize;

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

inline void prefetch_first_rows(const Image& im, const double* inv) {
  for (int y = 0; y < kPrefetchRows; ++y) {
    for (int x = 0; x < kCropSize; x += 4) {
      prefetch(im, inv[0] * x + inv[1] * y + inv[2], inv[3] * x + inv[4] * y + inv[5]);
    }
  }
}

// Integer part of a source coordinate beyond which a sample is 0 whatever the rounding of the
// coordinate: the vector coordinates are within ~1e-5 px of the double ones sample_one uses, so
// a one-pixel margin past its cut-off (floor < -1 or >= size) decides the same way.
constexpr double kOutsideMargin = 2.0;

// One crop row: source coordinates of crop pixel x are start + x * step (double, as sample_one
// takes them). The vector paths sample at (int + frac) + step * x in float32, offsets from the
// integer part of the row start, which keeps them within ~1e-5 px of the double computation.
struct Row {
  double start_x, start_y;
  bool vector;      // coordinates small enough for int32 integer parts
  bool black;       // every sample of the row reads only taps outside the image
  int32_t int_x, int_y;
  float frac_x, frac_y;
};

inline Row row_setup(const Image& im, const double* inv, int y) {
  constexpr double kVectorRange = 16777216.0;  // 2^24: integer parts fit int32 with room to spare
  constexpr double kSpanRange = 1048576.0;     // 2^20
  Row r;
  r.start_x = inv[1] * y + inv[2];
  r.start_y = inv[4] * y + inv[5];
  const double end_x = r.start_x + inv[0] * (kCropSize - 1);
  const double end_y = r.start_y + inv[3] * (kCropSize - 1);
  const double lo_x = r.start_x < end_x ? r.start_x : end_x, hi_x = r.start_x < end_x ? end_x : r.start_x;
  const double lo_y = r.start_y < end_y ? r.start_y : end_y, hi_y = r.start_y < end_y ? end_y : r.start_y;
  // The row is a segment: wholly past one side of the image (with margin) means all samples are 0.
  r.black = hi_x < -kOutsideMargin || lo_x >= static_cast<double>(im.width) + kOutsideMargin ||
            hi_y < -kOutsideMargin || lo_y >= static_cast<double>(im.height) + kOutsideMargin;
  // Spans under 2^20 px keep float32 offsets within 0.25 px of the double ones, which the
  // kOutsideMargin test relies on (a longer row would be a face over a million pixels wide).
  r.vector = lo_x > -kVectorRange && hi_x < kVectorRange && lo_y > -kVectorRange &&
             hi_y < kVectorRange && hi_x - lo_x < kSpanRange && hi_y - lo_y < kSpanRange;
  const double base_x = r.vector ? floor_small(r.start_x) : 0.0;
  const double base_y = r.vector ? floor_small(r.start_y) : 0.0;
  r.frac_x = static_cast<float>(r.start_x - base_x);
  r.frac_y = static_cast<float>(r.start_y - base_y);
  r.int_x = static_cast<int32_t>(base_x);
  r.int_y = static_cast<int32_t>(base_y);
  return r;
}

// Bounds of the vector paths: x0 < fast_w and y0 < fast_h keep every 4-byte tap load (RGB plus
// the next byte) inside the image.
inline int32_t fast_width(const Image& im) {
  return static_cast<int32_t>(im.width < 16777216 ? im.width - 2 : -1);
}
inline int32_t fast_height(const Image& im) {
  return static_cast<int32_t>(im.height < 16777216 ? im.height - 1 : -1);
}
// Integer parts past which a vector lane's sample is certainly 0 (see kOutsideMargin).
inline int32_t outside_x(const Image& im) {
  return im.width < 16777216 ? static_cast<int32_t>(im.width + kOutsideMargin) : INT32_MAX;
}
inline int32_t outside_y(const Image& im) {
  return im.height < 16777216 ? static_cast<int32_t>(im.height + kOutsideMargin) : INT32_MAX;
}

// Rounded RGB of 4 crop pixels.
struct Pixels4 {
  Int4 r, g, b;
};

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

// Crop pixels x .. x + 3 of a vector row. Returns 1 with `out` filled when all their taps are
// inside the image, -1 when all 4 samples are certainly 0 (all taps outside, with margin), else 0
// (the caller samples them one by one).
inline int sample4(const Image& im, const Row& row, float step_x, float step_y, int x, Pixels4* out) {
  const Float4 lane = {0.0f, 1.0f, 2.0f, 3.0f};
  const Int4 zero = {0, 0, 0, 0};
  const Float4 column = lane + static_cast<float>(x);
  const Float4 rx = row.frac_x + step_x * column, ry = row.frac_y + step_y * column;
  Int4 tx = __builtin_convertvector(rx, Int4), ty = __builtin_convertvector(ry, Int4);
  tx += __builtin_convertvector(tx, Float4) > rx;  // true lanes are -1: truncation -> floor
  ty += __builtin_convertvector(ty, Float4) > ry;
  const Int4 x0 = tx + row.int_x, y0 = ty + row.int_y;
  const Int4 inside = (x0 >= zero) & (x0 < fast_width(im)) & (y0 >= zero) & (y0 < fast_height(im));
  if (!((inside[0] & inside[1]) & (inside[2] & inside[3]))) {
    const int32_t margin = static_cast<int32_t>(kOutsideMargin);
    const Int4 outside = (x0 < -margin) | (x0 > outside_x(im)) | (y0 < -margin) | (y0 > outside_y(im));
    return ((outside[0] & outside[1]) & (outside[2] & outside[3])) ? -1 : 0;
  }
  const Float4 fx = rx - __builtin_convertvector(tx, Float4);
  const Float4 fy = ry - __builtin_convertvector(ty, Float4);
  int64_t offset[4];
  for (int l = 0; l < 4; ++l) offset[l] = y0[l] * im.row_stride + x0[l] * 3;
  const Channels p00 = load4(im.data, offset), p01 = load4(im.data + 3, offset);
  const Channels p10 = load4(im.data + im.row_stride, offset);
  const Channels p11 = load4(im.data + im.row_stride + 3, offset);
  out->r = round_pixels(lerp(lerp(p00.r, p01.r, fx), lerp(p10.r, p11.r, fx), fy));
  out->g = round_pixels(lerp(lerp(p00.g, p01.g, fx), lerp(p10.g, p11.g, fx), fy));
  out->b = round_pixels(lerp(lerp(p00.b, p01.b, fx), lerp(p10.b, p11.b, fx), fy));
  return 1;
}

// Crop pixels x .. x + 3 of a row that is not entirely on the vector path: the 4-lane vector
// sample where it applies, else one by one. Hands the results to the sink.
template <typename Sink>
inline void warp_group4(const Image& im, const double* inv, const Row& row, float step_x,
                        float step_y, int y, int x, const Sink& sink) {
  const int64_t index = static_cast<int64_t>(y) * kCropSize + x;
  if (row.vector) {
    Pixels4 p;
    const int found = sample4(im, row, step_x, step_y, x, &p);
    if (found != 0) {
      if (found < 0) {
        const Int4 zero = {0, 0, 0, 0};
        p = Pixels4{zero, zero, zero};
      }
      sink.store4(index, p.r, p.g, p.b);
      return;
    }
  }
  for (int l = 0; l < 4; ++l) {
    int32_t rgb[3];
    sample_one(im, row.start_x + inv[0] * (x + l), row.start_y + inv[3] * (x + l), rgb);
    sink.store1(index + l, rgb);
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

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define IMMICH_ALIGN_X86 1
// AVX2 warps (align_x86.cpp), bit-identical to the portable warp. Only for images whose byte
// offsets fit int32 (see avx2_fits).
void warp_planar_avx2(const Image& im, const double* inv, float mean, float scale, float* out);
void warp_interleaved_avx2(const Image& im, const double* inv, uint8_t* out);
inline bool avx2_fits(const Image& im) {
  return im.height < (int64_t{1} << 24) && im.width < (int64_t{1} << 24) && im.row_stride > 0 &&
         (im.height + 1) * im.row_stride < (int64_t{1} << 31) - 64;
}
#endif

}  // namespace immich::align::detail
