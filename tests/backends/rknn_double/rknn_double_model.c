/* Model files, element types and layouts of the librknnrt test double (see rknn_double.c). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rknn_double.h"

/* ---- numbers ---- */
uint32_t elem_size(int32_t type) {
    switch (type) {
        case RKNN_TENSOR_FLOAT32: case RKNN_TENSOR_INT32: return 4;
        case RKNN_TENSOR_FLOAT16: return 2;
        case RKNN_TENSOR_UINT8: case RKNN_TENSOR_INT8: return 1;
        default: return 0;
    }
}

/* Written independently of the bridge's widening: ldexp arithmetic instead of bit assembly. */
static float half_value(uint16_t h) {
    const int e = (h >> 10) & 31, m = h & 1023;
    const float s = (h & 0x8000) ? -1.0f : 1.0f;
    if (e == 0) return s * ldexpf((float)m, -24);
    if (e == 31) return m ? NAN : s * INFINITY;
    return s * ldexpf((float)(1024 + m), e - 25);
}

/* binary32 -> binary16, round to nearest even. */
uint16_t half_bits(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    const uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    const uint32_t a = x & 0x7fffffffu;
    if (a >= 0x7f800000u) return (uint16_t)(sign | 0x7c00u | (a > 0x7f800000u ? 0x200u : 0u));
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 rounds to infinity */
    if (a < 0x38800000u) {                                    /* below 2^-14: subnormal half */
        float v;
        memcpy(&v, &a, 4);
        return (uint16_t)(sign | (uint16_t)nearbyintf(v * 16777216.0f));
    }
    uint32_t h = ((((a >> 23) - 112u) << 10) | ((a & 0x7fffffu) >> 13));
    const uint32_t rest = a & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
    return (uint16_t)(sign | h);
}

float read_elem(const void* base, size_t i, int32_t type) {
    switch (type) {
        case RKNN_TENSOR_FLOAT32: return ((const float*)base)[i];
        case RKNN_TENSOR_FLOAT16: return half_value(((const uint16_t*)base)[i]);
        case RKNN_TENSOR_UINT8: return (float)((const uint8_t*)base)[i];
        case RKNN_TENSOR_INT8: return (float)((const int8_t*)base)[i];
        case RKNN_TENSOR_INT32: return (float)((const int32_t*)base)[i];
        default: return NAN;
    }
}

/* Index into a buffer in layout `fmt` of the element at compiled-layout position `k`. */
size_t source_index(const tensor_desc* t, int32_t fmt, size_t k) {
    if (t->n_dims != 4 || fmt == t->fmt) return k;
    if (t->fmt == RKNN_TENSOR_NHWC) { /* compiled N,H,W,C; buffer N,C,H,W */
        const size_t H = t->dims[1], W = t->dims[2], C = t->dims[3];
        const size_t c = k % C, w = (k / C) % W, h = (k / (C * W)) % H, b = k / (C * W * H);
        return ((b * C + c) * H + h) * W + w;
    }
    /* compiled N,C,H,W; buffer N,H,W,C */
    const size_t C = t->dims[1], H = t->dims[2], W = t->dims[3];
    const size_t w = k % W, h = (k / W) % H, c = (k / (W * H)) % C, b = k / (W * H * C);
    return ((b * H + h) * W + w) * C + c;
}

/* Dims of tensor `t` as seen in layout `fmt`. */
void dims_in(const tensor_desc* t, int32_t fmt, uint32_t out[4]) {
    memcpy(out, t->dims, sizeof t->dims);
    if (t->n_dims != 4 || fmt == t->fmt) return;
    const uint32_t* d = t->dims;
    if (fmt == RKNN_TENSOR_NCHW) { /* from NHWC */
        out[1] = d[3]; out[2] = d[1]; out[3] = d[2];
    } else { /* NHWC from NCHW */
        out[1] = d[2]; out[2] = d[3]; out[3] = d[1];
    }
}

/* ---- model file ---- */
int parse_model(const uint8_t* p, uint32_t size, model_t* m) {
    uint32_t hdr[4];
    if (size < 24 || memcmp(p, "RKNNDBL1", 8) != 0) return 0;
    memcpy(hdr, p + 8, 16);
    m->n_in = hdr[0]; m->n_out = hdr[1];
    const uint32_t custom_len = hdr[2];
    m->dynamic = (hdr[3] & MODEL_DYNAMIC) != 0;
    if (m->n_in == 0 || m->n_out == 0 || m->n_in > MAX_TENSORS || m->n_out > MAX_TENSORS) return 0;
    if (custom_len >= sizeof m->custom) return 0;
    size_t off = 24;
    const size_t rec = NAME_LEN + 4 + 16 + 8;
    if (size < off + rec * (m->n_in + m->n_out) + custom_len) return 0;
    m->rows = m->cols = 0;
    for (uint32_t i = 0; i < m->n_in + m->n_out; ++i, off += rec) {
        tensor_desc* t = &m->tensors[i];
        memcpy(t->name, p + off, NAME_LEN);
        t->name[NAME_LEN - 1] = '\0';
        memcpy(&t->n_dims, p + off + NAME_LEN, 4);
        memcpy(t->dims, p + off + NAME_LEN + 4, 16);
        memcpy(&t->fmt, p + off + NAME_LEN + 20, 4);
        memcpy(&t->type, p + off + NAME_LEN + 24, 4);
        if (t->n_dims == 0 || t->n_dims > 4 || elem_size(t->type) == 0) return 0;
        t->n_elems = 1;
        for (uint32_t d = 0; d < t->n_dims; ++d) t->n_elems *= t->dims[d];
        if (t->n_elems == 0) return 0;
        if (i < m->n_in) m->cols += t->n_elems; else m->rows += t->n_elems;
    }
    memcpy(m->custom, p + off, custom_len);
    m->custom[custom_len] = '\0';
    off += custom_len;
    const size_t blob_bytes = ((size_t)m->rows * m->cols + m->rows) * sizeof(float);
    if (size != off + blob_bytes) return 0;
    m->blob = malloc(blob_bytes);
    if (m->blob == NULL) return 0;
    memcpy(m->blob, p + off, blob_bytes);
    return 1;
}
