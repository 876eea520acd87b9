// SCRFD face-detector post-processing: anchor decode, score threshold, rescale, greedy NMS.
//
// Plain C++17, no Python: pointers and sizes in, results written into caller buffers, no
// exceptions, no allocation (scratch memory comes from the caller, sized by *_workspace_bytes).
//
// Arithmetic follows Immich v3's SCRFD post-processing step by step (float32 distance times stride,
// then centre minus/plus distance, then division by the letterbox scale; NMS as OpenCV's NMSBoxes
// computes it) so that boxes and NMS decisions are bit-identical to it, including pairs whose
// overlap lands exactly on the threshold.
#pragma once

#include <cstddef>
#include <cstdint>

namespace immich::detect {

// The three heads of one SCRFD output level (one stride), all C-contiguous float32.
struct ScrfdLevel {
  const float* scores;     // (count,)      face probability per anchor
  const float* distances;  // (count, 4)    left, top, right, bottom distances in stride units
  const float* keypoints;  // (count, 10)   5 (dx, dy) landmark offsets in stride units
  int64_t count;           // grid_height * grid_width * anchors_per_cell
  int64_t grid_width;      // input_width / stride (anchor centres run row-major over the grid)
  int32_t stride;          // pixels of model input per grid cell
};

// Number of anchors with a finite score >= min_score: an upper bound on decode_scrfd's candidates
// and detections, so buffers can be sized to the image instead of to the 16,800 anchors.
int64_t count_candidates(const ScrfdLevel* levels, int32_t level_count, float min_score) noexcept;

// Bytes of scratch memory decode_scrfd needs for `capacity` candidates.
size_t decode_workspace_bytes(int64_t capacity) noexcept;

// Decodes every level, keeps anchors with score >= min_score whose decoded box and landmarks are
// finite, divides boxes and landmarks by `scale` (model-input pixels per source pixel), sorts by
// score descending (ties keep level-then-anchor order) and runs greedy NMS with the semantics of
// OpenCV's cv::dnn::NMSBoxes over Rect2d (x1, y1, x2 - x1, y2 - y1), as Immich v3 calls it with
// score threshold 0: candidates scoring <= 0 are dropped; a candidate is kept unless
// 1.f - float(1 - inter / (area_a + area_b - inter)) (in double; 1 when both areas are ~0) with a
// kept box is not <= iou_threshold.
//
// `capacity` is the room for candidates, normally count_candidates(...); candidates beyond it
// are ignored. Outputs (each with room for `capacity` rows; the first `return value` rows are
// written):
//   out_boxes (n, 4) x1, y1, x2, y2 in source pixels; out_scores (n,); out_keypoints (n, 10)
//   as (x0, y0, ..., x4, y4) in source pixels. Rows are in descending score order.
// `workspace` must hold decode_workspace_bytes(capacity) bytes, aligned to 8 bytes.
int64_t decode_scrfd(const ScrfdLevel* levels, int32_t level_count, int32_t anchors_per_cell,
                     float min_score, float scale, float iou_threshold, float* out_boxes,
                     float* out_scores, float* out_keypoints, int64_t capacity,
                     unsigned char* workspace) noexcept;

}  // namespace immich::detect
