// SCRFD decode + greedy NMS. See immich/detect.h for the contract.
#include "immich/detect.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

// Bit-identical results with the numpy / OpenCV references need every product rounded on its own:
// fusing `centre - distance * stride` or `w * h` into a later addition as one FMA (what GCC does by
// default on targets with FMA, e.g. aarch64) would change the last bit and, at the threshold, the NMS.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace immich::detect {
namespace {

constexpr size_t kAlign = 16;

size_t round_up(size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

// Carves typed sub-buffers out of the caller's scratch memory, in a fixed order.
class Arena {
 public:
  explicit Arena(unsigned char* base) : cursor_(base) {}
  template <typename T>
  T* take(int64_t count) {
    T* out = reinterpret_cast<T*>(cursor_);
    cursor_ += round_up(sizeof(T) * static_cast<size_t>(count));
    return out;
  }

 private:
  unsigned char* cursor_;
};

// ---- stable descending sort of scores (LSD radix on order-preserving keys) ---------------------

constexpr int64_t kInsertionSortMax = 48;

// Maps a float to an unsigned key whose ascending order is the float's descending order.
// -0.0 and +0.0 compare equal (as in numpy), so they share a key and keep their index order.
inline uint32_t descending_key(float value) {
  if (value == 0.0f) value = 0.0f;
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  const uint32_t ascending = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
  return ~ascending;
}

size_t sort_workspace_bytes(int64_t count) {
  const size_t n = static_cast<size_t>(count < 0 ? 0 : count);
  // order, keys, and a second (order, keys) pair the radix passes ping-pong between.
  return 4 * round_up(n * sizeof(uint32_t));
}

// Returns the indices of `scores` sorted by descending score, equal scores in ascending index
// order. The result points into `scratch`, which holds sort_workspace_bytes(count) bytes.
const uint32_t* sort_descending(const float* scores, int64_t count, uint32_t* scratch) {
  const int64_t stride = static_cast<int64_t>(round_up(count * sizeof(uint32_t)) / sizeof(uint32_t));
  uint32_t* order = scratch;
  uint32_t* keys = scratch + stride;
  uint32_t* order_tmp = scratch + 2 * stride;
  uint32_t* keys_tmp = scratch + 3 * stride;
  for (int64_t i = 0; i < count; ++i) {
    order[i] = static_cast<uint32_t>(i);
    keys[i] = descending_key(scores[i]);
  }
  if (count <= kInsertionSortMax) {
    for (int64_t i = 1; i < count; ++i) {
      const uint32_t key = keys[i];
      const uint32_t index = order[i];
      int64_t j = i;
      for (; j > 0 && keys[j - 1] > key; --j) {
        keys[j] = keys[j - 1];
        order[j] = order[j - 1];
      }
      keys[j] = key;
      order[j] = index;
    }
    return order;
  }
  uint32_t histogram[4][256] = {};
  for (int64_t i = 0; i < count; ++i) {
    const uint32_t key = keys[i];
    for (int pass = 0; pass < 4; ++pass) ++histogram[pass][(key >> (8 * pass)) & 0xFFu];
  }
  for (int pass = 0; pass < 4; ++pass) {
    uint32_t* bucket = histogram[pass];
    const int shift = 8 * pass;
    // A byte shared by every key leaves the order unchanged: skip the pass.
    if (bucket[(keys[0] >> shift) & 0xFFu] == static_cast<uint32_t>(count)) continue;
    uint32_t offset = 0;
    for (int b = 0; b < 256; ++b) {
      const uint32_t size = bucket[b];
      bucket[b] = offset;
      offset += size;
    }
    for (int64_t i = 0; i < count; ++i) {
      const uint32_t key = keys[i];
      const uint32_t slot = bucket[(key >> shift) & 0xFFu]++;
      keys_tmp[slot] = key;
      order_tmp[slot] = order[i];
    }
    std::swap(keys, keys_tmp);
    std::swap(order, order_tmp);
  }
  return order;
}

// ---- NMS as OpenCV's cv::dnn::NMSBoxes over Rect2d ----------------------------------------------
//
// A box is the Rect2d (x1, y1, float32(x2 - x1), float32(y2 - y1)) (what Immich v3 hands NMSBoxes).
// Overlap = 1.f - float(jaccardDistance(a, b)) with the distance in double: 0 when both areas sum to
// at most DBL_EPSILON, else 1 - inter / (area_a + area_b - inter), the intersection being empty
// when either rectangle is (width or height <= 0). A candidate survives when its overlap with every
// kept box is <= the float threshold (so NaN suppresses).

// Kept boxes in structure-of-arrays form: the inner NMS loop streams these, not the candidates.
struct KeptBoxes {
  double* x;
  double* y;
  double* w;
  double* h;
  double* x2;  // x + w, y + h (exact in double: both are float32 values)
  double* y2;
  double* area;
  // The float32 screen (see survives): edges widened outwards, and 1 where the area is <=
  // DBL_EPSILON.
  float* fx;
  float* fy;
  float* fx2;
  float* fy2;
  float* tiny;
};
constexpr int kKeptDoubles = 7;
constexpr int kKeptFloats = 5;

KeptBoxes take_kept(Arena& arena, int64_t count) {
  KeptBoxes kept;
  for (double** array : {&kept.x, &kept.y, &kept.w, &kept.h, &kept.x2, &kept.y2, &kept.area}) {
    *array = arena.take<double>(count);
  }
  for (float** array : {&kept.fx, &kept.fy, &kept.fx2, &kept.fy2, &kept.tiny}) {
    *array = arena.take<float>(count);
  }
  return kept;
}

// The float32 at or above / at or below `value`.
inline float float_up(double value) {
  const float f = static_cast<float>(value);
  return static_cast<double>(f) < value ? std::nextafter(f, std::numeric_limits<float>::infinity()) : f;
}
inline float float_down(double value) {
  const float f = static_cast<float>(value);
  return static_cast<double>(f) > value ? std::nextafter(f, -std::numeric_limits<float>::infinity()) : f;
}

// Margin of the float32 screen: far above the double rounding of any edge (|v| * 2^-52).
inline double screen_slack(double value) { return 1e-4 + 1e-6 * std::fabs(value); }

struct Rect {
  double x, y, w, h, area;
};

Rect rect_of(const float* b) {
  const double w = static_cast<double>(b[2] - b[0]);
  const double h = static_cast<double>(b[3] - b[1]);
  return Rect{b[0], b[1], w, h, w * h};
}

// OpenCV's `Rect_<double>::operator&` area: empty operands give 0; otherwise the overlap of the
// two extents, clamped to the narrower rectangle, 0 when not positive.
inline double intersection(double ax, double ay, double aw, double ah, const Rect& b) {
  if (aw <= 0.0 || ah <= 0.0 || b.w <= 0.0 || b.h <= 0.0) return 0.0;
  const bool a_left = ax < b.x, a_top = ay < b.y;
  const double lx = a_left ? ax : b.x, lw = a_left ? aw : b.w;
  const double rx = a_left ? b.x : ax, rw = a_left ? b.w : aw;
  const double ty = a_top ? ay : b.y, th = a_top ? ah : b.h;
  const double by = a_top ? b.y : ay, bh = a_top ? b.h : ah;
  if ((lx < 0.0 && lx + lw < rx) || (ty < 0.0 && ty + th < by)) return 0.0;
  const double iw = std::min(lw - (rx - lx), rw);
  const double ih = std::min(th - (by - ty), bh);
  if (iw <= 0.0 || ih <= 0.0) return 0.0;
  return iw * ih;
}

// True when kept box k suppresses the candidate.
inline bool overlaps(const KeptBoxes& kept, int64_t k, const Rect& c, float threshold) {
  const double sum = kept.area[k] + c.area;
  double distance = 0.0;
  if (!(sum <= std::numeric_limits<double>::epsilon())) {
    const double inter = intersection(kept.x[k], kept.y[k], kept.w[k], kept.h[k], c);
    distance = 1.0 - inter / (sum - inter);
  }
  const float overlap = 1.0f - static_cast<float>(distance);
  return !(overlap <= threshold);
}

#if defined(__GNUC__)
typedef float Screen4 __attribute__((vector_size(16)));
typedef int32_t Mask4 __attribute__((vector_size(16)));

inline Screen4 load_screen(const float* p) {
  Screen4 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
#endif

// True when the candidate overlaps none of the first `kept_count` kept boxes by more than the
// threshold. Most candidates of a crowd are far from most kept boxes: a float32 screen of the
// extents (widened by screen_slack, so it flags every pair whose exact intersection is not empty,
// and every pair with a kept area ~0) rules out kept boxes 4 at a time; flagged ones get the
// exact test.
inline bool survives(const KeptBoxes& kept, int64_t kept_count, const Rect& c, float threshold) {
  int64_t k = 0;
#if defined(__GNUC__)
  // Pairs with an empty intersection have overlap 0, which passes thresholds >= 0 only; a
  // candidate of area ~0 may be "identical" to a kept box of area ~0 anywhere.
  if (0.0f <= threshold && c.area > std::numeric_limits<double>::epsilon()) {
    const float x = float_down(c.x - screen_slack(c.x)), y = float_down(c.y - screen_slack(c.y));
    const double cx2 = c.x + c.w, cy2 = c.y + c.h;
    const float x2 = float_up(cx2 + screen_slack(cx2)), y2 = float_up(cy2 + screen_slack(cy2));
    const Screen4 vx = {x, x, x, x}, vy = {y, y, y, y};
    const Screen4 vx2 = {x2, x2, x2, x2}, vy2 = {y2, y2, y2, y2};
    const Screen4 zero = {0, 0, 0, 0};
    for (; k + 4 <= kept_count; k += 4) {
      const Mask4 near = ((load_screen(kept.fx2 + k) > vx) & (vx2 > load_screen(kept.fx + k)) &
                          (load_screen(kept.fy2 + k) > vy) & (vy2 > load_screen(kept.fy + k))) |
                         (load_screen(kept.tiny + k) > zero);
      if (!((near[0] | near[1]) | (near[2] | near[3]))) continue;
      for (int64_t j = 0; j < 4; ++j) {
        if (near[j] && overlaps(kept, k + j, c, threshold)) return false;
      }
    }
  }
#endif
  for (; k < kept_count; ++k) {
    if (overlaps(kept, k, c, threshold)) return false;
  }
  return true;
}

// Greedy NMS over boxes (AoS, 4 floats each) visited in `order` (descending score); candidates
// with a score <= 0 are never kept (NMSBoxes' score threshold 0). Writes kept box indices.
int64_t greedy(const float* boxes, const float* scores, const uint32_t* order, int64_t count,
               float threshold, const KeptBoxes& kept, uint32_t* kept_index) {
  int64_t kept_count = 0;
  for (int64_t p = 0; p < count; ++p) {
    const uint32_t j = order[p];
    if (!(scores[j] > 0.0f)) break;
    const Rect c = rect_of(boxes + 4 * static_cast<int64_t>(j));
    if (!survives(kept, kept_count, c, threshold)) continue;
    kept.x[kept_count] = c.x;
    kept.y[kept_count] = c.y;
    kept.w[kept_count] = c.w;
    kept.h[kept_count] = c.h;
    kept.x2[kept_count] = c.x + c.w;
    kept.y2[kept_count] = c.y + c.h;
    kept.area[kept_count] = c.area;
    kept.fx[kept_count] = float_down(c.x - screen_slack(c.x));
    kept.fy[kept_count] = float_down(c.y - screen_slack(c.y));
    kept.fx2[kept_count] = float_up(kept.x2[kept_count] + screen_slack(kept.x2[kept_count]));
    kept.fy2[kept_count] = float_up(kept.y2[kept_count] + screen_slack(kept.y2[kept_count]));
    kept.tiny[kept_count] = c.area <= std::numeric_limits<double>::epsilon() ? 1.0f : 0.0f;
    kept_index[kept_count] = j;
    ++kept_count;
  }
  return kept_count;
}

#if defined(__GNUC__)
// Blocks of scores with GCC/Clang vector extensions (SSE2 on x86-64, NEON on arm64).
typedef float Float4 __attribute__((vector_size(16)));
typedef int32_t Int4 __attribute__((vector_size(16)));

inline Float4 load4(const float* p) {
  Float4 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
#endif

// Calls visit(anchor) for every anchor whose score is >= min_score, in order. Candidates are
// typically about 1% of the anchors, so blocks of 8 scores are ruled out with one vector compare.
template <typename Visit>
void scan_scores(const float* scores, int64_t count, float min_score, Visit&& visit) {
  int64_t a = 0;
#if defined(__GNUC__)
  const Float4 limit = {min_score, min_score, min_score, min_score};
  for (; a + 8 <= count; a += 8) {
    const Int4 hit = (load4(scores + a) >= limit) | (load4(scores + a + 4) >= limit);
    if (!((hit[0] | hit[1]) | (hit[2] | hit[3]))) continue;
    for (int64_t b = a; b < a + 8; ++b) {
      if (scores[b] >= min_score) visit(b);
    }
  }
#endif
  for (; a < count; ++a) {
    if (scores[a] >= min_score) visit(a);
  }
}

// Appends the above-threshold anchors of one level whose score, box and landmarks are finite to
// the candidate arrays, up to `capacity` candidates in all.
int64_t decode_level(const ScrfdLevel& level, int32_t anchors_per_cell, float min_score,
                     float scale, float* boxes, float* scores, float* keypoints, int64_t n,
                     int64_t capacity) {
  const float stride = static_cast<float>(level.stride);
  const uint32_t anchors = static_cast<uint32_t>(anchors_per_cell);
  const uint32_t grid_width = static_cast<uint32_t>(level.grid_width);
  scan_scores(level.scores, level.count, min_score, [&](int64_t a) {
    const float score = level.scores[a];
    if (n >= capacity || !std::isfinite(score)) return;
    // 32-bit division: anchor indices are below 2^32 (checked by the caller).
    const uint32_t cell = static_cast<uint32_t>(a) / anchors;
    const float cx = static_cast<float>(cell % grid_width) * stride;
    const float cy = static_cast<float>(cell / grid_width) * stride;
    const float* d = level.distances + 4 * a;
    const float* k = level.keypoints + 10 * a;
    float values[16] = {};
    values[0] = cx - d[0] * stride;
    values[1] = cy - d[1] * stride;
    values[2] = cx + d[2] * stride;
    values[3] = cy + d[3] * stride;
    for (int i = 0; i < 5; ++i) {
      values[4 + 2 * i] = cx + k[2 * i] * stride;
      values[5 + 2 * i] = cy + k[2 * i + 1] * stride;
    }
    bool finite = true;
    for (float& v : values) {
      v = v / scale;
      finite = finite && (v - v == 0.0f);  // false for infinity and NaN
    }
    if (!finite) return;
    std::memcpy(boxes + 4 * n, values, 4 * sizeof(float));
    std::memcpy(keypoints + 10 * n, values + 4, 10 * sizeof(float));
    scores[n] = score;
    ++n;
  });
  return n;
}

}  // namespace

int64_t count_candidates(const ScrfdLevel* levels, int32_t level_count, float min_score) noexcept {
  int64_t n = 0;
  for (int32_t l = 0; l < level_count; ++l) {
    scan_scores(levels[l].scores, levels[l].count, min_score,
                [&](int64_t a) { n += std::isfinite(levels[l].scores[a]) ? 1 : 0; });
  }
  return n;
}

size_t decode_workspace_bytes(int64_t capacity) noexcept {
  const size_t n = static_cast<size_t>(capacity < 0 ? 0 : capacity);
  // candidates (4 + 1 + 10 floats), sort scratch, kept SoA and kept indices.
  return round_up(4 * n * sizeof(float)) + round_up(n * sizeof(float)) +
         round_up(10 * n * sizeof(float)) + sort_workspace_bytes(capacity) +
         kKeptDoubles * round_up(n * sizeof(double)) + kKeptFloats * round_up(n * sizeof(float)) +
         round_up(n * sizeof(uint32_t)) + kAlign;
}

int64_t decode_scrfd(const ScrfdLevel* levels, int32_t level_count, int32_t anchors_per_cell,
                     float min_score, float scale, float iou_threshold, float* out_boxes,
                     float* out_scores, float* out_keypoints, int64_t capacity,
                     unsigned char* workspace) noexcept {
  if (capacity <= 0 || anchors_per_cell <= 0) return 0;
  Arena arena(workspace);
  float* boxes = arena.take<float>(4 * capacity);
  float* scores = arena.take<float>(capacity);
  float* keypoints = arena.take<float>(10 * capacity);
  uint32_t* sort_scratch = arena.take<uint32_t>(sort_workspace_bytes(capacity) / sizeof(uint32_t));
  const KeptBoxes kept = take_kept(arena, capacity);
  uint32_t* kept_index = arena.take<uint32_t>(capacity);

  int64_t n = 0;
  for (int32_t l = 0; l < level_count; ++l) {
    n = decode_level(levels[l], anchors_per_cell, min_score, scale, boxes, scores, keypoints, n,
                     capacity);
  }
  const uint32_t* order = sort_descending(scores, n, sort_scratch);
  const int64_t kept_count =
      greedy(boxes, scores, order, n, iou_threshold, kept, kept_index);
  for (int64_t r = 0; r < kept_count; ++r) {
    const int64_t j = kept_index[r];
    std::memcpy(out_boxes + 4 * r, boxes + 4 * j, 4 * sizeof(float));
    std::memcpy(out_keypoints + 10 * r, keypoints + 10 * j, 10 * sizeof(float));
    out_scores[r] = scores[j];
  }
  return kept_count;
}

}  // namespace immich::detect
