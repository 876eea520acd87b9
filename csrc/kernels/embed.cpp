// Row-wise L2 normalization. See immich/embed.h.
#include "immich/embed.h"

#include <cmath>

namespace immich::embed {

void l2_normalize_rows(const float* in, float* out, int64_t rows, int64_t cols) noexcept {
  constexpr int kLanes = 4;
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = in + r * cols;
    float* y = out + r * cols;
    // Independent partial sums let the compiler keep several additions in flight.
    double partial[kLanes] = {0.0, 0.0, 0.0, 0.0};
    int64_t i = 0;
    for (; i + kLanes <= cols; i += kLanes) {
      for (int l = 0; l < kLanes; ++l) {
        const double v = x[i + l];
        partial[l] += v * v;
      }
    }
    double sum = (partial[0] + partial[1]) + (partial[2] + partial[3]);
    for (; i < cols; ++i) sum += static_cast<double>(x[i]) * x[i];
    const double norm = std::sqrt(sum);
    if (norm == 0.0) {
      for (int64_t j = 0; j < cols; ++j) y[j] = 0.0f;
      continue;
    }
    // One division per row; the double product then rounds once to float, as the quotient would
    // (within double rounding, far below float's last bit).
    const double inverse = 1.0 / norm;
    for (int64_t j = 0; j < cols; ++j) y[j] = static_cast<float>(x[j] * inverse);
  }
}

}  // namespace immich::embed
