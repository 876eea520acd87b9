// Detector input: Pillow-LANCZOS resize (the image kernel's resampler) into a uint8 scratch image,
// then BGR planes of (v - 0.5f) * (1 / 127.5f) through a 256-entry table, then padding.
#include <algorithm>
#include <new>
#include <vector>

#include "immich/image.h"
#include "immich/ocr.h"

namespace immich {
namespace ocr {

Status det_preprocess(const uint8_t* rgb, int64_t height, int64_t width, int64_t row_stride,
                      int64_t resized_h, int64_t resized_w, float* out, int64_t out_h,
                      int64_t out_w, float pad_value) noexcept {
  if (rgb == nullptr || out == nullptr || height <= 0 || width <= 0 || resized_h <= 0 ||
      resized_w <= 0 || resized_h > out_h || resized_w > out_w) {
    return kInvalidArgument;
  }
  const image::Source src{rgb, height, width, row_stride};
  const image::Geometry geometry{resized_w, resized_h, 0, 0, resized_w, resized_h,
                                 static_cast<double>(resized_h) / static_cast<double>(height)};
  std::vector<uint8_t> resized;
  try {
    resized.resize(static_cast<size_t>(resized_h * resized_w * 3));
  } catch (...) {
    return kOutOfMemory;
  }
  const image::Status status = image::resize_hwc(src, geometry, image::kLanczos, resized.data(),
                                                 resized_h, resized_w);
  if (status != image::kOk) return status == image::kOutOfMemory ? kOutOfMemory : kInvalidArgument;

  // Immich v3: float32 pixels, minus 0.5f, times float32(1) / (0.5f * 255) — one rounding each.
  const float inv_std = 1.0f / (0.5f * 255.0f);
  float table[256];
  for (int v = 0; v < 256; ++v) table[v] = (static_cast<float>(v) - 0.5f) * inv_std;
  const int64_t plane = out_h * out_w;
  for (int64_t y = 0; y < resized_h; ++y) {
    const uint8_t* row = resized.data() + y * resized_w * 3;
    float* b = out + y * out_w;
    float* g = b + plane;
    float* r = g + plane;
    for (int64_t x = 0; x < resized_w; ++x) {
      r[x] = table[row[3 * x]];
      g[x] = table[row[3 * x + 1]];
      b[x] = table[row[3 * x + 2]];
    }
    if (resized_w < out_w) {
      for (int c = 0; c < 3; ++c) std::fill(b + c * plane + resized_w, b + c * plane + out_w, pad_value);
    }
  }
  for (int c = 0; c < 3; ++c) {
    std::fill(out + c * plane + resized_h * out_w, out + (c + 1) * plane, pad_value);
  }
  return kOk;
}

}  // namespace ocr
}  // namespace immich
