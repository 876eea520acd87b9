// Geometry and the fused resample driver: horizontal pass (only the source rows the vertical pass
// reads, only the output columns that survive the crop) into a uint8 intermediate, then the
// vertical pass straight into the caller's output through a per-row sink that normalises.
#include <algorithm>
#include <cstring>
#include <new>
#include <vector>

#include "image_internal.h"
#include "immich/image.h"

namespace immich {
namespace image {
namespace {

using detail::AxisWeights;

// Writes rows of normalised float32 into 3 planes; pixels right of / below the region get the
// normalised value of a zero pixel. (p * scale - mean) / std is applied as p * gain + bias with
// gain = scale / std and bias = -mean / std, like Immich's own normalisation.
class ChwSink final : public detail::RowSink {
 public:
  ChwSink(const Normalization& norm, float* out, int64_t out_h, int64_t out_w)
      : out_(out), plane_(out_h * out_w), out_w_(out_w), convert_(detail::pick_planar()) {
    for (int c = 0; c < 3; ++c) {
      const double std_c = static_cast<double>(norm.std[c]);
      gain_[c] = static_cast<float>(static_cast<double>(norm.scale) / std_c);
      bias_[c] = static_cast<float>(-static_cast<double>(norm.mean[c]) / std_c);
    }
  }
  void row(int64_t y, const uint8_t* rgb, int64_t width) const noexcept override {
    float* r = out_ + y * out_w_;
    convert_(rgb, width, gain_, bias_, r, r + plane_, r + 2 * plane_);
    fill(y, width);
  }
  void fill(int64_t y, int64_t from_x) const noexcept override {
    float* r = out_ + y * out_w_;
    for (int c = 0; c < 3; ++c) std::fill(r + c * plane_ + from_x, r + c * plane_ + out_w_, bias_[c]);
  }

 private:
  float* out_;
  int64_t plane_;
  int64_t out_w_;
  detail::PlanarRowFn convert_;
  float gain_[3];
  float bias_[3];
};

class HwcSink final : public detail::RowSink {
 public:
  HwcSink(uint8_t* out, int64_t out_w) : out_(out), out_w_(out_w) {}
  void row(int64_t y, const uint8_t* rgb, int64_t width) const noexcept override {
    std::memcpy(out_ + y * out_w_ * 3, rgb, static_cast<size_t>(width * 3));
    fill(y, width);
  }
  void fill(int64_t y, int64_t from_x) const noexcept override {
    uint8_t* r = out_ + y * out_w_ * 3;
    std::memset(r + from_x * 3, 0, static_cast<size_t>((out_w_ - from_x) * 3));
  }

