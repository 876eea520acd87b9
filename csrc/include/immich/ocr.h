// OCR pre/post-processing kernels (PP-OCR detector + recognizer as RapidOCR / Immich v3 run them):
// detector input, DB post-processing (binarize, dilate, contours, min-area rectangles, scores,
// round-joined unclip, scaling, ordering), recognizer crops written straight into a batch buffer,
// and CTC greedy decoding. Plain C++17: no Python, no exceptions escape, callers own every output
// buffer; each function only reads its inputs and writes its outputs, so calls may run on many
// threads at once.
#ifndef IMMICH_OCR_H
#define IMMICH_OCR_H

#include <cstdint>

namespace immich {
namespace ocr {

enum Status : int32_t {
  kOk = 0,
  kInvalidArgument = 1,  // sizes/pointers out of range; nothing meaningful was written
  kOutOfMemory = 2,      // scratch memory could not be reserved
};

// Detector input. Resizes the packed RGB image (rows row_stride bytes apart) to resized_h x
// resized_w with Pillow's LANCZOS (bit-exact), converts to BGR, maps each sample v to
// (float(v) - 0.5f) * (1.0f / 127.5f) as Immich v3 does, and writes the three planes into
// `out` (3 x out_h x out_w, C-contiguous) at the top-left; every other element gets pad_value.
Status det_preprocess(const uint8_t* rgb, int64_t height, int64_t width, int64_t row_stride,
                      int64_t resized_h, int64_t resized_w, float* out, int64_t out_h,
                      int64_t out_w, float pad_value) noexcept;

// A (h x w) float32 map: element (y, x) at data[y * row_stride + x] (row_stride in elements).
struct ProbMap {
  const float* data;
  int64_t height;
  int64_t width;
  int64_t row_stride;
};

struct DbParams {
  float threshold;       // binarization: prob > threshold
  double min_score;      // boxes scoring below are dropped
  double unclip_ratio;   // unclip distance = area * ratio / perimeter
  int32_t max_candidates;
  int32_t slow_score;    // 0: mean inside the min-area quad ("fast"); 1: inside the contour ("slow")
  int64_t src_h;         // boxes are returned in these pixels
  int64_t src_w;
};

// DB post-processing end to end (RapidOCR 3.x DBPostProcess + filter_det_res + Immich's reading
// order). Writes up to `capacity` boxes: boxes[i*8 .. i*8+7] = x,y of TL,TR,BR,BL (whole pixels),
// scores[i]. *count receives the number written. capacity >= max_candidates never truncates.
Status db_boxes(const ProbMap& prob, const DbParams& params, float* boxes, float* scores,
                int64_t capacity, int64_t* count) noexcept;

// Recognizer crop size for one quad (x,y of 4 corners, RapidOCR's order), after the 90° rotation
// applied when h / w >= 1.5: *w = int(max(|p0p1|, |p2p3|)), *h = int(max(|p0p3|, |p1p2|)).
// Non-finite corners give 0 x 0.
void crop_size(const float* quad, int32_t* w, int32_t* h) noexcept;

// One recognizer batch slot: perspective crop of `quad` from the RGB image (bicubic A = -0.75,
// border replicate, as cv2.warpPerspective), rotation by 90° counter-clockwise (np.rot90) when
// h / w >= 1.5, BGR, bilinear resize (cv2.resize INTER_LINEAR) to out_h high x min(batch_width,
// ceil(out_h * w / h)) wide, (v / 255 - 0.5) / 0.5 written into `out` (3 x out_h x out_w); columns
// past the resized width are zero. A quad with a zero-size crop leaves the slot all zero.
Status rec_crop(const uint8_t* rgb, int64_t height, int64_t width, int64_t row_stride,
                const float* quad, int64_t batch_width, float* out, int64_t out_h,
                int64_t out_w) noexcept;

// CTC greedy decoding of n rows of (t x c) probabilities (row i, step s, class k at
// probs[i * stride_n + s * stride_t + k * stride_c], strides in elements). For each row:
// labels[i * t .. i * t + lengths[i] - 1] are the kept class indices (repeats collapsed, blanks =
// class 0 removed) and mean_prob[i] the mean of their probabilities (0 when none). Returns false
// when some probability is NaN or infinite (the outputs are then meaningless).
bool ctc_greedy(const float* probs, int64_t n, int64_t t, int64_t c, int64_t stride_n,
                int64_t stride_t, int64_t stride_c, int32_t* labels, int32_t* lengths,
                float* mean_prob) noexcept;

}  // namespace ocr
}  // namespace immich

#endif  // IMMICH_OCR_H
