// Row-wise L2 normalization. See immich/embed.h.
#include "immich/embed.h"

#include <cmath>

namespace immich::embed {

namespace {

// Workers run ONNX Runtime with session.set_denormal_as_zero, which turns on flush-to-zero and
// denormals-are-zero for the calling thread, and that thread also post-processes the outputs.
// The embedding Immich stores must not depend on which thread computed it, so the kernel runs
// with IEEE subnormals and puts the caller's mode back afterwards. Reading the control register
// costs a few cycles; it is only written when a flush mode is on.
class IeeeSubnormals {
 public:
  IeeeSubnormals() noexcept : saved_(read()) {
    if ((saved_ & kFlushBits) != 0) write(saved_ & ~kFlushBits);
  }
  ~IeeeSubnormals() {
    if ((saved_ & kFlushBits) != 0) write(saved_);
  }
  IeeeSubnormals(const IeeeSubnormals&) = delete;
  IeeeSubnormals& operator=(const IeeeSubnormals&) = delete;

 private:
  // The "memory" clobbers keep the compiler from moving the normalization (a separate,
  // non-inlined call that writes memory) across the mode switches.
#if defined(__x86_64__) || defined(__i386__)
  using Word = unsigned int;
  static constexpr Word kFlushBits = (1u << 15) | (1u << 6);  // MXCSR FTZ | DAZ
  static Word read() noexcept {
    Word csr;
    asm volatile("stmxcsr %0" : "=m"(csr) : : "memory");
    return csr;
  }
  static void write(Word csr) noexcept { asm volatile("ldmxcsr %0" : : "m"(csr) : "memory"); }
#elif defined(__aarch64__)
  using Word = unsigned long;
  static constexpr Word kFlushBits = 1ul << 24;  // FPCR.FZ (flushes inputs and results)
  static Word read() noexcept {
    Word fpcr;
    asm volatile("mrs %0, fpcr" : "=r"(fpcr) : : "memory");
    return fpcr;
  }
  static void write(Word fpcr) noexcept { asm volatile("msr fpcr, %0" : : "r"(fpcr) : "memory"); }
#else
  using Word = unsigned int;
  static constexpr Word kFlushBits = 0;
  static Word read() noexcept { return 0; }
  static void write(Word) noexcept {}
#endif
  Word saved_;
};

__attribute__((noinline)) void normalize(const float* in, float* out, int64_t rows,
                                         int64_t cols) noexcept {
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

}  // namespace

void l2_normalize_rows(const float* in, float* out, int64_t rows, int64_t cols) noexcept {
  const IeeeSubnormals ieee;
  normalize(in, out, rows, cols);
}

}  // namespace immich::embed
