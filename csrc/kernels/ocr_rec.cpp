// Recognizer input: RapidOCR's get_rotate_crop_image (cv2.getPerspectiveTransform +
// cv2.warpPerspective(INTER_CUBIC, BORDER_REPLICATE) + np.rot90) and resize_norm_img (cv2.resize
// INTER_LINEAR to the model height, (v / 255 - 0.5) / 0.5, zero right padding), straight into a
// batch slot. The warp reproduces OpenCV's 8-bit fixed point: source positions rounded to 1/32
// pixel, 15-bit bicubic weights from its table; the resize uses its 11-bit weights.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>
#include <vector>

#include "immich/ocr.h"

#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace immich {
namespace ocr {

namespace {

constexpr int kTabBits = 5;
constexpr int kTab = 1 << kTabBits;  // INTER_TAB_SIZE
constexpr int kCoefScale = 1 << 15;  // INTER_REMAP_COEF_SCALE
constexpr int kResizeBits = 11;      // INTER_RESIZE_COEF_BITS

// OpenCV's bicubic weights (A = -0.75) for the 32 x 32 sub-pixel positions, as 4x4 integer
// kernels whose sum is forced to exactly 1 << 15 the way initInterTab2D does.
struct CubicTable {
  int16_t w[kTab * kTab][16];
  CubicTable() noexcept {
    float t1[kTab][4];
    for (int i = 0; i < kTab; ++i) {
      const float x = static_cast<float>(i) * (1.f / kTab);
      const float A = -0.75f;
      t1[i][0] = ((A * (x + 1) - 5 * A) * (x + 1) + 8 * A) * (x + 1) - 4 * A;
      t1[i][1] = ((A + 2) * x - (A + 3)) * x * x + 1;
      t1[i][2] = ((A + 2) * (1 - x) - (A + 3)) * (1 - x) * (1 - x) + 1;
      t1[i][3] = 1.f - t1[i][0] - t1[i][1] - t1[i][2];
    }
    for (int i = 0; i < kTab; ++i) {
      for (int j = 0; j < kTab; ++j) {
        int16_t* it = w[i * kTab + j];
        int sum = 0;
        for (int k1 = 0; k1 < 4; ++k1) {
          for (int k2 = 0; k2 < 4; ++k2) {
            const float v = t1[i][k1] * t1[j][k2];
            const int q = static_cast<int>(std::lrint(static_cast<double>(v) * kCoefScale));
            it[k1 * 4 + k2] = static_cast<int16_t>(std::min(32767, std::max(-32768, q)));
            sum += it[k1 * 4 + k2];
          }
        }
        if (sum != kCoefScale) {
          const int diff = sum - kCoefScale;
          int mk1 = 2, mk2 = 2, Mk1 = 2, Mk2 = 2;
          for (int k1 = 2; k1 < 4; ++k1) {
            for (int k2 = 2; k2 < 4; ++k2) {
              if (it[k1 * 4 + k2] < it[mk1 * 4 + mk2]) {
                mk1 = k1, mk2 = k2;
              } else if (it[k1 * 4 + k2] > it[Mk1 * 4 + Mk2]) {
                Mk1 = k1, Mk2 = k2;
              }
            }
          }
          if (diff < 0) {
            it[Mk1 * 4 + Mk2] = static_cast<int16_t>(it[Mk1 * 4 + Mk2] - diff);
          } else {
            it[mk1 * 4 + mk2] = static_cast<int16_t>(it[mk1 * 4 + mk2] - diff);
          }
        }
      }
    }
  }
};

const CubicTable& cubic_table() noexcept {
  static const CubicTable table;  // thread-safe initialisation (C++11 magic statics)
  return table;
}

// Solves the 8x8 system of cv2.getPerspectiveTransform(src -> dst) by Gaussian elimination with
// partial pivoting in double; m receives the 3x3 matrix (m[8] = 1). False if singular.
bool perspective_transform(const double src[8], const double dst[8], double m[9]) noexcept {
  double a[8][9];
  for (int i = 0; i < 4; ++i) {
    const double x = src[2 * i], y = src[2 * i + 1], u = dst[2 * i], v = dst[2 * i + 1];
    const double r0[9] = {x, y, 1, 0, 0, 0, -x * u, -y * u, u};
    const double r1[9] = {0, 0, 0, x, y, 1, -x * v, -y * v, v};
    std::memcpy(a[i], r0, sizeof(r0));
    std::memcpy(a[i + 4], r1, sizeof(r1));
  }
  for (int c = 0; c < 8; ++c) {
    int p = c;
    for (int r = c + 1; r < 8; ++r) {
      if (std::fabs(a[r][c]) > std::fabs(a[p][c])) p = r;
    }
    if (!(std::fabs(a[p][c]) > 1e-300)) return false;
    if (p != c) std::swap(a[p], a[c]);
    for (int r = c + 1; r < 8; ++r) {
      const double f = a[r][c] / a[c][c];
      for (int k = c; k < 9; ++k) a[r][k] -= f * a[c][k];
    }
  }
  double x[8];
  for (int r = 7; r >= 0; --r) {
    double s = a[r][8];
    for (int k = r + 1; k < 8; ++k) s -= a[r][k] * x[k];
    x[r] = s / a[r][r];
  }
  for (int i = 0; i < 8; ++i) m[i] = x[i];
  m[8] = 1.0;
  for (int i = 0; i < 9; ++i) {
    if (!std::isfinite(m[i])) return false;
  }
  return true;
}

// Crop size before rotation, as RapidOCR computes it: float32 norms truncated to int.
void raw_crop_size(const float* q, int64_t* w, int64_t* h) noexcept {
  for (int i = 0; i < 8; ++i) {
    if (!std::isfinite(q[i])) {
      *w = *h = 0;
      return;
    }
  }
  auto dist = [&](int a, int b) {
    const float dx = q[2 * a] - q[2 * b], dy = q[2 * a + 1] - q[2 * b + 1];
    return std::sqrt(dx * dx + dy * dy);
  };
  const float fw = std::max(dist(0, 1), dist(2, 3));
  const float fh = std::max(dist(0, 3), dist(1, 2));
  // int() of values beyond int64 cannot come from a real image; treat them as degenerate.
  *w = fw < 9.0e18f ? static_cast<int64_t>(fw) : 0;
  *h = fh < 9.0e18f ? static_cast<int64_t>(fh) : 0;
}

inline int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

// warpPerspective(INTER_CUBIC, BORDER_REPLICATE) of the RGB source into crop (h x w x 3), where
// `inv` maps crop pixels to source pixels. Blocks as OpenCV walks them, so the double sums match.
void warp_cubic(const uint8_t* rgb, int64_t height, int64_t width, int64_t row_stride,
                const double inv[9], uint8_t* crop, int64_t w, int64_t h) noexcept {
  const CubicTable& table = cubic_table();
  const int64_t block = 32;
  int64_t bh0 = std::min<int64_t>(block / 2, h);
  const int64_t bw0 = std::min<int64_t>(block * block / bh0, w);
  bh0 = std::min<int64_t>(block * block / bw0, h);
  for (int64_t y = 0; y < h; y += bh0) {
    for (int64_t x = 0; x < w; x += bw0) {
      const int64_t bw = std::min(bw0, w - x), bh = std::min(bh0, h - y);
      for (int64_t y1 = 0; y1 < bh; ++y1) {
        const double X0 = inv[0] * x + inv[1] * (y + y1) + inv[2];
        const double Y0 = inv[3] * x + inv[4] * (y + y1) + inv[5];
        const double W0 = inv[6] * x + inv[7] * (y + y1) + inv[8];
        uint8_t* out = crop + ((y + y1) * w + x) * 3;
        for (int64_t x1 = 0; x1 < bw; ++x1, out += 3) {
          double W = W0 + inv[6] * x1;
          W = W != 0.0 ? kTab / W : 0.0;
          const double fx = std::max(static_cast<double>(INT32_MIN),
                                     std::min(static_cast<double>(INT32_MAX), (X0 + inv[0] * x1) * W));
          const double fy = std::max(static_cast<double>(INT32_MIN),
                                     std::min(static_cast<double>(INT32_MAX), (Y0 + inv[3] * x1) * W));
          const int32_t X = static_cast<int32_t>(std::lrint(fx));
          const int32_t Y = static_cast<int32_t>(std::lrint(fy));
          // OpenCV stores the integer part as int16 (saturated).
          const int64_t sx = std::min(32767, std::max(-32768, X >> kTabBits)) - 1;
          const int64_t sy = std::min(32767, std::max(-32768, Y >> kTabBits)) - 1;
          const int16_t* k = table.w[(Y & (kTab - 1)) * kTab + (X & (kTab - 1))];
          int64_t cols[4];
          for (int j = 0; j < 4; ++j) cols[j] = clamp64(sx + j, 0, width - 1) * 3;
          int32_t s0 = 0, s1 = 0, s2 = 0;
          for (int i = 0; i < 4; ++i) {
            const uint8_t* row = rgb + clamp64(sy + i, 0, height - 1) * row_stride;
            for (int j = 0; j < 4; ++j) {
              const int32_t c = k[i * 4 + j];
              const uint8_t* p = row + cols[j];
              s0 += p[0] * c;
              s1 += p[1] * c;
              s2 += p[2] * c;
            }
          }
          auto cast8 = [](int32_t s) {
            const int32_t v = (s + (1 << 14)) >> 15;
            return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
          };
          out[0] = cast8(s0);
          out[1] = cast8(s1);
          out[2] = cast8(s2);
        }
      }
    }
  }
}

// cv2.resize INTER_LINEAR weights of one axis: source index and 11-bit weight pair per output.
void linear_axis(int64_t in, int64_t out, std::vector<int64_t>* ofs, std::vector<int16_t>* wts) {
  ofs->resize(static_cast<size_t>(out));
  wts->resize(static_cast<size_t>(2 * out));
  const double scale = 1.0 / (static_cast<double>(out) / static_cast<double>(in));
  for (int64_t d = 0; d < out; ++d) {
    float f = static_cast<float>((d + 0.5) * scale - 0.5);
    int64_t s = static_cast<int64_t>(std::floor(f));
    f -= static_cast<float>(s);
    if (s < 0) f = 0, s = 0;
    if (s >= in - 1) f = 0, s = in - 1;
    (*ofs)[static_cast<size_t>(d)] = s;
    (*wts)[static_cast<size_t>(2 * d)] = static_cast<int16_t>(std::lrint((1.f - f) * (1 << kResizeBits)));
    (*wts)[static_cast<size_t>(2 * d + 1)] = static_cast<int16_t>(std::lrint(f * (1 << kResizeBits)));
  }
}

}  // namespace

void crop_size(const float* quad, int32_t* w, int32_t* h) noexcept {
  int64_t cw, ch;
  raw_crop_size(quad, &cw, &ch);
  if (cw > INT32_MAX || ch > INT32_MAX) cw = ch = 0;
  // np.rot90 when h / w >= 1.5 (a zero width counts: h / 0 is inf).
  const bool rotate = cw == 0 ? ch > 0 : static_cast<double>(ch) / static_cast<double>(cw) >= 1.5;
  *w = static_cast<int32_t>(rotate ? ch : cw);
  *h = static_cast<int32_t>(rotate ? cw : ch);
}

Status rec_crop(const uint8_t* rgb, int64_t height, int64_t width, int64_t row_stride,
                const float* quad, int64_t batch_width, float* out, int64_t out_h,
                int64_t out_w) noexcept {
  if (rgb == nullptr || quad == nullptr || out == nullptr || height <= 0 || width <= 0 ||
      out_h <= 0 || out_w <= 0 || batch_width <= 0 || batch_width > out_w) {
    return kInvalidArgument;
  }
  const int64_t plane = out_h * out_w;
  std::fill(out, out + 3 * plane, 0.0f);
  int64_t cw, ch;
  raw_crop_size(quad, &cw, &ch);
  if (cw <= 0 || ch <= 0) return kOk;
  const double dst[8] = {0, 0, static_cast<double>(cw), 0, static_cast<double>(cw),
                         static_cast<double>(ch), 0, static_cast<double>(ch)};
  double src[8];
  for (int i = 0; i < 8; ++i) src[i] = quad[i];
  // Forward transform quad -> crop as OpenCV builds it, then its inverse (warpPerspective inverts).
  double m[9];
  if (!perspective_transform(src, dst, m)) return kOk;
  const double det = m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6]) +
                     m[2] * (m[3] * m[7] - m[4] * m[6]);
  if (!(std::fabs(det) > 0) || !std::isfinite(det)) return kOk;
  const double id = 1.0 / det;
  const double inv[9] = {(m[4] * m[8] - m[5] * m[7]) * id, (m[2] * m[7] - m[1] * m[8]) * id,
                         (m[1] * m[5] - m[2] * m[4]) * id, (m[5] * m[6] - m[3] * m[8]) * id,
                         (m[0] * m[8] - m[2] * m[6]) * id, (m[2] * m[3] - m[0] * m[5]) * id,
                         (m[3] * m[7] - m[4] * m[6]) * id, (m[1] * m[6] - m[0] * m[7]) * id,
                         (m[0] * m[4] - m[1] * m[3]) * id};
  try {
    std::vector<uint8_t> crop(static_cast<size_t>(cw * ch * 3));
    warp_cubic(rgb, height, width, row_stride, inv, crop.data(), cw, ch);
    // np.rot90 (counter-clockwise): rotated[i][j] = crop[j][cw - 1 - i], shape (cw, ch).
    const bool rotate = static_cast<double>(ch) / static_cast<double>(cw) >= 1.5;
    const int64_t rh = rotate ? cw : ch, rw = rotate ? ch : cw;
    auto pixel = [&](int64_t y, int64_t x) -> const uint8_t* {
      return rotate ? crop.data() + (x * cw + (cw - 1 - y)) * 3 : crop.data() + (y * cw + x) * 3;
    };
    const double ratio = static_cast<double>(rw) / static_cast<double>(rh);
    const double want = std::ceil(static_cast<double>(out_h) * ratio);
    const int64_t resized_w = want > static_cast<double>(batch_width) ? batch_width : static_cast<int64_t>(want);
    if (resized_w <= 0) return kOk;
    std::vector<int64_t> xofs, yofs;
    std::vector<int16_t> alpha, beta;
    linear_axis(rw, resized_w, &xofs, &alpha);
    linear_axis(rh, out_h, &yofs, &beta);
    // Horizontal pass for every source row a vertical tap reads (int, 11-bit weights) ...
    std::vector<int32_t> rows(static_cast<size_t>(rh * resized_w * 3));
    std::vector<uint8_t> needed(static_cast<size_t>(rh), 0);
    for (int64_t d = 0; d < out_h; ++d) {
      needed[static_cast<size_t>(yofs[d])] = 1;
      needed[static_cast<size_t>(std::min(yofs[d] + 1, rh - 1))] = 1;
    }
    for (int64_t y = 0; y < rh; ++y) {
      if (!needed[static_cast<size_t>(y)]) continue;
      int32_t* r = rows.data() + y * resized_w * 3;
      for (int64_t d = 0; d < resized_w; ++d) {
        const int64_t s = xofs[d];
        const uint8_t* p0 = pixel(y, s);
        const uint8_t* p1 = pixel(y, std::min(s + 1, rw - 1));
        const int32_t a0 = alpha[2 * d], a1 = alpha[2 * d + 1];
        for (int c = 0; c < 3; ++c) r[3 * d + c] = p0[c] * a0 + p1[c] * a1;
      }
    }
    // ... then vertical with OpenCV's rounding, and (v / 255 - 0.5) / 0.5 in float32, BGR planes.
    float table[256];
    for (int v = 0; v < 256; ++v) table[v] = (static_cast<float>(v) / 255.0f - 0.5f) / 0.5f;
    for (int64_t d = 0; d < out_h; ++d) {
      const int32_t* r0 = rows.data() + yofs[d] * resized_w * 3;
      const int32_t* r1 = rows.data() + std::min(yofs[d] + 1, rh - 1) * resized_w * 3;
      const int32_t b0 = beta[2 * d], b1 = beta[2 * d + 1];
      float* ob = out + d * out_w;
      for (int64_t x = 0; x < resized_w; ++x) {
        for (int c = 0; c < 3; ++c) {
          const int32_t v = (r0[3 * x + c] * b0 + r1[3 * x + c] * b1 + (1 << 21)) >> 22;
          const uint8_t u = static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
          ob[(2 - c) * plane + x] = table[u];
        }
      }
    }
  } catch (...) {
    std::fill(out, out + 3 * plane, 0.0f);
    return kOutOfMemory;
  }
  return kOk;
}

}  // namespace ocr
}  // namespace immich
