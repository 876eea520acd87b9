// CTC greedy decoding (RapidOCR's CTCLabelDecode): per step the first maximum and its probability;
// a step is kept when its class differs from the previous step's and is not the blank (class 0).
#include <algorithm>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "immich/ocr.h"

namespace immich {
namespace ocr {

namespace {

constexpr int64_t kBlock = 64;

// Largest of v[0 .. n), n > 0. *poison accumulates v * 0, which stays 0 unless a value is NaN or
// infinite: the caller rejects such input without a separate pass over it.
inline float block_max(const float* v, int64_t n, float* poison) noexcept {
#if defined(__SSE2__)
  if (n == kBlock) {
    const __m128 zero = _mm_setzero_ps();
    __m128 a = _mm_loadu_ps(v), b = _mm_loadu_ps(v + 4), c = _mm_loadu_ps(v + 8), d = _mm_loadu_ps(v + 12);
    __m128 z = _mm_add_ps(_mm_add_ps(_mm_mul_ps(a, zero), _mm_mul_ps(b, zero)),
                          _mm_add_ps(_mm_mul_ps(c, zero), _mm_mul_ps(d, zero)));
    for (int64_t k = 16; k < kBlock; k += 16) {
      const __m128 va = _mm_loadu_ps(v + k), vb = _mm_loadu_ps(v + k + 4);
      const __m128 vc = _mm_loadu_ps(v + k + 8), vd = _mm_loadu_ps(v + k + 12);
      a = _mm_max_ps(a, va);
      b = _mm_max_ps(b, vb);
      c = _mm_max_ps(c, vc);
      d = _mm_max_ps(d, vd);
      z = _mm_add_ps(z, _mm_add_ps(_mm_add_ps(_mm_mul_ps(va, zero), _mm_mul_ps(vb, zero)),
                                   _mm_add_ps(_mm_mul_ps(vc, zero), _mm_mul_ps(vd, zero))));
    }
    float lanes[4], zl[4];
    _mm_storeu_ps(lanes, _mm_max_ps(_mm_max_ps(a, b), _mm_max_ps(c, d)));
    _mm_storeu_ps(zl, z);
    *poison += (zl[0] + zl[1]) + (zl[2] + zl[3]);
    return std::max(std::max(lanes[0], lanes[1]), std::max(lanes[2], lanes[3]));
  }
#endif
  float m = v[0];
  float z = 0.0f;
  for (int64_t k = 0; k < n; ++k) {
    m = v[k] > m ? v[k] : m;
    z += v[k] * 0.0f;
  }
  *poison += z;
  return m;
}

// numpy's argmax of a contiguous row: the first index of the maximum. Blocks whose maximum does not
// beat the best so far are skipped after one vector pass.
inline int64_t contiguous_argmax(const float* v, int64_t n, float* best_value, float* poison) noexcept {
  int64_t best = 0;
  float best_p = v[0];
  for (int64_t k = 0; k < n; k += kBlock) {
    const int64_t len = std::min(kBlock, n - k);
    const float m = block_max(v + k, len, poison);
    if (m > best_p || k == 0) {
      int64_t j = 0;
      while (j < len && v[k + j] != m) ++j;  // bounded: a NaN equals nothing
      if (j == len) j = 0;
      if (k == 0 || m > best_p) {
        best = k + j;
        best_p = m;
      }
    }
  }
  *best_value = best_p;
  return best;
}

}  // namespace

bool ctc_greedy(const float* probs, int64_t n, int64_t t, int64_t c, int64_t stride_n,
                int64_t stride_t, int64_t stride_c, int32_t* labels, int32_t* lengths,
                float* mean_prob) noexcept {
  float poison = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    int32_t* row_labels = labels + i * t;
    int32_t kept = 0;
    double sum = 0.0;
    int64_t previous = -1;
    for (int64_t s = 0; s < t; ++s) {
      const float* step = probs + i * stride_n + s * stride_t;
      int64_t best = 0;
      float best_p = 0.0f;
      if (stride_c == 1) {
        best = contiguous_argmax(step, c, &best_p, &poison);
      } else {
        best_p = step[0];
        for (int64_t k = 0; k < c; ++k) {
          const float p = step[k * stride_c];
          poison += p * 0.0f;
          if (p > best_p) {
            best_p = p;
            best = k;
          }
        }
      }
      if (best != previous && best != 0) {
        row_labels[kept++] = static_cast<int32_t>(best);
        sum += static_cast<double>(best_p);
      }
      previous = best;
    }
    lengths[i] = kept;
    mean_prob[i] = kept > 0 ? static_cast<float>(sum / kept) : 0.0f;
  }
  return poison == 0.0f;
}

}  // namespace ocr
}  // namespace immich
