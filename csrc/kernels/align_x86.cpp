// AVX2 face warp, picked at run time (align.cpp) when the CPU has AVX2: 8 crop pixels at a time.
// Bit-identical to the portable loop: the same float32 operations in the same order, lane for lane
// (see align_internal.h); groups of 8 that are not entirely inside the image go through the
// portable 4-pixel code. Compiled with target("avx2") per function, never for the whole file: the
// wheel must load on CPUs without AVX2.
//
// Measured on a 2-core AMD EPYC VM (benchmarks/bench_align.py): 8-byte scalar loads (both
// horizontal taps at once) beat vpgatherdd (4 gathers of 8) and vpgatherdq; prefetch addresses
// computed 28 at a time per row instead of per group cut the prefetch cost from ~15 % to ~1 %.
#include "align_internal.h"

#ifdef IMMICH_ALIGN_X86

#include <immintrin.h>

#include <cstring>

namespace immich::align::detail {
namespace {

#define IMMICH_AVX2 __attribute__((target("avx2"), always_inline)) inline

// Per-row constants of the 8-lane sampler.
struct Lanes {
  __m256 frac_x, frac_y, step_x, step_y;
  __m256i int_x, int_y, fast_w, fast_h, stride;
};

// Rounded samples of 8 crop pixels as floats (integers 0..255).
struct Pixels8 {
  __m256 r, g, b;
};

IMMICH_AVX2 __m256 lerp8(__m256 a, __m256 b, __m256 t) {
  return _mm256_add_ps(a, _mm256_mul_ps(t, _mm256_sub_ps(b, a)));
}

// Channel c of the left and right taps of 8 pixels, from two vectors of 4 eight-byte loads each
// holding pixels (0, 1 | 4, 5) and (2, 3 | 6, 7) per 128-bit half.
struct Taps {
  __m256 left, right;
};

IMMICH_AVX2 Taps taps(__m256i a, __m256i b, int c) {
  // Per 128-bit half: dwords = byte c of each load (left taps), then byte 3 + c (right taps).
  const __m256i pick = _mm256_setr_epi8(c, -1, -1, -1, 8 + c, -1, -1, -1, 3 + c, -1, -1, -1, 11 + c, -1, -1, -1,
                                        c, -1, -1, -1, 8 + c, -1, -1, -1, 3 + c, -1, -1, -1, 11 + c, -1, -1, -1);
  const __m256i sa = _mm256_shuffle_epi8(a, pick), sb = _mm256_shuffle_epi8(b, pick);
  return Taps{_mm256_cvtepi32_ps(_mm256_unpacklo_epi64(sa, sb)),
              _mm256_cvtepi32_ps(_mm256_unpackhi_epi64(sa, sb))};
}

// Channel c of 8 pixels: the bilinear value rounded half up (value + 0.5 >= 0, so floor is the
// truncation the portable loop applies), as a float.
IMMICH_AVX2 __m256 blend(__m256i a0, __m256i b0, __m256i a1, __m256i b1, int c, __m256 fx, __m256 fy) {
  const Taps top = taps(a0, b0, c), bottom = taps(a1, b1, c);
  const __m256 value = lerp8(lerp8(top.left, top.right, fx), lerp8(bottom.left, bottom.right, fx), fy);
  return _mm256_floor_ps(_mm256_add_ps(value, _mm256_set1_ps(0.5f)));
}

IMMICH_AVX2 long long load8(const uint8_t* p) {
  long long v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// Pixels i, j | k, l of a tap row: 8 bytes each (RGB of the left tap, RGB of the right, 2 spare).
IMMICH_AVX2 __m256i quad(const uint8_t* base, const int32_t* off, int i, int j, int k, int l) {
  const __m128i lo = _mm_insert_epi64(_mm_cvtsi64_si128(load8(base + off[i])), load8(base + off[j]), 1);
  const __m128i hi = _mm_insert_epi64(_mm_cvtsi64_si128(load8(base + off[k])), load8(base + off[l]), 1);
  return _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
}

// Crop pixels x .. x + 7 of a vector row. False (nothing sampled) unless all their taps are inside
// the image.
IMMICH_AVX2 bool sample8(const Image& im, const Lanes& k, int x, Pixels8* out) {
  const __m256 column =
      _mm256_add_ps(_mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_ps(static_cast<float>(x)));
  const __m256 rx = _mm256_add_ps(k.frac_x, _mm256_mul_ps(k.step_x, column));
  const __m256 ry = _mm256_add_ps(k.frac_y, _mm256_mul_ps(k.step_y, column));
  const __m256 floor_x = _mm256_floor_ps(rx), floor_y = _mm256_floor_ps(ry);
  const __m256i x0 = _mm256_add_epi32(_mm256_cvttps_epi32(floor_x), k.int_x);
  const __m256i y0 = _mm256_add_epi32(_mm256_cvttps_epi32(floor_y), k.int_y);
  const __m256i minus_one = _mm256_set1_epi32(-1);
  const __m256i inside = _mm256_and_si256(
      _mm256_and_si256(_mm256_cmpgt_epi32(x0, minus_one), _mm256_cmpgt_epi32(k.fast_w, x0)),
      _mm256_and_si256(_mm256_cmpgt_epi32(y0, minus_one), _mm256_cmpgt_epi32(k.fast_h, y0)));
  if (_mm256_movemask_ps(_mm256_castsi256_ps(inside)) != 0xFF) return false;
  const __m256 fx = _mm256_sub_ps(rx, floor_x), fy = _mm256_sub_ps(ry, floor_y);
  // avx2_fits: every offset (and offset + row_stride + 6) fits int32.
  const __m256i offset = _mm256_add_epi32(_mm256_mullo_epi32(y0, k.stride),
                                          _mm256_add_epi32(x0, _mm256_add_epi32(x0, x0)));
  // The pixel pairs (0, 1 | 4, 5) and (2, 3 | 6, 7) make taps() unpack them back in pixel order.
  alignas(32) int32_t off[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(off), offset);
  const uint8_t* r0 = im.data;
  const uint8_t* r1 = im.data + im.row_stride;
  const __m256i a0 = quad(r0, off, 0, 1, 4, 5), b0 = quad(r0, off, 2, 3, 6, 7);
  const __m256i a1 = quad(r1, off, 0, 1, 4, 5), b1 = quad(r1, off, 2, 3, 6, 7);
  out->r = blend(a0, b0, a1, b1, 0, fx, fy);
  out->g = blend(a0, b0, a1, b1, 1, fx, fy);
  out->b = blend(a0, b0, a1, b1, 2, fx, fy);
  return true;
}

IMMICH_AVX2 Lanes lanes(const Image& im, const Row& row, float step_x, float step_y) {
  return Lanes{_mm256_set1_ps(row.frac_x),         _mm256_set1_ps(row.frac_y),
               _mm256_set1_ps(step_x),             _mm256_set1_ps(step_y),
               _mm256_set1_epi32(row.int_x),       _mm256_set1_epi32(row.int_y),
               _mm256_set1_epi32(fast_width(im)),  _mm256_set1_epi32(fast_height(im)),
               _mm256_set1_epi32(static_cast<int32_t>(im.row_stride))};
}

struct PlanarStore8 {
  PlanarSink sink;
  IMMICH_AVX2 void store8(int64_t i, const Pixels8& p) const {
    const __m256 m = _mm256_set1_ps(sink.mean), s = _mm256_set1_ps(sink.scale);
    _mm256_storeu_ps(sink.out + i, _mm256_mul_ps(_mm256_sub_ps(p.r, m), s));
    _mm256_storeu_ps(sink.out + kPlane + i, _mm256_mul_ps(_mm256_sub_ps(p.g, m), s));
    _mm256_storeu_ps(sink.out + 2 * kPlane + i, _mm256_mul_ps(_mm256_sub_ps(p.b, m), s));
  }
};

struct InterleavedStore8 {
  InterleavedSink sink;
  IMMICH_AVX2 void store8(int64_t i, const Pixels8& p) const {
    const __m256i packed = _mm256_or_si256(
        _mm256_cvttps_epi32(p.r),
        _mm256_or_si256(_mm256_slli_epi32(_mm256_cvttps_epi32(p.g), 8),
                        _mm256_slli_epi32(_mm256_cvttps_epi32(p.b), 16)));
    // RGBx RGBx RGBx RGBx per 128-bit half -> 12 bytes RGBRGBRGBRGB.
    const __m256i squeeze = _mm256_setr_epi8(0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1,
                                             0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1);
    const __m256i rgb = _mm256_shuffle_epi8(packed, squeeze);
    const __m128i halves[2] = {_mm256_castsi256_si128(rgb), _mm256_extracti128_si256(rgb, 1)};
    uint8_t* dst = sink.out + 3 * i;
    // Exactly 24 bytes: the last group of a crop ends at the slot's end.
    for (int h = 0; h < 2; ++h) {
      _mm_storel_epi64(reinterpret_cast<__m128i*>(dst + 12 * h), halves[h]);
      const int32_t tail = _mm_cvtsi128_si32(_mm_srli_si128(halves[h], 8));
      std::memcpy(dst + 12 * h + 8, &tail, sizeof(tail));
    }
  }
};

// Prefetch points of a row: crop pixels 0, 4, 8, ... of the row kPrefetchRows ahead (the same
// points as the portable loop), computed in whole vectors of 8.
constexpr int kAheadPoints = kCropSize / 4;
constexpr int kAheadSlots = (kAheadPoints + 7) / 8 * 8;

// Byte offsets of the source pixel under each prefetch point, clamped into the image, and of the
// pixel below it (the second tap row; the last row again at the bottom). Float precision is
// plenty for choosing cache lines; avx2_fits keeps width and height exact in float32. A NaN
// coordinate (inf * 0 for a degenerate step) clamps to the far edge: vminps returns its second
// operand when the first is NaN.
__attribute__((target("avx2"))) void ahead_offsets(const Image& im, const double* inv, const Row& row,
                                                   int32_t (*out)[kAheadSlots]) {
  const __m256 start_x = _mm256_set1_ps(static_cast<float>(row.start_x + kPrefetchRows * inv[1]));
  const __m256 start_y = _mm256_set1_ps(static_cast<float>(row.start_y + kPrefetchRows * inv[4]));
  const __m256 step_x = _mm256_set1_ps(static_cast<float>(4 * inv[0]));
  const __m256 step_y = _mm256_set1_ps(static_cast<float>(4 * inv[3]));
  const __m256 max_x = _mm256_set1_ps(static_cast<float>(im.width - 1));
  const __m256 max_y = _mm256_set1_ps(static_cast<float>(im.height - 1));
  const __m256i last_y = _mm256_set1_epi32(static_cast<int32_t>(im.height - 1));
  const __m256i stride = _mm256_set1_epi32(static_cast<int32_t>(im.row_stride));
  for (int i = 0; i < kAheadSlots; i += 8) {
    const __m256 point = _mm256_add_ps(_mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_ps(static_cast<float>(i)));
    const __m256 sx = _mm256_add_ps(start_x, _mm256_mul_ps(step_x, point));
    const __m256 sy = _mm256_add_ps(start_y, _mm256_mul_ps(step_y, point));
    const __m256i x = _mm256_cvttps_epi32(_mm256_max_ps(_mm256_min_ps(sx, max_x), _mm256_setzero_ps()));
    const __m256i y = _mm256_cvttps_epi32(_mm256_max_ps(_mm256_min_ps(sy, max_y), _mm256_setzero_ps()));
    const __m256i below = _mm256_min_epi32(_mm256_add_epi32(y, _mm256_set1_epi32(1)), last_y);
    const __m256i column = _mm256_add_epi32(x, _mm256_add_epi32(x, x));
    const __m256i top = _mm256_add_epi32(_mm256_mullo_epi32(y, stride), column);
    const __m256i bottom = _mm256_add_epi32(_mm256_mullo_epi32(below, stride), column);
    _mm256_store_si256(reinterpret_cast<__m256i*>(out[0] + i), top);
    _mm256_store_si256(reinterpret_cast<__m256i*>(out[1] + i), bottom);
  }
}

template <typename Store>
__attribute__((target("avx2"))) void warp8(const Image& im, const double* inv, const Store& store) {
  static_assert(kCropSize % 8 == 0, "rows are whole groups of 8");
  const float step_x = static_cast<float>(inv[0]), step_y = static_cast<float>(inv[3]);
  prefetch_first_rows(im, inv);
  for (int y = 0; y < kCropSize; ++y) {
    const Row row = row_setup(im, inv, y);
    const int64_t first = int64_t{y} * kCropSize;
    if (row.black) {
      const Pixels8 zero{_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
      for (int x = 0; x < kCropSize; x += 8) store.store8(first + x, zero);
      continue;
    }
    const Lanes k = lanes(im, row, step_x, step_y);
    alignas(32) int32_t ahead[2][kAheadSlots];
    ahead_offsets(im, inv, row, ahead);
    for (int x = 0; x < kCropSize; x += 8) {
      for (int i = x / 4; i < x / 4 + 2; ++i) {
        prefetch_line(im.data + ahead[0][i]);
        prefetch_line(im.data + ahead[1][i]);
      }
      Pixels8 p;
      if (row.vector && sample8(im, k, x, &p)) {
        store.store8(first + x, p);
      } else {
        warp_group4(im, inv, row, step_x, step_y, y, x, store.sink);
        warp_group4(im, inv, row, step_x, step_y, y, x + 4, store.sink);
      }
    }
  }
}

}  // namespace

__attribute__((target("avx2"))) void warp_planar_avx2(const Image& im, const double* inv,
                                                      float mean, float scale, float* out) {
  warp8(im, inv, PlanarStore8{PlanarSink{out, mean, scale}});
}

__attribute__((target("avx2"))) void warp_interleaved_avx2(const Image& im, const double* inv,
                                                           uint8_t* out) {
  warp8(im, inv, InterleavedStore8{InterleavedSink{out}});
}

}  // namespace immich::align::detail

#endif  // IMMICH_ALIGN_X86
