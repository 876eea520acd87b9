// OpenCV's `cv::resize(..., INTER_LINEAR)` of uint8 RGB, reproduced to the bit: what Immich v3's face
// detector letterboxes with. Two taps per axis, no antialiasing (a downscale reads 2 of the source
// pixels under an output pixel, however many there are).
//
// OpenCV's fixed-point path for 8-bit images, step by step:
//  * coordinates: f = float((d + 0.5) * (src / dst) - 0.5) in double then float, s = floor(f),
//    f -= s (float); weights (1 - f, f) in float, scaled by 2048 and rounded to int16 (they need
//    not sum to 2048). Horizontally a position left of the image takes (pixel 0, weight 2048) and
//    one at or right of the last pixel (last pixel, 2048); vertically only the row index is
//    clamped, the weights stay.
//  * horizontal pass: int32 sums pixel * weight (exact);
//  * vertical pass, as OpenCV's SIMD code computes every pixel of the row: int16 (h >> 4) times the
//    int16 weight, high 16 bits of each product, the two added, then (v + 2) >> 2 saturated to
//    uint8.
// tests/ops/test_image_opencv.py compares against cv2.resize on many sizes (OpenCV 5.1: equal
// everywhere; OpenCV 4 builds finish rows narrower than one vector with a scalar formula that can
// differ by 1 level in those last few bytes).
#include <algorithm>
#include <cmath>
#include <new>
#include <vector>

#include "image_internal.h"

// `(d + 0.5) * scale - 0.5` must round twice, as OpenCV's (non-contracted) build does.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace immich {
namespace image {
namespace detail {
namespace {

constexpr float kCoefScale = 2048.0f;  // INTER_RESIZE_COEF_SCALE

struct Tap {
  int64_t index;   // first source pixel / row (may lie outside the image)
  float fraction;  // weight of the next one; `index` gets 1 - fraction
};

// OpenCV's position and weights of output sample `d` for a resize from `src` to `dst` samples.
Tap tap(int64_t d, int64_t src, int64_t dst) {
  const double scale = 1.0 / (static_cast<double>(dst) / static_cast<double>(src));
  float f = static_cast<float>((static_cast<double>(d) + 0.5) * scale - 0.5);
  const int64_t s = static_cast<int64_t>(std::floor(f));
  f -= static_cast<float>(s);
  return Tap{s, f};
}

int16_t weight(float value) {
  return static_cast<int16_t>(std::nearbyint(value * kCoefScale));
}

// Byte offsets and weights of the horizontal pass, for the region's output columns.
struct Columns {
  std::vector<int64_t> first;   // byte offset of the left pixel
  std::vector<int64_t> second;  // byte offset of the right pixel (== first at the edges)
  std::vector<int32_t> w0;
  std::vector<int32_t> w1;
};

void build_columns(int64_t src_w, int64_t resized_w, int64_t crop_x, int64_t region_w,
                   Columns* c) {
  c->first.resize(static_cast<size_t>(region_w));
  c->second.resize(static_cast<size_t>(region_w));
  c->w0.resize(static_cast<size_t>(region_w));
  c->w1.resize(static_cast<size_t>(region_w));
  for (int64_t i = 0; i < region_w; ++i) {
    Tap t = tap(crop_x + i, src_w, resized_w);
    if (t.index < 0) {
      t.index = 0;
      t.fraction = 0.0f;
    }
    if (t.index >= src_w - 1) {
      t.index = src_w - 1;
      t.fraction = 0.0f;
    }
    const size_t k = static_cast<size_t>(i);
    c->first[k] = t.index * 3;
    c->second[k] = std::min(t.index + 1, src_w - 1) * 3;
    c->w0[k] = weight(1.0f - t.fraction);
    c->w1[k] = weight(t.fraction);
  }
}

// Both passes are plain loops the compiler vectorises; on x86-64 also for AVX2 (chosen at load).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define IMMICH_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define IMMICH_CLONES
#endif

IMMICH_CLONES void horizontal(const uint8_t* row, const Columns& c, int64_t region_w, int32_t* out) {
  const int64_t* first = c.first.data();
  const int64_t* second = c.second.data();
  const int32_t* w0 = c.w0.data();
  const int32_t* w1 = c.w1.data();
  for (int64_t i = 0; i < region_w; ++i) {
    const uint8_t* a = row + first[i];
    const uint8_t* b = row + second[i];
    out[3 * i + 0] = a[0] * w0[i] + b[0] * w1[i];
    out[3 * i + 1] = a[1] * w0[i] + b[1] * w1[i];
    out[3 * i + 2] = a[2] * w0[i] + b[2] * w1[i];
  }
}

IMMICH_CLONES void vertical(const int32_t* top, const int32_t* bottom, int32_t b0, int32_t b1, int64_t n,
              uint8_t* out) {
  for (int64_t j = 0; j < n; ++j) {
    // int16 lanes: h >> 4 is at most 255 * 2049 >> 4 = 32656, products fit int32.
    const int32_t v = ((static_cast<int16_t>(top[j] >> 4) * b0) >> 16) +
                      ((static_cast<int16_t>(bottom[j] >> 4) * b1) >> 16);
    const int32_t r = (v + 2) >> 2;
    out[j] = static_cast<uint8_t>(r < 0 ? 0 : (r > 255 ? 255 : r));
  }
}

}  // namespace

Status resize_opencv_linear(const Source& src, const Geometry& g, const RowSink& sink,
                            int64_t out_h) noexcept {
  const int64_t width3 = g.region_w * 3;
  Columns columns;
  std::vector<int32_t> rows;     // two horizontal-pass rows
  std::vector<uint8_t> out_row;  // one vertical-pass row
  try {
    build_columns(src.width, g.resized_w, g.crop_x, g.region_w, &columns);
    rows.resize(static_cast<size_t>(2 * width3));
    out_row.resize(static_cast<size_t>(width3));
  } catch (...) {
    return kOutOfMemory;
  }
  // The two horizontal rows in `rows` and the source rows they hold (-1: none yet). An upscale
  // reads each source row for several output rows; a downscale moves on every row.
  int32_t* slot[2] = {rows.data(), rows.data() + width3};
  int64_t held[2] = {-1, -1};
  auto row_of = [&](int64_t r, int avoid) -> const int32_t* {
    for (int k = 0; k < 2; ++k) {
      if (held[k] == r) return slot[k];
    }
    const int k = avoid == 0 ? 1 : 0;
    horizontal(src.data + r * src.row_stride, columns, g.region_w, slot[k]);
    held[k] = r;
    return slot[k];
  };
  const int64_t last = src.height - 1;
  for (int64_t y = 0; y < out_h; ++y) {
    if (y >= g.region_h) {
      sink.fill(y, 0);
      continue;
    }
    const Tap t = tap(g.crop_y + y, src.height, g.resized_h);
    const int64_t r0 = std::min(std::max<int64_t>(t.index, 0), last);
    const int64_t r1 = std::min(std::max<int64_t>(t.index + 1, 0), last);
    const int32_t* top = row_of(r0, held[0] == r1 ? 0 : (held[1] == r1 ? 1 : -1));
    const int keep = held[0] == r0 ? 0 : 1;
    const int32_t* bottom = row_of(r1, keep);
    vertical(top, bottom, weight(1.0f - t.fraction), weight(t.fraction), width3, out_row.data());
    sink.row(y, out_row.data(), g.region_w);
  }
  return kOk;
}

}  // namespace detail
}  // namespace image
}  // namespace immich