 private:
  uint8_t* out_;
  int64_t out_w_;
};

bool valid_source(const Source& src) noexcept {
  return src.data != nullptr && src.height > 0 && src.width > 0;
}

bool valid_geometry(const Source& src, const Geometry& g, int64_t out_h, int64_t out_w) noexcept {
  return g.resized_w > 0 && g.resized_h > 0 && g.region_w > 0 && g.region_h > 0 &&
         g.crop_x >= 0 && g.crop_y >= 0 && g.crop_x + g.region_w <= g.resized_w &&
         g.crop_y + g.region_h <= g.resized_h && g.region_w <= out_w && g.region_h <= out_h &&
         // Without a horizontal/vertical resample the region is read from the source directly.
         (g.resized_w != src.width || g.crop_x + g.region_w <= src.width) &&
         (g.resized_h != src.height || g.crop_y + g.region_h <= src.height);
}

// Pillow (from 13.0) runs the vertical pass first when the height shrinks by more than twice as
// many pixels as the width does; the order changes the uint8 rounding of the intermediate.
bool vertical_first(const Source& src, const Geometry& g) noexcept {
  return g.resized_h < src.height &&
         src.height - g.resized_h > 2 * (src.width - g.resized_w);
}

// Vertical pass for output row i of `w`. `base` holds source rows from `row0` on: source row r
// is at base + (r - row0) * stride.
inline void vertical_row(detail::VerticalRowFn fn, const AxisWeights& w, int64_t i,
                         const uint8_t* base, int64_t row0, int64_t stride, int64_t n,
                         uint8_t* out) noexcept {
  fn(base + (w.start[static_cast<size_t>(i)] - row0) * stride, stride,
     w.coeffs.data() + i * w.stride, w.count[static_cast<size_t>(i)], n, out);
}

// Horizontal pass over `rows` (1..kRowBlock) consecutive rows: source row b at src + b * src_stride,
// output row b at out + b * out_stride.
void horizontal_block(const detail::HorizontalKernel& kernel, const uint8_t* src, int64_t src_stride,
                      int64_t src_width, const AxisWeights& w, uint8_t* out, int64_t out_stride,
                      int64_t rows) noexcept {
  const uint8_t* in_rows[detail::kRowBlock];
  uint8_t* out_rows[detail::kRowBlock];
  for (int64_t b = 0; b < detail::kRowBlock; ++b) {
    const int64_t r = std::min(b, rows - 1);
    in_rows[b] = src + r * src_stride;
    out_rows[b] = out + r * out_stride;
  }
  kernel.rows(in_rows, src_width, w, out_rows);
}

template <class Sink>
Status run(const Source& src, const Geometry& g, Filter filter, const Sink& sink, int64_t out_h,
           int64_t out_w) noexcept {
  if (!valid_source(src) || out_h <= 0 || out_w <= 0 || !valid_geometry(src, g, out_h, out_w) ||
      filter < kBilinear || filter > kOpenCvLinear) {
    return kInvalidArgument;
  }
  if (filter == kOpenCvLinear) return detail::resize_opencv_linear(src, g, sink, out_h);
  // Like Pillow, an axis whose size does not change is not resampled at all.
  const bool need_h = g.resized_w != src.width;
  const bool need_v = g.resized_h != src.height;
  const bool v_first = need_h && need_v && vertical_first(src, g);
  const int64_t width3 = g.region_w * 3;
  AxisWeights wx, wy;
  std::vector<uint8_t> intermediate;
  std::vector<uint8_t> rowbuf;
  const detail::HorizontalKernel horizontal = detail::pick_horizontal();
  const detail::VerticalRowFn vertical = detail::pick_vertical();
  // Source rows/columns the first pass reads.
  int64_t row_lo = g.crop_y, row_hi = g.crop_y + g.region_h;
  int64_t col_lo = g.crop_x, col_hi = g.crop_x + g.region_w;
  try {
    if (need_v) {
      detail::build_axis_weights(filter, src.height, g.resized_h, g.crop_y, g.region_h, &wy);
      row_lo = wy.start.front();
      row_hi = 0;
      for (size_t i = 0; i < wy.start.size(); ++i) row_hi = std::max(row_hi, wy.start[i] + wy.count[i]);
    }
    if (need_h) {
      detail::build_axis_weights(filter, src.width, g.resized_w, g.crop_x, g.region_w, &wx);
      col_lo = wx.start.front();
      col_hi = 0;
      for (size_t i = 0; i < wx.start.size(); ++i) col_hi = std::max(col_hi, wx.start[i] + wx.count[i]);
      horizontal.prepare(&wx);
    }
    if (v_first) {
      // The horizontal pass then reads the intermediate, whose column 0 is source column col_lo.
      for (auto& s : wx.start) s -= col_lo;
      intermediate.resize(static_cast<size_t>(g.region_h * (col_hi - col_lo) * 3));
    } else if (need_h) {
      intermediate.resize(static_cast<size_t>((row_hi - row_lo) * width3));
    }
    rowbuf.resize(static_cast<size_t>(detail::kRowBlock * width3));
  } catch (...) {
    return kOutOfMemory;
  }
  if (v_first) {
    const int64_t inter_w = col_hi - col_lo;
    const int64_t inter_bytes = inter_w * 3;
    uint8_t* tmp = intermediate.data();
    for (int64_t y = 0; y < g.region_h; ++y) {
      vertical_row(vertical, wy, y, src.data + col_lo * 3, 0, src.row_stride, inter_bytes,
                   tmp + y * inter_bytes);
    }
    uint8_t* block = rowbuf.data();
    for (int64_t y = 0; y < g.region_h; y += detail::kRowBlock) {
      const int64_t rows = std::min<int64_t>(detail::kRowBlock, g.region_h - y);
      horizontal_block(horizontal, tmp + y * inter_bytes, inter_bytes, inter_w, wx, block, width3,
                       rows);
      for (int64_t b = 0; b < rows; ++b) sink.row(y + b, block + b * width3, g.region_w);
    }
    for (int64_t y = g.region_h; y < out_h; ++y) sink.fill(y, 0);
    return kOk;
  }

  // Horizontal pass first: the vertical pass reads the intermediate (which starts at source row
  // row_lo), or the source itself.
  const uint8_t* in_base;
  int64_t in_row0, in_stride;
  if (need_h) {
    uint8_t* tmp = intermediate.data();
    for (int64_t r = 0; r < row_hi - row_lo; r += detail::kRowBlock) {
      horizontal_block(horizontal, src.data + (row_lo + r) * src.row_stride, src.row_stride,
                       src.width, wx, tmp + r * width3, width3,
                       std::min<int64_t>(detail::kRowBlock, row_hi - row_lo - r));
    }
    in_base = tmp;
    in_row0 = row_lo;
    in_stride = width3;
  } else {
    in_base = src.data + g.crop_x * 3;
    in_row0 = 0;
    in_stride = src.row_stride;
  }
  for (int64_t y = 0; y < out_h; ++y) {
    if (y >= g.region_h) {
      sink.fill(y, 0);
    } else if (!need_v) {
      sink.row(y, in_base + (g.crop_y + y - in_row0) * in_stride, g.region_w);
    } else {
      vertical_row(vertical, wy, y, in_base, in_row0, in_stride, width3, rowbuf.data());
      sink.row(y, rowbuf.data(), g.region_w);
    }
  }
  return kOk;
}

}  // namespace

Status plan_geometry(Mode mode, int64_t src_h, int64_t src_w, int64_t dst_h, int64_t dst_w,
                     Geometry* g) noexcept {
  if (g == nullptr || src_h <= 0 || src_w <= 0 || dst_h <= 0 || dst_w <= 0) return kInvalidArgument;
  const double h = static_cast<double>(src_h), w = static_cast<double>(src_w);
  switch (mode) {
    case kShortest: {
      if (dst_h != dst_w) return kInvalidArgument;
      // Immich: short side = S, long side = int(long / short * S), then
      // left = int(width / 2 - S / 2), top = int(height / 2 - S / 2).
      const int64_t s = dst_h;
      if (src_w < src_h) {
        g->resized_w = s;
        g->resized_h = static_cast<int64_t>(h / w * static_cast<double>(s));
      } else {
        g->resized_w = static_cast<int64_t>(w / h * static_cast<double>(s));
        g->resized_h = s;
      }
      const double half = static_cast<double>(s) / 2.0;
      g->crop_x = static_cast<int64_t>(static_cast<double>(g->resized_w) / 2.0 - half);
      g->crop_y = static_cast<int64_t>(static_cast<double>(g->resized_h) / 2.0 - half);
      g->region_w = s;
      g->region_h = s;
      break;
    }
    case kSquash:
      g->resized_w = dst_w;
      g->resized_h = dst_h;
      g->crop_x = g->crop_y = 0;
      g->region_w = dst_w;
      g->region_h = dst_h;
      break;
    case kLetterbox: {
      // insightface: compare aspect ratios, the limiting side fills the canvas, the other is
      // truncated. A side that truncates to zero is kept at one pixel.
      const double im_ratio = h / w;
      const double model_ratio = static_cast<double>(dst_h) / static_cast<double>(dst_w);
      int64_t nw, nh;
      if (im_ratio > model_ratio) {
        nh = dst_h;
        nw = static_cast<int64_t>(static_cast<double>(nh) / im_ratio);
      } else {
        nw = dst_w;
        nh = static_cast<int64_t>(static_cast<double>(nw) * im_ratio);
      }
      g->resized_w = std::max<int64_t>(1, nw);
      g->resized_h = std::max<int64_t>(1, nh);
      g->crop_x = g->crop_y = 0;
      g->region_w = g->resized_w;
      g->region_h = g->resized_h;
      break;
    }
    default:
      return kInvalidArgument;
  }
  if (g->resized_w <= 0 || g->resized_h <= 0) return kInvalidArgument;
  g->scale = static_cast<double>(g->resized_h) / h;
  return kOk;
}

Status resize_normalize_chw(const Source& src, const Geometry& geometry, Filter filter,
                            const Normalization& norm, float* out, int64_t out_h,
                            int64_t out_w) noexcept {
  if (out == nullptr || out_h <= 0 || out_w <= 0) return kInvalidArgument;
  const ChwSink sink(norm, out, out_h, out_w);
  return run(src, geometry, filter, sink, out_h, out_w);
}

Status resize_hwc(const Source& src, const Geometry& geometry, Filter filter, uint8_t* out,
                  int64_t out_h, int64_t out_w) noexcept {
  if (out == nullptr) return kInvalidArgument;
  const HwcSink sink(out, out_w);
  return run(src, geometry, filter, sink, out_h, out_w);
}

}  // namespace image
}  // namespace immich
