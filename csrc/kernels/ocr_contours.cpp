// Border following (Suzuki & Abe 1985, as cv2.findContours implements it) for RETR_LIST with
// CHAIN_APPROX_SIMPLE: every outer and hole border of the 8-connected foreground, each border
// point kept only where the chain turns.
#include <algorithm>
#include <vector>

#include "ocr_internal.h"

namespace immich {
namespace ocr {
namespace detail {

namespace {

// Labels in the padded working image: 0 background, 1 foreground not yet on a border, kSeen a
// border pixel, -kSeen a border pixel whose right neighbour is background (examined). RETR_LIST
// needs no parent links, so one border number serves every border.
constexpr int8_t kSeen = 2;

}  // namespace

void find_contours(const uint8_t* mask, int64_t height, int64_t width, int64_t max_contours,
                   std::vector<PointI>* points, std::vector<int64_t>* starts) {
  points->clear();
  starts->assign(1, 0);
  if (height <= 0 || width <= 0 || max_contours <= 0) return;
  // A zero frame around the image, as OpenCV adds, so borders on the image edge are followed too.
  const int64_t pw = width + 2;
  std::vector<int8_t> f(static_cast<size_t>((height + 2) * pw), 0);
  for (int64_t y = 0; y < height; ++y) {
    const uint8_t* src = mask + y * width;
    int8_t* dst = f.data() + (y + 1) * pw + 1;
    for (int64_t x = 0; x < width; ++x) dst[x] = src[x] != 0 ? 1 : 0;
  }
  // Chain codes 0..7, counter-clockwise on screen starting east (OpenCV's order).
  const int64_t step[8] = {1, 1 - pw, -pw, -1 - pw, -1, -1 + pw, pw, 1 + pw};

  // Borders in the order they are found (raster order of their first pixel).
  std::vector<PointI> found;
  std::vector<int64_t> found_starts(1, 0);
  int8_t* img = f.data();
  auto emit = [&](int64_t p) {
    found.push_back(PointI{static_cast<int32_t>(p % pw - 1), static_cast<int32_t>(p / pw - 1)});
  };
  for (int64_t y = 1; y <= height; ++y) {
    for (int64_t x = 1; x <= width; ++x) {
      const int64_t p = y * pw + x;
      const int8_t v = img[p];
      if (v == 0) continue;
      int from;
      if (v == 1 && img[p - 1] == 0) {
        from = 4;  // outer border: entered from the background pixel on the left
      } else if (v >= 1 && img[p + 1] == 0) {
        from = 0;  // hole border: the background pixel on the right
      } else {
        continue;
      }
      // 3.1: clockwise from `from` for the first non-zero neighbour.
      int d1 = -1;
      for (int k = 1; k <= 8; ++k) {
        const int d = (from - k) & 7;
        if (img[p + step[d]] != 0) {
          d1 = d;
          break;
        }
      }
      if (d1 < 0) {  // an isolated pixel: a one-point contour
        img[p] = -kSeen;
        emit(p);
        found_starts.push_back(static_cast<int64_t>(found.size()));
        continue;
      }
      const int64_t p1 = p + step[d1];
      int64_t p3 = p;
      int back = d1;      // direction from p3 to the previous border pixel
      int last_out = -1;  // direction leaving the last emitted point
      for (;;) {
        // 3.3: counter-clockwise from the pixel after `back` for the next non-zero neighbour.
        bool right_is_zero = false;
        int d4 = back;
        for (int k = 1; k <= 8; ++k) {
          const int d = (back + k) & 7;
          if (img[p3 + step[d]] != 0) {
            d4 = d;
            break;
          }
          if (d == 0) right_is_zero = true;
        }
        // 3.4
        if (right_is_zero) {
          img[p3] = -kSeen;
        } else if (img[p3] == 1) {
          img[p3] = kSeen;
        }
        if (d4 != last_out) {
          emit(p3);
          last_out = d4;
        }
        const int64_t p4 = p3 + step[d4];
        if (p4 == p && p3 == p1) break;
        back = (d4 + 4) & 7;
        p3 = p4;
      }
      found_starts.push_back(static_cast<int64_t>(found.size()));
    }
  }
  // OpenCV lists RETR_LIST borders last-found first.
  const int64_t total = static_cast<int64_t>(found_starts.size()) - 1;
  const int64_t keep = std::min(total, max_contours);
  points->reserve(found.size());
  starts->reserve(static_cast<size_t>(keep + 1));
  for (int64_t k = total - 1; k >= total - keep; --k) {
    points->insert(points->end(), found.begin() + found_starts[static_cast<size_t>(k)],
                   found.begin() + found_starts[static_cast<size_t>(k + 1)]);
    starts->push_back(static_cast<int64_t>(points->size()));
  }
}

}  // namespace detail
}  // namespace ocr
}  // namespace immich
