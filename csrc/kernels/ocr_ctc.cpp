// CTC greedy decoding (RapidOCR's CTCLabelDecode): per step the first maximum and its probability;
// a step is kept when its class differs from the previous step's and is not the blank (class 0).
#include "immich/ocr.h"

namespace immich {
namespace ocr {

void ctc_greedy(const float* probs, int64_t n, int64_t t, int64_t c, int64_t stride_n,
                int64_t stride_t, int64_t stride_c, int32_t* labels, int32_t* lengths,
                float* mean_prob) noexcept {
  for (int64_t i = 0; i < n; ++i) {
    int32_t* row_labels = labels + i * t;
    int32_t kept = 0;
    double sum = 0.0;
    int64_t previous = -1;
    for (int64_t s = 0; s < t; ++s) {
      const float* step = probs + i * stride_n + s * stride_t;
      int64_t best = 0;
      float best_p = c > 0 ? step[0] : 0.0f;
      if (stride_c == 1) {
        for (int64_t k = 1; k < c; ++k) {
          if (step[k] > best_p) {
            best_p = step[k];
            best = k;
          }
        }
      } else {
        for (int64_t k = 1; k < c; ++k) {
          const float p = step[k * stride_c];
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
}

}  // namespace ocr
}  // namespace immich
