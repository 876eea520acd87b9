// Minimum-area rectangles (convex hull + rotating calipers with OpenCV's float arithmetic, so the
// corners that are later truncated to integers come out the same) and pyclipper's round-joined
// polygon offset (Clipper 6 ClipperOffset: normals, arc steps, rounding to integers).
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <vector>

#include "ocr_internal.h"

// Every float product must be rounded on its own, as OpenCV's compiled code does on x86-64.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace immich {
namespace ocr {
namespace detail {

namespace {

constexpr double kPi = 3.141592653589793238462643383279502884;

int64_t cross(const PointI& o, const PointI& a, const PointI& b) {
  return static_cast<int64_t>(a.x - o.x) * (b.y - o.y) - static_cast<int64_t>(a.y - o.y) * (b.x - o.x);
}

// Convex hull without collinear points, starting at the smallest (x, y), in the direction OpenCV's
// convexHull(clockwise=true) walks: towards larger y first.
void convex_hull(const PointI* pts, int64_t n, std::vector<PointI>* hull) {
  std::vector<PointI> p(pts, pts + n);
  std::sort(p.begin(), p.end(),
            [](const PointI& a, const PointI& b) { return a.x != b.x ? a.x < b.x : a.y < b.y; });
  p.erase(std::unique(p.begin(), p.end(),
                      [](const PointI& a, const PointI& b) { return a.x == b.x && a.y == b.y; }),
          p.end());
  hull->clear();
  if (p.size() < 3) {
    *hull = p;
    return;
  }
  // Andrew's monotone chain, counter-clockwise in y-up terms (lower chain first) ...
  std::vector<PointI> h(2 * p.size());
  size_t k = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    while (k >= 2 && cross(h[k - 2], h[k - 1], p[i]) <= 0) --k;
    h[k++] = p[i];
  }
  for (size_t i = p.size() - 1, t = k + 1; i > 0; --i) {
    while (k >= t && cross(h[k - 2], h[k - 1], p[i - 1]) <= 0) --k;
    h[k++] = p[i - 1];
  }
  h.resize(k - 1);
  // ... then reversed, keeping the first point.
  hull->push_back(h[0]);
  for (size_t i = h.size() - 1; i >= 1; --i) hull->push_back(h[i]);
  // OpenCV then rotates the hull so the indices of its points in the input run upwards (or
  // downwards) from the smallest (largest) one, when they can; the calipers' float rounding
  // depends on where the hull starts.
  const int nout = static_cast<int>(hull->size());
  std::vector<int> idx(static_cast<size_t>(nout));
  for (int i = 0; i < nout; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      if (pts[j].x == (*hull)[i].x && pts[j].y == (*hull)[i].y) {
        idx[i] = static_cast<int>(j);
        break;
      }
    }
  }
  int min_i = 0, max_i = 0, lt = 0;
  for (int i = 1; i < nout; ++i) {
    lt += idx[i - 1] < idx[i];
    if (lt > 1 && lt <= i - 2) break;
    if (idx[i] < idx[min_i]) min_i = i;
    if (idx[i] > idx[max_i]) max_i = i;
  }
  const int mmdist = std::abs(max_i - min_i);
  if ((mmdist == 1 || mmdist == nout - 1) && (lt <= 1 || lt >= nout - 2)) {
    const bool ascending = (max_i + 1) % nout == min_i;
    const int i0 = ascending ? min_i : max_i;
    if (i0 > 0) {
      int j = i0, i = 0;
      for (; i < nout; ++i) {
        const int next_j = j + 1 < nout ? j + 1 : 0;
        if (i < nout - 1 && (ascending != (idx[j] < idx[next_j]))) break;
        j = next_j;
      }
      if (i == nout) std::rotate(hull->begin(), hull->begin() + i0, hull->end());
    }
  }
}

// OpenCV's rotatingCalipers(CALIPERS_MINAREARECT): out = corner, vector1, vector2.
void rotating_calipers(const PointF* points, int n, PointF out[3]) {
  float minarea = FLT_MAX;
  std::vector<float> inv_len(static_cast<size_t>(n));
  std::vector<PointF> vect(static_cast<size_t>(n));
  int left = 0, bottom = 0, right = 0, top = 0;
  int seq[4] = {-1, -1, -1, -1};
  float orientation = 0;
  float base_a, base_b = 0;
  PointF pt0 = points[0];
  float left_x = pt0.x, right_x = pt0.x, top_y = pt0.y, bottom_y = pt0.y;
  for (int i = 0; i < n; ++i) {
    if (pt0.x < left_x) left_x = pt0.x, left = i;
    if (pt0.x > right_x) right_x = pt0.x, right = i;
    if (pt0.y > top_y) top_y = pt0.y, top = i;
    if (pt0.y < bottom_y) bottom_y = pt0.y, bottom = i;
    const PointF pt = points[i + 1 < n ? i + 1 : 0];
    const double dx = static_cast<double>(pt.x) - pt0.x;
    const double dy = static_cast<double>(pt.y) - pt0.y;
    vect[i].x = static_cast<float>(dx);
    vect[i].y = static_cast<float>(dy);
    inv_len[i] = static_cast<float>(1.0 / std::sqrt(dx * dx + dy * dy));
    pt0 = pt;
  }
  {
    double ax = vect[n - 1].x, ay = vect[n - 1].y;
    for (int i = 0; i < n; ++i) {
      const double bx = vect[i].x, by = vect[i].y;
      const double convexity = ax * by - ay * bx;
      if (convexity != 0) {
        orientation = convexity > 0 ? 1.f : -1.f;
        break;
      }
      ax = bx;
      ay = by;
    }
  }
  base_a = orientation;
  seq[0] = bottom;
  seq[1] = right;
  seq[2] = top;
  seq[3] = left;
  float best[7] = {0, 0, 0, 0, 0, 0, 0};
  int best_left = 0, best_bottom = 0;
  for (int k = 0; k < n; ++k) {
    const float dp0 = base_a * vect[seq[0]].x + base_b * vect[seq[0]].y;
    const float dp1 = -base_b * vect[seq[1]].x + base_a * vect[seq[1]].y;
    const float dp2 = -base_a * vect[seq[2]].x - base_b * vect[seq[2]].y;
    const float dp3 = base_b * vect[seq[3]].x - base_a * vect[seq[3]].y;
    float cosalpha = dp0 * inv_len[seq[0]];
    float maxcos = cosalpha;
    int main_element = 0;
    cosalpha = dp1 * inv_len[seq[1]];
    if (cosalpha > maxcos) main_element = 1, maxcos = cosalpha;
    cosalpha = dp2 * inv_len[seq[2]];
    if (cosalpha > maxcos) main_element = 2, maxcos = cosalpha;
    cosalpha = dp3 * inv_len[seq[3]];
    if (cosalpha > maxcos) main_element = 3, maxcos = cosalpha;
    const int pindex = seq[main_element];
    const float lead_x = vect[pindex].x * inv_len[pindex];
    const float lead_y = vect[pindex].y * inv_len[pindex];
    switch (main_element) {
      case 0: base_a = lead_x; base_b = lead_y; break;
      case 1: base_a = lead_y; base_b = -lead_x; break;
      case 2: base_a = -lead_x; base_b = -lead_y; break;
      default: base_a = -lead_y; base_b = lead_x; break;
    }
    seq[main_element] += 1;
    if (seq[main_element] == n) seq[main_element] = 0;
    float dx = points[seq[1]].x - points[seq[3]].x;
    float dy = points[seq[1]].y - points[seq[3]].y;
    const float width = dx * base_a + dy * base_b;
    dx = points[seq[2]].x - points[seq[0]].x;
    dy = points[seq[2]].y - points[seq[0]].y;
    const float height = -dx * base_b + dy * base_a;
    const float area = width * height;
    if (area <= minarea) {
      minarea = area;
      best_left = seq[3];
      best[1] = base_a;
      best[2] = width;
      best[3] = base_b;
      best[4] = height;
      best_bottom = seq[0];
    }
  }
  const float A1 = best[1], B1 = best[3];
  const float A2 = -best[3], B2 = best[1];
  const float C1 = A1 * points[best_left].x + points[best_left].y * B1;
  const float C2 = A2 * points[best_bottom].x + points[best_bottom].y * B2;
  const float idet = 1.f / (A1 * B2 - A2 * B1);
  out[0].x = (C1 * B2 - C2 * B1) * idet;
  out[0].y = (A1 * C2 - A2 * C1) * idet;
  out[1].x = A1 * best[2];
  out[1].y = B1 * best[2];
  out[2].x = A2 * best[4];
  out[2].y = B2 * best[4];
}

int64_t clipper_round(double v) {
  return v < 0 ? static_cast<int64_t>(v - 0.5) : static_cast<int64_t>(v + 0.5);
}

struct Normal {
  double x, y;
};

Normal unit_normal(const PointI& a, const PointI& b) {
  double dx = static_cast<double>(b.x) - a.x, dy = static_cast<double>(b.y) - a.y;
  if (dx == 0 && dy == 0) return Normal{0, 0};
  const double f = 1.0 / std::sqrt(dx * dx + dy * dy);
  dx *= f;
  dy *= f;
  return Normal{dy, -dx};
}

}  // namespace

