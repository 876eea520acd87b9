// DB post-processing (RapidOCR's DBPostProcess + filter_det_res, then Immich v3's reading order):
// binarize, 2x2 dilation, contours, min-area rect, box score, unclip, min-area rect again, scale,
// corner order, clip, small-box filter, sort.
#include <algorithm>
#include <cmath>
#include <new>
#include <numeric>
#include <vector>

#include "immich/ocr.h"
#include "ocr_internal.h"

#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace immich {
namespace ocr {

namespace {

using detail::PointF;
using detail::PointI;

struct Box {
  float pts[8];  // TL, TR, BR, BL
  float score;
};

// cv2.dilate(mask, ones((2, 2))): the anchor is the kernel's centre (1, 1), so each pixel takes
// the maximum of itself, its left, upper and upper-left neighbours (outside pixels ignored).
void binarize_dilate(const ProbMap& prob, float threshold, std::vector<uint8_t>* out) {
  const int64_t h = prob.height, w = prob.width;
  std::vector<uint8_t> bin(static_cast<size_t>(h * w));
  for (int64_t y = 0; y < h; ++y) {
    const float* row = prob.data + y * prob.row_stride;
    uint8_t* b = bin.data() + y * w;
    for (int64_t x = 0; x < w; ++x) b[x] = row[x] > threshold ? 1 : 0;
  }
  out->resize(static_cast<size_t>(h * w));
  for (int64_t y = 0; y < h; ++y) {
    const uint8_t* cur = bin.data() + y * w;
    const uint8_t* up = y > 0 ? cur - w : cur;
    uint8_t* o = out->data() + y * w;
    o[0] = cur[0] | up[0];
    for (int64_t x = 1; x < w; ++x) o[x] = cur[x] | cur[x - 1] | up[x] | up[x - 1];
  }
}

int32_t clamp_i(int64_t v, int64_t lo, int64_t hi) {
  return static_cast<int32_t>(v < lo ? lo : (v > hi ? hi : v));
}

// box_score_fast: the quad's float corners, bounding box floor/ceil-clipped to the map, corners
// shifted by it in float32 and truncated to int32 as numpy's astype does (snapped, see
// detail::snap_trunc).
double score_fast(const ProbMap& prob, const PointF q[4], std::vector<PointI>* poly,
                  std::vector<uint8_t>* scratch) {
  float xmin = q[0].x, xmax = q[0].x, ymin = q[0].y, ymax = q[0].y;
  for (int i = 1; i < 4; ++i) {
    xmin = std::min(xmin, q[i].x);
    xmax = std::max(xmax, q[i].x);
    ymin = std::min(ymin, q[i].y);
    ymax = std::max(ymax, q[i].y);
  }
  const int32_t x0 = clamp_i(static_cast<int64_t>(std::floor(xmin)), 0, prob.width - 1);
  const int32_t x1 = clamp_i(static_cast<int64_t>(std::ceil(xmax)), 0, prob.width - 1);
  const int32_t y0 = clamp_i(static_cast<int64_t>(std::floor(ymin)), 0, prob.height - 1);
  const int32_t y1 = clamp_i(static_cast<int64_t>(std::ceil(ymax)), 0, prob.height - 1);
  poly->resize(4);
  for (int i = 0; i < 4; ++i) {
    (*poly)[i] = PointI{detail::snap_trunc(q[i].x - static_cast<float>(x0)),
                        detail::snap_trunc(q[i].y - static_cast<float>(y0))};
  }
  return detail::masked_mean(prob.data, prob.row_stride, x0, y0, x1, y1, poly->data(), 4, scratch);
}

// box_score_slow: the contour itself.
double score_slow(const ProbMap& prob, const PointI* c, int64_t n, std::vector<PointI>* poly,
                  std::vector<uint8_t>* scratch) {
  int32_t xmin = c[0].x, xmax = c[0].x, ymin = c[0].y, ymax = c[0].y;
  for (int64_t i = 1; i < n; ++i) {
    xmin = std::min(xmin, c[i].x);
    xmax = std::max(xmax, c[i].x);
    ymin = std::min(ymin, c[i].y);
    ymax = std::max(ymax, c[i].y);
  }
  const int32_t x0 = clamp_i(xmin, 0, prob.width - 1), x1 = clamp_i(xmax, 0, prob.width - 1);
  const int32_t y0 = clamp_i(ymin, 0, prob.height - 1), y1 = clamp_i(ymax, 0, prob.height - 1);
  poly->resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) (*poly)[static_cast<size_t>(i)] = PointI{c[i].x - x0, c[i].y - y0};
  return detail::masked_mean(prob.data, prob.row_stride, x0, y0, x1, y1, poly->data(), n, scratch);
}

// shapely: area / perimeter of the quad, in double.
double unclip_distance(const PointF q[4], double ratio) {
  double area = 0, length = 0;
  for (int i = 0; i < 4; ++i) {
    const PointF& a = q[i];
    const PointF& b = q[(i + 1) & 3];
    area += static_cast<double>(a.x) * b.y - static_cast<double>(b.x) * a.y;
    length += std::hypot(static_cast<double>(b.x) - a.x, static_cast<double>(b.y) - a.y);
  }
  area = std::fabs(area) * 0.5;
  return length > 0 ? area * ratio / length : 0.0;
}

// Scaling to source pixels: x / width * dest_width in float32, rounded half to even, clipped.
float scale_coord(float v, int64_t map_size, int64_t dest_size) {
  float s = v / static_cast<float>(map_size);
  s = s * static_cast<float>(dest_size);
  s = std::nearbyint(s);
  return std::min(std::max(s, 0.0f), static_cast<float>(dest_size));
}

// filter_det_res: order_points_clockwise (sort by x; left pair by y = TL, BL; right pair by y =
// TR, BR), clip to [0, W-1] x [0, H-1], drop boxes with an edge of int length <= 3.
bool finish_box(const float in[8], int64_t src_h, int64_t src_w, float out[8]) {
  int idx[4] = {0, 1, 2, 3};
  std::stable_sort(idx, idx + 4, [&](int a, int b) { return in[2 * a] < in[2 * b]; });
  int l0 = idx[0], l1 = idx[1], r0 = idx[2], r1 = idx[3];
  if (in[2 * l1 + 1] < in[2 * l0 + 1]) std::swap(l0, l1);
  if (in[2 * r1 + 1] < in[2 * r0 + 1]) std::swap(r0, r1);
  const int order[4] = {l0, r0, r1, l1};
  for (int i = 0; i < 4; ++i) {
    const float x = in[2 * order[i]], y = in[2 * order[i] + 1];
    out[2 * i] = std::trunc(std::min(std::max(x, 0.0f), static_cast<float>(src_w - 1)));
    out[2 * i + 1] = std::trunc(std::min(std::max(y, 0.0f), static_cast<float>(src_h - 1)));
  }
  const double top = std::hypot(static_cast<double>(out[0]) - out[2], static_cast<double>(out[1]) - out[3]);
  const double left = std::hypot(static_cast<double>(out[0]) - out[6], static_cast<double>(out[1]) - out[7]);
  return static_cast<int64_t>(top) > 3 && static_cast<int64_t>(left) > 3;
}

// Immich v3's sorted_boxes: stable sort by TL.y; a new line where consecutive y differ by >= 10;
// then stable sort by line * 1e6 + TL.x.
void reading_order(std::vector<Box>* boxes) {
  const size_t n = boxes->size();
  if (n < 2) return;
  std::vector<size_t> by_y(n);
  std::iota(by_y.begin(), by_y.end(), 0);
  std::stable_sort(by_y.begin(), by_y.end(),
                   [&](size_t a, size_t b) { return (*boxes)[a].pts[1] < (*boxes)[b].pts[1]; });
  std::vector<double> key(n);
  int64_t line = 0;
  for (size_t i = 0; i < n; ++i) {
    if (i > 0 && std::fabs(static_cast<double>((*boxes)[by_y[i]].pts[1]) -
                           static_cast<double>((*boxes)[by_y[i - 1]].pts[1])) >= 10) {
      ++line;
    }
    key[i] = static_cast<double>(line) * 1e6 + static_cast<double>((*boxes)[by_y[i]].pts[0]);
  }
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return key[a] < key[b]; });
  std::vector<Box> sorted(n);
  for (size_t i = 0; i < n; ++i) sorted[i] = (*boxes)[by_y[order[i]]];
  boxes->swap(sorted);
}

}  // namespace

