// Face alignment for ArcFace-style recognizers: 5-point similarity transform onto the 112x112
// template, then a bilinear affine warp fused with normalization into the model's batch buffer.
//
// Plain C++17, no Python: pointers and sizes in, results written into caller buffers, no
// exceptions, no allocation.
#pragma once

#include <cstdint>

namespace immich::align {

constexpr int kCropSize = 112;
constexpr int kLandmarks = 5;

// ArcFace reference landmarks in 112x112 crop pixels: left eye, right eye, nose tip, left and
// right mouth corners, as (x, y).
extern const double kArcfaceTemplate[kLandmarks * 2];

// Least-squares similarity transform (rotation, uniform scale, translation; never a reflection)
// taking `landmarks` (5 x (x, y), source pixels) onto kArcfaceTemplate. This is Umeyama's
// estimate, which in 2D has the closed form used here. Writes the forward 2x3 matrix
// [[a, -b, tx], [b, a, ty]] (source -> crop, row-major) into `matrix` and returns true.
// Degenerate input (a non-finite landmark, or all landmarks within 1e-6 px RMS of their centroid,
// or a non-finite result) writes an all-zero matrix and returns false.
bool similarity_transform(const float* landmarks, double* matrix) noexcept;

// Warps one face. `image` is (height, width, 3) uint8 RGB with `row_stride` bytes per row.
// `matrix` is a forward 2x3 source -> crop transform; crop pixel (x, y) samples the source at
// M^-1 (x, y) with bilinear interpolation, pixel centres at integer coordinates (cv2.warpAffine's
// convention), taps outside the image reading 0 (BORDER_CONSTANT 0). The interpolated value is
// rounded to the nearest integer (what an 8-bit warp stores). A matrix that cannot be inverted
// produces the crop of an all-black image.
//
// warp_planar: writes (pixel - mean) * scale, evaluated in float32 (cv2.dnn.blobFromImage's
//   formula, scale = 1 / std), as 3 planes of 112x112 floats
//   starting at `out`, plane p at out + p * 112 * 112 (one NCHW slot, RGB order).
// warp_interleaved: writes 112x112x3 uint8 at `out` (one NHWC slot).
void warp_planar(const uint8_t* image, int64_t height, int64_t width, int64_t row_stride,
                 const double* matrix, float mean, float scale, float* out) noexcept;
void warp_interleaved(const uint8_t* image, int64_t height, int64_t width, int64_t row_stride,
                      const double* matrix, uint8_t* out) noexcept;

// Aligns `face_count` faces: landmarks (face_count, 5, 2) float32 source pixels. Face i is
// written to out_planar + i * 3 * 112 * 112 as (pixel - mean) * scale, or, when out_planar is null,
// to out_interleaved + i * 112 * 112 * 3 as raw uint8 (see warp_planar / warp_interleaved). Degenerate landmarks (see
// similarity_transform) give the crop of an all-black image: every value (0 - mean) * scale, or 0.
void align_faces(const uint8_t* image, int64_t height, int64_t width, int64_t row_stride,
                 const float* landmarks, int64_t face_count, float mean, float scale,
                 float* out_planar, uint8_t* out_interleaved) noexcept;

// Test hook, process-wide: false forces the portable loop (what CPUs without AVX2, e.g. ARM
// boards, run) instead of the AVX2 one; both write bit-identical crops. Returns the previous
// setting. vector_kernels() names the loop warps use now: "avx2" or "portable" (images whose
// byte offsets do not fit int32 always take the portable loop).
bool set_vector_kernels(bool enabled) noexcept;
const char* vector_kernels() noexcept;

}  // namespace immich::align