RotRect min_area_rect(const PointI* points, int64_t count) {
  RotRect box;
  std::vector<PointI> hull;
  convex_hull(points, count, &hull);
  const int n = static_cast<int>(hull.size());
  std::vector<PointF> h(hull.size());
  for (int i = 0; i < n; ++i) h[i] = PointF{static_cast<float>(hull[i].x), static_cast<float>(hull[i].y)};
  // The angle stays in double until it is converted to degrees (OpenCV >= 4.5.1's rounding).
  double angle = 0.0;
  if (n > 2) {
    PointF out[3];
    rotating_calipers(h.data(), n, out);
    box.cx = out[0].x + (out[1].x + out[2].x) * 0.5f;
    box.cy = out[0].y + (out[1].y + out[2].y) * 0.5f;
    box.width = static_cast<float>(std::sqrt(static_cast<double>(out[1].x) * out[1].x +
                                             static_cast<double>(out[1].y) * out[1].y));
    box.height = static_cast<float>(std::sqrt(static_cast<double>(out[2].x) * out[2].x +
                                              static_cast<double>(out[2].y) * out[2].y));
    angle = std::atan2(static_cast<double>(out[1].y), static_cast<double>(out[1].x));
  } else if (n == 2) {
    box.cx = (h[0].x + h[1].x) * 0.5f;
    box.cy = (h[0].y + h[1].y) * 0.5f;
    const double dx = static_cast<double>(h[1].x) - h[0].x, dy = static_cast<double>(h[1].y) - h[0].y;
    box.width = static_cast<float>(std::sqrt(dx * dx + dy * dy));
    box.height = 0;
    angle = std::atan2(dy, dx);
  } else if (n == 1) {
    box.cx = h[0].x;
    box.cy = h[0].y;
  }
  box.angle = static_cast<float>(angle * 180 / kPi);
  return box;
}