Status db_boxes(const ProbMap& prob, const DbParams& params, float* boxes, float* scores,
                int64_t capacity, int64_t* count) noexcept {
  if (count == nullptr) return kInvalidArgument;
  *count = 0;
  if (prob.data == nullptr || prob.height <= 0 || prob.width <= 0 || prob.row_stride < prob.width ||
      params.src_h <= 0 || params.src_w <= 0 || capacity < 0 ||
      (capacity > 0 && (boxes == nullptr || scores == nullptr))) {
    return kInvalidArgument;
  }
  try {
    std::vector<uint8_t> bitmap;
    binarize_dilate(prob, params.threshold, &bitmap);
    std::vector<PointI> points;
    std::vector<int64_t> starts;
    detail::find_contours(bitmap.data(), prob.height, prob.width, params.max_candidates, &points,
                          &starts);
    std::vector<Box> found;
    std::vector<PointI> poly, expanded;
    std::vector<uint8_t> scratch;
    const int64_t contours = static_cast<int64_t>(starts.size()) - 1;
    for (int64_t k = 0; k < contours; ++k) {
      const PointI* c = points.data() + starts[static_cast<size_t>(k)];
      const int64_t n = starts[static_cast<size_t>(k + 1)] - starts[static_cast<size_t>(k)];
      const detail::RotRect rect = detail::min_area_rect(c, n);
      if (std::min(rect.width, rect.height) < 3) continue;
      PointF quad[4];
      detail::mini_box(rect, quad);
      const double score = params.slow_score ? score_slow(prob, c, n, &poly, &scratch)
                                             : score_fast(prob, quad, &poly, &scratch);
      if (static_cast<double>(params.min_score) > score) continue;
      expanded.clear();
      detail::offset_round(quad, unclip_distance(quad, params.unclip_ratio), &expanded);
      if (expanded.empty()) continue;
      const detail::RotRect grown = detail::min_area_rect(expanded.data(),
                                                          static_cast<int64_t>(expanded.size()));
      if (std::min(grown.width, grown.height) < 5) continue;
      PointF box[4];
      detail::mini_box(grown, box);
      float scaled[8];
      for (int i = 0; i < 4; ++i) {
        scaled[2 * i] = std::trunc(scale_coord(box[i].x, prob.width, params.src_w));
        scaled[2 * i + 1] = std::trunc(scale_coord(box[i].y, prob.height, params.src_h));
      }
      Box out;
      if (!finish_box(scaled, params.src_h, params.src_w, out.pts)) continue;
      out.score = static_cast<float>(score);
      found.push_back(out);
    }
    reading_order(&found);
    const int64_t n = std::min<int64_t>(capacity, static_cast<int64_t>(found.size()));
    for (int64_t i = 0; i < n; ++i) {
      std::copy(found[static_cast<size_t>(i)].pts, found[static_cast<size_t>(i)].pts + 8, boxes + 8 * i);
      scores[i] = found[static_cast<size_t>(i)].score;
    }
    *count = n;
  } catch (...) {
    return kOutOfMemory;
  }
  return kOk;
}

}  // namespace ocr
}  // namespace immich
