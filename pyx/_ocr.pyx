# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, embedsignature=True
"""Thin wrappers over csrc/kernels/ocr_*.cpp. The façade immich_ml.ops.ocr validates shapes,
dtypes, layouts and values and allocates every buffer; these functions release the GIL and call."""
from libc.stdint cimport int32_t, int64_t, uint8_t

cimport ocr


def det_preprocess(const uint8_t[:, :, :] img, float[:, :, :, ::1] out, int64_t resized_h,
                   int64_t resized_w, float pad_value):
    """Fills out[0] (3, BH, BW); returns the kernel status (0 = ok)."""
    cdef const uint8_t* src = &img[0, 0, 0]
    cdef int64_t h = img.shape[0], w = img.shape[1], stride = img.strides[0]
    cdef float* dst = &out[0, 0, 0, 0]
    cdef int64_t out_h = out.shape[2], out_w = out.shape[3]
    cdef int status
    with nogil:
        status = ocr.det_preprocess(src, h, w, stride, resized_h, resized_w, dst, out_h, out_w,
                                    pad_value)
    return status


def db_boxes(const float[:, :] prob, int64_t src_h, int64_t src_w, double min_score,
             bint slow_score, float threshold, int max_candidates, double unclip_ratio,
             float[:, :, ::1] boxes, float[::1] scores):
    """Fills boxes (capacity, 4, 2) and scores (capacity,); returns (status, count)."""
    cdef ocr.ProbMap pm
    pm.data = &prob[0, 0]
    pm.height = prob.shape[0]
    pm.width = prob.shape[1]
    pm.row_stride = prob.strides[0] // sizeof(float)
    cdef ocr.DbParams params
    params.threshold = threshold
    params.min_score = min_score
    params.unclip_ratio = unclip_ratio
    params.max_candidates = max_candidates
    params.slow_score = 1 if slow_score else 0
    params.src_h = src_h
    params.src_w = src_w
    cdef int64_t capacity = boxes.shape[0]
    cdef float* box_ptr = &boxes[0, 0, 0] if capacity > 0 else NULL
    cdef float* score_ptr = &scores[0] if capacity > 0 else NULL
    cdef int64_t count = 0
    cdef int status
    with nogil:
        status = ocr.db_boxes(pm, params, box_ptr, score_ptr, capacity, &count)
    return status, count


def crop_sizes(const float[:, :, ::1] boxes, int32_t[:, ::1] out):
    """out[i] = (w, h) of crop i after the 90° rotation."""
    cdef Py_ssize_t i, n = boxes.shape[0]
    with nogil:
        for i in range(n):
            ocr.crop_size(&boxes[i, 0, 0], &out[i, 0], &out[i, 1])


def rec_batch(const uint8_t[:, :, :] img, const float[:, :, ::1] boxes, float[:, :, :, ::1] out,
              int64_t batch_width):
    """Fills out[i] for every box and zeroes the rows past them; returns the first bad status or 0."""
    cdef const uint8_t* src = &img[0, 0, 0]
    cdef int64_t h = img.shape[0], w = img.shape[1], stride = img.strides[0]
    cdef Py_ssize_t i, n = boxes.shape[0], b = out.shape[0]
    cdef int64_t out_h = out.shape[2], out_w = out.shape[3]
    cdef int64_t slot = 3 * out_h * out_w
    cdef int status = 0, s
    cdef float* base = &out[0, 0, 0, 0]
    cdef int64_t k
    with nogil:
        for i in range(n):
            s = ocr.rec_crop(src, h, w, stride, &boxes[i, 0, 0], batch_width, base + i * slot,
                             out_h, out_w)
            if s != 0 and status == 0:
                status = s
        for k in range(n * slot, b * slot):
            base[k] = 0.0
    return status


def ctc_greedy(const float[:, :, :] probs, int32_t[:, ::1] labels, int32_t[::1] lengths,
               float[::1] mean_prob):
    """Greedy CTC over probs (N, T, C); fills labels (N, T), lengths (N,), mean_prob (N,).
    Returns False when probs holds a NaN or infinite value."""
    cdef int64_t n = probs.shape[0], t = probs.shape[1], c = probs.shape[2]
    cdef int64_t sn = probs.strides[0] // sizeof(float)
    cdef int64_t st = probs.strides[1] // sizeof(float)
    cdef int64_t sc = probs.strides[2] // sizeof(float)
    if n == 0 or t == 0 or c == 0:
        lengths[:] = 0
        mean_prob[:] = 0.0
        return True
    cdef bint finite
    with nogil:
        finite = ocr.ctc_greedy(&probs[0, 0, 0], n, t, c, sn, st, sc, &labels[0, 0], &lengths[0],
                                &mean_prob[0])
    return finite
