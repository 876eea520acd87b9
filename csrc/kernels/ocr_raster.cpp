// Mean of a map over a filled polygon, rasterised as cv2.fillPoly(LINE_8) does it: every edge is
// drawn with 8-connected Bresenham (OpenCV's LineIterator stepping), and each scanline between
// pairs of non-horizontal edges is filled from ceil(x_left) to floor(x_right), with x stepped in
// 16.16 fixed point from the edge's upper end.
#include <algorithm>
#include <vector>

#include "ocr_internal.h"

namespace immich {
namespace ocr {
namespace detail {

namespace {

constexpr int kShift = 16;

struct Edge {
  int32_t y0, y1;  // active for y0 <= y < y1
  int64_t x, dx;   // x at y0 and its step per row, fixed point
};

// cv::clipLine: the segment cut to the image (integer arithmetic as OpenCV), false if outside.
bool clip_line(int64_t w, int64_t h, int64_t& x1, int64_t& y1, int64_t& x2, int64_t& y2) {
  const int64_t right = w - 1, bottom = h - 1;
  int c1 = (x1 < 0) + (x1 > right) * 2 + (y1 < 0) * 4 + (y1 > bottom) * 8;
  int c2 = (x2 < 0) + (x2 > right) * 2 + (y2 < 0) * 4 + (y2 > bottom) * 8;
  if ((c1 & c2) == 0 && (c1 | c2) != 0) {
    int64_t a;
    if (c1 & 12) {
      a = c1 < 8 ? 0 : bottom;
      x1 += static_cast<int64_t>(static_cast<double>(a - y1) * (x2 - x1) / (y2 - y1));
      y1 = a;
      c1 = (x1 < 0) + (x1 > right) * 2;
    }
    if (c2 & 12) {
      a = c2 < 8 ? 0 : bottom;
      x2 += static_cast<int64_t>(static_cast<double>(a - y2) * (x2 - x1) / (y2 - y1));
      y2 = a;
      c2 = (x2 < 0) + (x2 > right) * 2;
    }
    if ((c1 & c2) == 0 && (c1 | c2) != 0) {
      if (c1) {
        a = c1 == 1 ? 0 : right;
        y1 += static_cast<int64_t>(static_cast<double>(a - x1) * (y2 - y1) / (x2 - x1));
        x1 = a;
        c1 = 0;
      }
      if (c2) {
        a = c2 == 1 ? 0 : right;
        y2 += static_cast<int64_t>(static_cast<double>(a - x2) * (y2 - y1) / (x2 - x1));
        x2 = a;
        c2 = 0;
      }
    }
  }
  return (c1 | c2) == 0;
}

void draw_line(uint8_t* mask, int32_t w, int32_t h, PointI q1, PointI q2) {
  int64_t x1 = q1.x, y1 = q1.y, x2 = q2.x, y2 = q2.y;
  // OpenCV clips a segment that leaves the image first, then steps from the clipped ends.
  const bool inside = x1 >= 0 && x1 < w && y1 >= 0 && y1 < h && x2 >= 0 && x2 < w && y2 >= 0 && y2 < h;
  if (!inside && !clip_line(w, h, x1, y1, x2, y2)) return;
  PointI p1{static_cast<int32_t>(x1), static_cast<int32_t>(y1)};
  PointI p2{static_cast<int32_t>(x2), static_cast<int32_t>(y2)};
  int32_t dx = p2.x - p1.x, dy = p2.y - p1.y;
  if (dx < 0) {  // OpenCV draws left to right
    std::swap(p1, p2);
    dx = -dx;
    dy = -dy;
  }
  const int32_t sy = dy < 0 ? -1 : 1;
  dy = dy < 0 ? -dy : dy;
  const bool steep = dy > dx;
  const int32_t major = steep ? dy : dx, minor = steep ? dx : dy;
  int32_t err = major - 2 * minor;
  int32_t x = p1.x, y = p1.y;
  for (int32_t i = 0; i <= major; ++i) {
    if (x >= 0 && x < w && y >= 0 && y < h) mask[static_cast<int64_t>(y) * w + x] = 1;
    const bool both = err < 0;
    err += -2 * minor + (both ? 2 * major : 0);
    if (steep) {
      y += sy;
      if (both) x += 1;
    } else {
      x += 1;
      if (both) y += sy;
    }
  }
}

}  // namespace

double masked_mean(const float* values, int64_t row_stride, int32_t x0, int32_t y0, int32_t x1,
                   int32_t y1, const PointI* poly, int64_t count, std::vector<uint8_t>* scratch) {
  const int32_t w = x1 - x0 + 1, h = y1 - y0 + 1;
  if (w <= 0 || h <= 0 || count <= 0) return 0.0;
  scratch->assign(static_cast<size_t>(w) * static_cast<size_t>(h), 0);
  uint8_t* mask = scratch->data();
  std::vector<Edge> edges;
  edges.reserve(static_cast<size_t>(count));
  PointI prev = poly[count - 1];
  for (int64_t i = 0; i < count; ++i) {
    const PointI cur = poly[i];
    draw_line(mask, w, h, prev, cur);
    if (prev.y != cur.y) {
      const PointI& top = prev.y < cur.y ? prev : cur;
      const PointI& bottom = prev.y < cur.y ? cur : prev;
      const int64_t dx = ((static_cast<int64_t>(cur.x) - prev.x) * (int64_t{1} << kShift)) /
                         (static_cast<int64_t>(cur.y) - prev.y);
      edges.push_back(Edge{top.y, bottom.y, static_cast<int64_t>(top.x) * (int64_t{1} << kShift), dx});
    }
    prev = cur;
  }
  if (edges.size() >= 2) {
    int32_t ylo = INT32_MAX, yhi = INT32_MIN;
    for (const Edge& e : edges) {
      ylo = std::min(ylo, e.y0);
      yhi = std::max(yhi, e.y1);
    }
    ylo = std::max(ylo, 0);
    yhi = std::min(yhi, h);
    std::vector<int64_t> xs;
    xs.reserve(edges.size());
    for (int32_t y = ylo; y < yhi; ++y) {
      xs.clear();
      for (const Edge& e : edges) {
        if (e.y0 <= y && y < e.y1) xs.push_back(e.x + static_cast<int64_t>(y - e.y0) * e.dx);
      }
      std::sort(xs.begin(), xs.end());
      uint8_t* row = mask + static_cast<int64_t>(y) * w;
      for (size_t i = 0; i + 1 < xs.size(); i += 2) {
        int64_t a = (xs[i] + (int64_t{1} << kShift) - 1) >> kShift, b = xs[i + 1] >> kShift;
        if (a >= w || b < 0) continue;
        a = std::max<int64_t>(a, 0);
        b = std::min<int64_t>(b, w - 1);
        std::fill(row + a, row + b + 1, 1);
      }
    }
  }
  double sum = 0.0;
  int64_t n = 0;
  for (int32_t y = 0; y < h; ++y) {
    const uint8_t* row = mask + static_cast<int64_t>(y) * w;
    const float* v = values + static_cast<int64_t>(y0 + y) * row_stride + x0;
    for (int32_t x = 0; x < w; ++x) {
      if (row[x]) {
        sum += static_cast<double>(v[x]);
        ++n;
      }
    }
  }
  return n > 0 ? sum / static_cast<double>(n) : 0.0;
}

}  // namespace detail
}  // namespace ocr
}  // namespace immich
