// Image preprocessing kernel: separable resample of uint8 RGB images, fused with the crop/letterbox
// geometry the models need and with per-channel normalisation into a caller's batch buffer.
//
// The antialiased filters follow Pillow's `Image.resize` convolution (filter shapes, support
// widened by the scale factor when downscaling, pixel-centre mapping, weight normalisation, 22-bit
// fixed-point weights, a uint8-rounded intermediate between the two passes, and Pillow 13's choice
// of which pass runs first) so results match Pillow to the bit; kOpenCvLinear matches OpenCV's
// `cv::resize(INTER_LINEAR)` to the bit. Only the output pixels that survive a crop are computed. Plain C++17: no Python, no exceptions escape, callers own every output buffer.
#ifndef IMMICH_IMAGE_H
#define IMMICH_IMAGE_H

#include <cstdint>

namespace immich {
namespace image {

// kBilinear, kBicubic, kLanczos: Pillow's antialiased filters. kOpenCvLinear: OpenCV's
// INTER_LINEAR (2 taps per axis, no antialiasing, OpenCV's 11-bit fixed point), bit-exact.
enum Filter : int32_t { kBilinear = 0, kBicubic = 1, kLanczos = 2, kOpenCvLinear = 3 };

// kShortest: short side -> size, centre crop (CLIP, as Immich's PIL code does it).
// kSquash: stretch straight to the output size.
// kLetterbox: keep aspect so the image fits, paste top-left, zero pixels elsewhere (SCRFD: the long
// side fills the canvas, the other is truncated, as insightface and Immich v3 compute it).
enum Mode : int32_t { kShortest = 0, kSquash = 1, kLetterbox = 2 };

enum Status : int32_t {
  kOk = 0,
  kInvalidArgument = 1,  // sizes/pointers/enums out of range; nothing was written
  kOutOfMemory = 2,      // scratch memory could not be reserved; nothing was written
};

// Where the output pixels come from. All sizes in pixels.
struct Geometry {
  int64_t resized_w;  // size of the whole resized image (before any crop)
  int64_t resized_h;
  int64_t crop_x;     // top-left corner, in the resized image, of the region that is written
  int64_t crop_y;
  int64_t region_w;   // size of that region; it lands at the output's top-left corner and the
  int64_t region_h;   // rest of the output (letterbox only) holds zero pixels
  double scale;       // resized_h / source height (insightface's det_scale for letterbox)
};

// Computes the geometry for `mode`. kShortest needs dst_h == dst_w. Returns kInvalidArgument for
// non-positive sizes or a non-square kShortest.
Status plan_geometry(Mode mode, int64_t src_h, int64_t src_w, int64_t dst_h, int64_t dst_w,
                     Geometry* geometry) noexcept;

// A uint8 RGB image: pixel (y, x) channel c is at data[y * row_stride + x * 3 + c].
// row_stride is in bytes and may be larger than width * 3 (a view into a bigger image) or negative.
struct Source {
  const uint8_t* data;
  int64_t height;
  int64_t width;
  int64_t row_stride;
};

// value = (pixel * scale - mean[c]) / std[c], pixel in 0..255.
struct Normalization {
  float scale;
  float mean[3];
  float std[3];
};

// Writes one float32 CHW image of out_h x out_w (3 contiguous planes, C-contiguous) at `out`, on
// the calling thread (callers parallelise across images, not within one).
Status resize_normalize_chw(const Source& src, const Geometry& geometry, Filter filter,
                            const Normalization& norm, float* out, int64_t out_h,
                            int64_t out_w) noexcept;

// Writes one uint8 HWC image of out_h x out_w (C-contiguous, raw RGB) at `out`.
Status resize_hwc(const Source& src, const Geometry& geometry, Filter filter, uint8_t* out,
                  int64_t out_h, int64_t out_w) noexcept;

// Vector (AVX2) inner loops are used when the CPU has them; false forces the portable C++ loops
// (they compute the same integers; tests compare the two). Process-wide; returns the old value.
bool set_vector_kernels(bool enabled) noexcept;

}  // namespace image
}  // namespace immich

#endif  // IMMICH_IMAGE_H