void box_points(const RotRect& r, PointF pt[4]) {
  const double angle = r.angle * kPi / 180.;
  const float b = static_cast<float>(std::cos(angle)) * 0.5f;
  const float a = static_cast<float>(std::sin(angle)) * 0.5f;
  pt[0].x = r.cx - a * r.height - b * r.width;
  pt[0].y = r.cy + b * r.height - a * r.width;
  pt[1].x = r.cx + a * r.height - b * r.width;
  pt[1].y = r.cy - b * r.height - a * r.width;
  pt[2].x = 2 * r.cx - pt[0].x;
  pt[2].y = 2 * r.cy - pt[0].y;
  pt[3].x = 2 * r.cx - pt[1].x;
  pt[3].y = 2 * r.cy - pt[1].y;
}

void mini_box(const RotRect& rect, PointF out[4]) {
  PointF p[4];
  box_points(rect, p);
  std::stable_sort(p, p + 4, [](const PointF& a, const PointF& b) { return a.x < b.x; });
  const bool left_down = p[1].y > p[0].y;
  const bool right_down = p[3].y > p[2].y;
  out[0] = left_down ? p[0] : p[1];
  out[3] = left_down ? p[1] : p[0];
  out[1] = right_down ? p[2] : p[3];
  out[2] = right_down ? p[3] : p[2];
}

