// AVX2 versions of the two inner loops, picked at run time when the CPU has AVX2. They compute
// exactly the same integer sums as the scalar code (same weights, same rounding), only faster.
#include "image_internal.h"

#ifdef IMMICH_IMAGE_X86

#include <immintrin.h>

#include <cstring>

namespace immich {
namespace image {
namespace detail {
namespace {

// The 22-bit weights do not fit the 16-bit multiplier of vpmaddwd, so each weight is split as
// k = hi * 2^11 + lo with lo in [0, 2048): both halves fit int16, and two vpmaddwd plus a shift
// give the exact 32-bit product sum.
constexpr int kLoBits = 11;
constexpr int32_t kLoMask = (1 << kLoBits) - 1;

// Per output pixel and pair of taps: 8 int16 "hi" then 8 int16 "lo", each as
// [k0, k1, k0, k1, k0, k1, 0, 0], lined up with the shuffled pixels below.
constexpr int64_t kPairInt16 = 16;

}  // namespace

void prepare_horizontal_avx2(AxisWeights* w) {
  const int64_t n = static_cast<int64_t>(w->start.size());
  const int64_t pairs = w->stride / 2;
  w->packed.assign(static_cast<size_t>(n * pairs * kPairInt16), 0);
  for (int64_t i = 0; i < n; ++i) {
    const int32_t* k = w->coeffs.data() + i * w->stride;
    for (int64_t q = 0; q < pairs; ++q) {
      int16_t* hi = w->packed.data() + (i * pairs + q) * kPairInt16;
      int16_t* lo = hi + 8;
      for (int c = 0; c < 3; ++c) {
        for (int t = 0; t < 2; ++t) {
          hi[2 * c + t] = static_cast<int16_t>(k[2 * q + t] >> kLoBits);
          lo[2 * c + t] = static_cast<int16_t>(k[2 * q + t] & kLoMask);
        }
      }
    }
  }
}

// Four rows at once: each 256-bit register holds the same two taps of two rows (one per 128-bit
// lane), so each weight register is loaded once for four rows.
__attribute__((target("avx2"))) void horizontal_rows_avx2(const uint8_t* const* src_rows,
                                                         int64_t src_width, const AxisWeights& w,
                                                         uint8_t* const* out_rows) {
  static_assert(kRowBlock == 4, "the AVX2 horizontal pass is written for 4 rows");
  // Widens the first two pixels of a lane to int16 as [R0, R1, G0, G1, B0, B1, 0, 0].
  const __m256i shuffle = _mm256_setr_epi8(0, -1, 3, -1, 1, -1, 4, -1, 2, -1, 5, -1, -1, -1, -1, -1,
                                           0, -1, 3, -1, 1, -1, 4, -1, 2, -1, 5, -1, -1, -1, -1, -1);
  const __m256i half = _mm256_set1_epi32(kHalf);
  const int64_t n = static_cast<int64_t>(w.start.size());
  const int64_t pairs = w.stride / 2;
  const int64_t row_bytes = src_width * 3;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t start = w.start[static_cast<size_t>(i)];
    const int32_t count = w.count[static_cast<size_t>(i)];
    const int64_t npairs = (count + 1) / 2;
    // Every 16-byte load must stay inside its row; pixels at the right edge go scalar.
    if (count <= 0 || (start + 2 * (npairs - 1)) * 3 + 16 > row_bytes) {
      for (int r = 0; r < kRowBlock; ++r) horizontal_pixel(src_rows[r], w, i, out_rows[r] + 3 * i);
      continue;
    }
    const uint8_t* p0 = src_rows[0] + start * 3;
    const uint8_t* p1 = src_rows[1] + start * 3;
    const uint8_t* p2 = src_rows[2] + start * 3;
    const uint8_t* p3 = src_rows[3] + start * 3;
    const int16_t* k = w.packed.data() + i * pairs * kPairInt16;
    __m256i hi01 = _mm256_setzero_si256(), lo01 = _mm256_setzero_si256();
    __m256i hi23 = _mm256_setzero_si256(), lo23 = _mm256_setzero_si256();
    for (int64_t q = 0; q < npairs; ++q) {
      const __m256i khi = _mm256_broadcastsi128_si256(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(k + q * kPairInt16)));
      const __m256i klo = _mm256_broadcastsi128_si256(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(k + q * kPairInt16 + 8)));
      const int64_t off = 6 * q;
      const __m256i v01 = _mm256_shuffle_epi8(
          _mm256_inserti128_si256(
              _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p0 + off))),
              _mm_loadu_si128(reinterpret_cast<const __m128i*>(p1 + off)), 1),
          shuffle);
      const __m256i v23 = _mm256_shuffle_epi8(
          _mm256_inserti128_si256(
              _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p2 + off))),
              _mm_loadu_si128(reinterpret_cast<const __m128i*>(p3 + off)), 1),
          shuffle);
      hi01 = _mm256_add_epi32(hi01, _mm256_madd_epi16(v01, khi));
      lo01 = _mm256_add_epi32(lo01, _mm256_madd_epi16(v01, klo));
      hi23 = _mm256_add_epi32(hi23, _mm256_madd_epi16(v23, khi));
      lo23 = _mm256_add_epi32(lo23, _mm256_madd_epi16(v23, klo));
    }
    const __m256i s01 = _mm256_srai_epi32(
        _mm256_add_epi32(_mm256_add_epi32(_mm256_slli_epi32(hi01, kLoBits), lo01), half), kPrecisionBits);
    const __m256i s23 = _mm256_srai_epi32(
        _mm256_add_epi32(_mm256_add_epi32(_mm256_slli_epi32(hi23, kLoBits), lo23), half), kPrecisionBits);
    // Saturating packs clamp to 0..255 like clip8. Lane 0 then starts with row 0's RGBx and
    // row 2's RGBx, lane 1 with rows 1 and 3.
    const __m256i px = _mm256_packus_epi16(_mm256_packs_epi32(s01, s23), _mm256_setzero_si256());
    const __m128i rows02 = _mm256_castsi256_si128(px);
    const __m128i rows13 = _mm256_extracti128_si256(px, 1);
    const uint32_t rgbx[kRowBlock] = {
        static_cast<uint32_t>(_mm_cvtsi128_si32(rows02)), static_cast<uint32_t>(_mm_cvtsi128_si32(rows13)),
        static_cast<uint32_t>(_mm_extract_epi32(rows02, 1)), static_cast<uint32_t>(_mm_extract_epi32(rows13, 1))};
    if (i + 1 < n) {
      // One 4-byte store per row; its spare byte is overwritten by the next pixel.
      for (int r = 0; r < kRowBlock; ++r) std::memcpy(out_rows[r] + 3 * i, &rgbx[r], 4);
    } else {
      for (int r = 0; r < kRowBlock; ++r) std::memcpy(out_rows[r] + 3 * i, &rgbx[r], 3);
    }
  }
}

