// Private pieces shared by the OCR kernel's translation units: contour tracing, the geometry of
// minimum-area rectangles and polygon offsetting, and polygon rasterisation. Each follows the
// library RapidOCR calls (OpenCV, pyclipper) closely enough that results match it, float
// rounding included where it decides an integer (see the .cpp files for which steps).
#ifndef IMMICH_OCR_INTERNAL_H
#define IMMICH_OCR_INTERNAL_H

#include <cstdint>
#include <vector>

namespace immich {
namespace ocr {
namespace detail {

struct PointI {
  int32_t x, y;
};

struct PointF {
  float x, y;
};

// cv::RotatedRect: centre, size, angle in degrees.
struct RotRect {
  float cx = 0.0f, cy = 0.0f, width = 0.0f, height = 0.0f, angle = 0.0f;
};

// Contours of the non-zero pixels of a (height x width) 0/1 mask, as cv2.findContours(RETR_LIST,
// CHAIN_APPROX_SIMPLE) lists them (outer and hole borders; same order). Contour k is
// points[starts[k] .. starts[k + 1]). At most max_contours are returned (the first ones in that
// order). May throw std::bad_alloc.
void find_contours(const uint8_t* mask, int64_t height, int64_t width, int64_t max_contours,
                   std::vector<PointI>* points, std::vector<int64_t>* starts);

// Truncation toward zero of a min-area-rect corner, after snapping values within 1e-3 of a whole
// number to it: those corners are whole numbers computed with float noise, whose sign depends on
// the OpenCV version (4.x and 5.x differ) and would move a whole row of pixels.
inline int32_t snap_trunc(float v) {
  const float r = static_cast<float>(static_cast<int64_t>(v < 0 ? v - 0.5f : v + 0.5f));
  const float d = v - r;
  return static_cast<int32_t>((d < 1e-3f && d > -1e-3f) ? r : v);
}

// cv2.minAreaRect of integer points (convex hull, then OpenCV's float rotating calipers).
// May throw std::bad_alloc.
RotRect min_area_rect(const PointI* points, int64_t count);

// cv2.boxPoints.
void box_points(const RotRect& rect, PointF out[4]);

// RapidOCR's get_mini_boxes: the box points of `rect` sorted by x, then ordered
// (top of the left pair, top of the right pair, bottom of the right pair, bottom of the left pair).
void mini_box(const RotRect& rect, PointF out[4]);

// pyclipper's PyclipperOffset (JT_ROUND, ET_CLOSEDPOLYGON, arc tolerance 0.25) of the quad whose
// corners are truncated to integers as pyclipper does, by `delta`. Appends the vertices of the
// offset polygon to *out (nothing for a degenerate quad). May throw std::bad_alloc.
void offset_round(const PointF quad[4], double delta, std::vector<PointI>* out);

// Mean of `values` (row stride in elements) over the pixels cv2.fillPoly(mask, [polygon], 1)
// sets inside the box [x0, x1] x [y0, y1] (inclusive, inside the map), the polygon's vertices
// being relative to (x0, y0). Returns 0 when no pixel is set. `scratch` is reused between calls.
// May throw std::bad_alloc.
double masked_mean(const float* values, int64_t row_stride, int32_t x0, int32_t y0, int32_t x1,
                   int32_t y1, const PointI* polygon, int64_t count, std::vector<uint8_t>* scratch);

}  // namespace detail
}  // namespace ocr
}  // namespace immich

#endif  // IMMICH_OCR_INTERNAL_H