void offset_round(const PointF quad[4], double delta, std::vector<PointI>* out) {
  // pyclipper converts each coordinate to an integer with Python's int(): truncation (snapped).
  PointI src[4];
  int n = 0;
  for (int i = 0; i < 4; ++i) {
    const PointI p{snap_trunc(quad[i].x), snap_trunc(quad[i].y)};
    if (n > 0 && src[n - 1].x == p.x && src[n - 1].y == p.y) continue;
    src[n++] = p;
  }
  while (n > 1 && src[0].x == src[n - 1].x && src[0].y == src[n - 1].y) --n;
  if (n < 3) return;
  // Clipper offsets outer polygons with positive orientation (area >= 0 in its terms).
  double area = 0;
  for (int i = 0, j = n - 1; i < n; j = i++) {
    area += (static_cast<double>(src[j].x) + src[i].x) * (static_cast<double>(src[j].y) - src[i].y);
  }
  if (-area * 0.5 < 0) std::reverse(src, src + n);
  if (std::fabs(delta) < 1.0E-20) {
    out->insert(out->end(), src, src + n);
    return;
  }
  const double arc_tolerance = 0.25;
  const double y = arc_tolerance > std::fabs(delta) * 0.25 ? std::fabs(delta) * 0.25 : arc_tolerance;
  double steps = kPi / std::acos(1 - y / std::fabs(delta));
  if (steps > std::fabs(delta) * kPi) steps = std::fabs(delta) * kPi;
  double sin_step = std::sin(2 * kPi / steps);
  const double cos_step = std::cos(2 * kPi / steps);
  const double steps_per_rad = steps / (2 * kPi);
  if (delta < 0.0) sin_step = -sin_step;
  Normal normals[4];
  for (int j = 0; j < n; ++j) normals[j] = unit_normal(src[j], src[j + 1 < n ? j + 1 : 0]);
  auto push = [&](const PointI& p, double nx, double ny) {
    out->push_back(PointI{static_cast<int32_t>(clipper_round(p.x + nx * delta)),
                          static_cast<int32_t>(clipper_round(p.y + ny * delta))});
  };
  for (int j = 0, k = n - 1; j < n; k = j, ++j) {
    double sin_a = normals[k].x * normals[j].y - normals[j].x * normals[k].y;
    const double cos_a = normals[k].x * normals[j].x + normals[j].y * normals[k].y;
    if (std::fabs(sin_a * delta) < 1.0) {
      if (cos_a > 0) {
        push(src[j], normals[k].x, normals[k].y);
        continue;
      }
    } else if (sin_a > 1.0) {
      sin_a = 1.0;
    } else if (sin_a < -1.0) {
      sin_a = -1.0;
    }
    if (sin_a * delta < 0) {
      push(src[j], normals[k].x, normals[k].y);
      out->push_back(src[j]);
      push(src[j], normals[j].x, normals[j].y);
      continue;
    }
    const double a = std::atan2(sin_a, normals[k].x * normals[j].x + normals[k].y * normals[j].y);
    const int arc_steps = std::max(static_cast<int>(clipper_round(steps_per_rad * std::fabs(a))), 1);
    double x = normals[k].x, yv = normals[k].y;
    for (int i = 0; i < arc_steps; ++i) {
      push(src[j], x, yv);
      const double x2 = x;
      x = x * cos_step - sin_step * yv;
      yv = x2 * sin_step + yv * cos_step;
    }
    push(src[j], normals[j].x, normals[j].y);
  }
}

}  // namespace detail
}  // namespace ocr
}  // namespace immich
