// AVX2 face warp, picked at run time (align.cpp) when the CPU has AVX2: 8 crop pixels at a time,
// the 4 taps of each fetched with vpgatherdd. Bit-identical to the portable loop: the same float32
// operations in the same order, lane for lane (see align_internal.h); groups of 8 that are not
// entirely inside the image go through the portable 4-pixel code.
#include "align_internal.h"

#ifdef IMMICH_ALIGN_X86

#include <immintrin.h>

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

IMMICH_AVX2 __m256 channel(__m256i words, int shift) {
  const __m256i byte = _mm256_set1_epi32(0xFF);
  return _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(words, shift), byte));
}

IMMICH_AVX2 __m256 lerp8(__m256 a, __m256 b, __m256 t) {
  return _mm256_add_ps(a, _mm256_mul_ps(t, _mm256_sub_ps(b, a)));
}

// The interpolated value of one channel, rounded half up (value + 0.5 >= 0, so floor is the
// truncation the portable loop applies).
IMMICH_AVX2 __m256 blend(__m256i p00, __m256i p01, __m256i p10, __m256i p11, int shift, __m256 fx,
                         __m256 fy) {
  const __m256 top = lerp8(channel(p00, shift), channel(p01, shift), fx);
  const __m256 bottom = lerp8(channel(p10, shift), channel(p11, shift), fx);
  return _mm256_floor_ps(_mm256_add_ps(lerp8(top, bottom, fy), _mm256_set1_ps(0.5f)));
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
  const int* row0 = reinterpret_cast<const int*>(im.data);
  const int* row0_next = reinterpret_cast<const int*>(im.data + 3);
  const int* row1 = reinterpret_cast<const int*>(im.data + im.row_stride);
  const int* row1_next = reinterpret_cast<const int*>(im.data + im.row_stride + 3);
  const __m256i p00 = _mm256_i32gather_epi32(row0, offset, 1);
  const __m256i p01 = _mm256_i32gather_epi32(row0_next, offset, 1);
  const __m256i p10 = _mm256_i32gather_epi32(row1, offset, 1);
  const __m256i p11 = _mm256_i32gather_epi32(row1_next, offset, 1);
  out->r = blend(p00, p01, p10, p11, 0, fx, fy);
  out->g = blend(p00, p01, p10, p11, 8, fx, fy);
  out->b = blend(p00, p01, p10, p11, 16, fx, fy);
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
    const double ahead_x = row.start_x + kPrefetchRows * inv[1];
    const double ahead_y = row.start_y + kPrefetchRows * inv[4];
    for (int x = 0; x < kCropSize; x += 8) {
      prefetch(im, ahead_x + inv[0] * x, ahead_y + inv[3] * x);
      prefetch(im, ahead_x + inv[0] * (x + 4), ahead_y + inv[3] * (x + 4));
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
