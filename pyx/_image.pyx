# cython: language_level=3, boundscheck=False, wraparound=False, embedsignature=True, autotestdict=False
"""Thin wrappers over csrc/kernels/image*.cpp. The façade immich_ml.ops.image validates first."""
from libc.stdint cimport int64_t, uint8_t

cimport image


def plan(int mode, int64_t src_h, int64_t src_w, int64_t dst_h, int64_t dst_w):
    """Geometry tuple (status, resized_w, resized_h, crop_x, crop_y, region_w, region_h, scale)."""
    cdef image.Geometry g
    cdef int status = image.plan_geometry(<image.Mode>mode, src_h, src_w, dst_h, dst_w, &g)
    if status != 0:
        return (status, 0, 0, 0, 0, 0, 0, 0.0)
    return (status, g.resized_w, g.resized_h, g.crop_x, g.crop_y, g.region_w, g.region_h, g.scale)


cdef image.Source _source(const uint8_t[:, :, :] img) noexcept:
    cdef image.Source src
    src.data = &img[0, 0, 0]
    src.height = img.shape[0]
    src.width = img.shape[1]
    src.row_stride = img.strides[0]
    return src


cdef image.Geometry _geometry(tuple geometry) except *:
    cdef image.Geometry g
    g.resized_w, g.resized_h, g.crop_x, g.crop_y, g.region_w, g.region_h, g.scale = geometry
    return g


def resize_normalize_chw(const uint8_t[:, :, :] img, float[:, :, :, ::1] out, Py_ssize_t index,
                         tuple geometry, int filter, float scale, tuple mean, tuple std):
    """Fills out[index] (3, H, W) float32; returns the kernel status (0 = ok)."""
    cdef image.Source src = _source(img)
    cdef image.Geometry g = _geometry(geometry)
    cdef image.Normalization norm
    norm.scale = scale
    cdef int c
    for c in range(3):
        norm.mean[c] = mean[c]
        norm.std[c] = std[c]
    cdef float* dst = &out[index, 0, 0, 0]
    cdef int64_t out_h = out.shape[2]
    cdef int64_t out_w = out.shape[3]
    cdef int status
    with nogil:
        status = image.resize_normalize_chw(src, g, <image.Filter>filter, norm, dst, out_h, out_w)
    return status


def resize_hwc(const uint8_t[:, :, :] img, uint8_t[:, :, :, ::1] out, Py_ssize_t index,
               tuple geometry, int filter):
    """Fills out[index] (H, W, 3) uint8; returns the kernel status (0 = ok)."""
    cdef image.Source src = _source(img)
    cdef image.Geometry g = _geometry(geometry)
    cdef uint8_t* dst = &out[index, 0, 0, 0]
    cdef int64_t out_h = out.shape[1]
    cdef int64_t out_w = out.shape[2]
    cdef int status
    with nogil:
        status = image.resize_hwc(src, g, <image.Filter>filter, dst, out_h, out_w)
    return status


def set_vector_kernels(bint enabled):
    """Use AVX2 loops where the CPU has them (True) or force the portable loops; returns the old value."""
    return image.set_vector_kernels(enabled)