__attribute__((target("avx2"))) void vertical_row_avx2(const uint8_t* first_row, int64_t stride,
                                                      const int32_t* k, int32_t count, int64_t n,
                                                      uint8_t* out) {
  const __m256i half = _mm256_set1_epi32(kHalf);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  int64_t j = 0;
  // 32 columns at a time in four int32 accumulators that stay in registers across all taps.
  for (; j + 32 <= n; j += 32) {
    __m256i a0 = half, a1 = half, a2 = half, a3 = half;
    const uint8_t* row = first_row + j;
    for (int32_t t = 0; t < count; ++t, row += stride) {
      const __m256i kv = _mm256_set1_epi32(k[t]);
      const __m256i p0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(row)));
      const __m256i p1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + 8)));
      const __m256i p2 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + 16)));
      const __m256i p3 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + 24)));
      a0 = _mm256_add_epi32(a0, _mm256_mullo_epi32(p0, kv));
      a1 = _mm256_add_epi32(a1, _mm256_mullo_epi32(p1, kv));
      a2 = _mm256_add_epi32(a2, _mm256_mullo_epi32(p2, kv));
      a3 = _mm256_add_epi32(a3, _mm256_mullo_epi32(p3, kv));
    }
    a0 = _mm256_srai_epi32(a0, kPrecisionBits);
    a1 = _mm256_srai_epi32(a1, kPrecisionBits);
    a2 = _mm256_srai_epi32(a2, kPrecisionBits);
    a3 = _mm256_srai_epi32(a3, kPrecisionBits);
    // Saturating packs clamp to 0..255 exactly like clip8; the permute undoes their lane order.
    const __m256i bytes = _mm256_packus_epi16(_mm256_packs_epi32(a0, a1), _mm256_packs_epi32(a2, a3));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + j), _mm256_permutevar8x32_epi32(bytes, order));
  }
  if (j < n) vertical_row_scalar(first_row + j, stride, k, count, n - j, out + j);
}

__attribute__((target("avx2"))) void planar_row_avx2(const uint8_t* rgb, int64_t n,
                                                    const float* gain, const float* bias, float* r,
                                                    float* g, float* b) {
  // 48 bytes = 16 RGB pixels; three byte shuffles per channel gather its 16 samples.
  const __m128i pick[3][3] = {
      {_mm_setr_epi8(0, 3, 6, 9, 12, 15, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1),
       _mm_setr_epi8(-1, -1, -1, -1, -1, -1, 2, 5, 8, 11, 14, -1, -1, -1, -1, -1),
       _mm_setr_epi8(-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 1, 4, 7, 10, 13)},
      {_mm_setr_epi8(1, 4, 7, 10, 13, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1),
       _mm_setr_epi8(-1, -1, -1, -1, -1, 0, 3, 6, 9, 12, 15, -1, -1, -1, -1, -1),
       _mm_setr_epi8(-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 2, 5, 8, 11, 14)},
      {_mm_setr_epi8(2, 5, 8, 11, 14, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1),
       _mm_setr_epi8(-1, -1, -1, -1, -1, 1, 4, 7, 10, 13, -1, -1, -1, -1, -1, -1),
       _mm_setr_epi8(-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 3, 6, 9, 12, 15)}};
  float* planes[3] = {r, g, b};
  int64_t x = 0;
  for (; x + 16 <= n; x += 16) {
    const uint8_t* p = rgb + 3 * x;
    const __m128i v0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i v1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16));
    const __m128i v2 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 32));
    for (int c = 0; c < 3; ++c) {
      const __m128i bytes = _mm_or_si128(
          _mm_or_si128(_mm_shuffle_epi8(v0, pick[c][0]), _mm_shuffle_epi8(v1, pick[c][1])),
          _mm_shuffle_epi8(v2, pick[c][2]));
      const __m256 k = _mm256_set1_ps(gain[c]);
      const __m256 d = _mm256_set1_ps(bias[c]);
      const __m256 lo = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bytes));
      const __m256 hi = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(bytes, 8)));
      _mm256_storeu_ps(planes[c] + x, _mm256_add_ps(_mm256_mul_ps(lo, k), d));
      _mm256_storeu_ps(planes[c] + x + 8, _mm256_add_ps(_mm256_mul_ps(hi, k), d));
    }
  }
  if (x < n) planar_row_scalar(rgb + 3 * x, n - x, gain, bias, r + x, g + x, b + x);
}

}  // namespace detail
}  // namespace image
}  // namespace immich

#endif  // IMMICH_IMAGE_X86
