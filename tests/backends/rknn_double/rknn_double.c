/*
 * Test double of librknnrt.so: the RKNPU2 C ABI (from csrc/rknn/rknn_abi.h), computing a known
 * function on the CPU, and recording what the bridge did so tests can check it.
 *
 * "Model file" (little endian), written by tests/backends/rknn_double/model.py:
 *   char magic[8] = "RKNNDBL1"; uint32 n_inputs, n_outputs, custom_len;
 *   n_inputs + n_outputs tensor records { char name[64]; uint32 n_dims; uint32 dims[4]; int32 fmt; int32 type; }
 *   custom_len bytes of custom string;
 *   float32 weights[rows][cols]; float32 bias[rows]
 * where cols = total input elements and rows = total output elements. rknn_run computes
 * y = weights . x + bias, x being every input read from its bound memory (converted from the bound
 * type and layout to the compiled layout) and concatenated, y split across the outputs in order.
 *
 * What it enforces like a strict runtime: struct sizes passed to rknn_query, memory belonging to
 * the context it is bound on, attributes in rknn_set_io_mem naming a real tensor with consistent
 * dims/size, everything bound before rknn_run, live handles everywhere.
 * What it records: weight blobs allocated and alive (rknn_dup_context must share them), each
 * context's core mask, the address each run read its inputs from, runs in flight at once,
 * order violations (a context destroyed while it still owns memory, the weight-owning context
 * destroyed before its duplicates, calls on destroyed handles).
 *
 * Build variants drop a function to test missing symbols: -DRKNN_DOUBLE_WITHOUT_DUP_CONTEXT,
 * -DRKNN_DOUBLE_WITHOUT_SET_IO_MEM, -DRKNN_DOUBLE_WITHOUT_SET_CORE_MASK.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rknn_abi.h"

#define EXPORT __attribute__((visibility("default")))
#define MAX_TENSORS 16
#define MAX_CONTEXTS 256
#define NAME_LEN 64

typedef struct {
    char name[NAME_LEN];
    uint32_t n_dims;
    uint32_t dims[4];
    int32_t fmt;
    int32_t type;
    uint32_t n_elems;
} tensor_desc;

typedef struct {
    int refs;               /* contexts using this model */
    int origin_alive;       /* the rknn_init context still exists */
    int dups_alive;
    uint32_t n_in, n_out, rows, cols;
    tensor_desc tensors[2 * MAX_TENSORS];
    char custom[1024];
    float* blob;            /* weights then bias: the "weights" the NPU would hold */
} model_t;

typedef struct {
    model_t* model;
    int is_origin;
    int live_mems;
    uint32_t core_mask;
    rknn_tensor_mem* in_mem[MAX_TENSORS];
    rknn_tensor_attr in_attr[MAX_TENSORS];
    rknn_tensor_mem* out_mem[MAX_TENSORS];
    rknn_tensor_attr out_attr[MAX_TENSORS];
    uint64_t last_in_addr[MAX_TENSORS];
    uint64_t runs;
} ctx_t;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static ctx_t* g_ctx[MAX_CONTEXTS];
static int g_live_blobs, g_blob_allocs, g_live_mems, g_violations, g_in_flight, g_max_in_flight;
static unsigned g_run_delay_us;
static uint64_t g_next_phys = 0x10000000u;

/* ---- failure injection: the nth next call of a function returns `code` (NULL for create_mem) ---- */
typedef struct {
    char fn[48];
    int countdown;
    int code;
} injection;
static injection g_inject[8];

static int injected(const char* fn) {
    int code = 0;
    pthread_mutex_lock(&g_mu);
    for (int i = 0; i < 8; ++i) {
        if (g_inject[i].countdown > 0 && strcmp(g_inject[i].fn, fn) == 0 && --g_inject[i].countdown == 0) {
            code = g_inject[i].code;
        }
    }
    pthread_mutex_unlock(&g_mu);
    return code;
}

/* ---- handles ---- */
static ctx_t* lookup_locked(rknn_context handle) {
    for (int i = 0; i < MAX_CONTEXTS; ++i) {
        if (g_ctx[i] != NULL && (rknn_context)(uintptr_t)g_ctx[i] == handle) return g_ctx[i];
    }
    return NULL;
}

static ctx_t* lookup(rknn_context handle) {
    pthread_mutex_lock(&g_mu);
    ctx_t* c = lookup_locked(handle);
    if (c == NULL) ++g_violations;
    pthread_mutex_unlock(&g_mu);
    return c;
}

static int register_ctx(ctx_t* c) {
    int ok = 0;
    pthread_mutex_lock(&g_mu);
    for (int i = 0; i < MAX_CONTEXTS && !ok; ++i) {
        if (g_ctx[i] == NULL) {
            g_ctx[i] = c;
            ok = 1;
        }
    }
    pthread_mutex_unlock(&g_mu);
    return ok;
}

/* ---- numbers ---- */
static uint32_t elem_size(int32_t type) {
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
static uint16_t half_bits(float f) {
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

static float read_elem(const void* base, size_t i, int32_t type) {
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
static size_t source_index(const tensor_desc* t, int32_t fmt, size_t k) {
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

#ifndef RKNN_DOUBLE_WITHOUT_SET_IO_MEM
/* Dims of tensor `t` as seen in layout `fmt`. */
static void dims_in(const tensor_desc* t, int32_t fmt, uint32_t out[4]) {
    memcpy(out, t->dims, sizeof t->dims);
    if (t->n_dims != 4 || fmt == t->fmt) return;
    const uint32_t* d = t->dims;
    if (fmt == RKNN_TENSOR_NCHW) { /* from NHWC */
        out[1] = d[3]; out[2] = d[1]; out[3] = d[2];
    } else { /* NHWC from NCHW */
        out[1] = d[2]; out[2] = d[3]; out[3] = d[1];
    }
}
#endif

/* ---- model file ---- */
static int parse_model(const uint8_t* p, uint32_t size, model_t* m) {
    uint32_t hdr[3];
    if (size < 20 || memcmp(p, "RKNNDBL1", 8) != 0) return 0;
    memcpy(hdr, p + 8, 12);
    m->n_in = hdr[0]; m->n_out = hdr[1];
    const uint32_t custom_len = hdr[2];
    if (m->n_in == 0 || m->n_out == 0 || m->n_in > MAX_TENSORS || m->n_out > MAX_TENSORS) return 0;
    if (custom_len >= sizeof m->custom) return 0;
    size_t off = 20;
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

/* ---- the ABI ---- */
EXPORT int rknn_init(rknn_context* context, void* model, uint32_t size, uint32_t flag, rknn_init_extend* extend) {
    (void)flag; (void)extend;
    const int inj = injected("rknn_init");
    if (inj) return inj;
    if (context == NULL || model == NULL || size == 0) return RKNN_ERR_PARAM_INVALID;
    model_t* m = calloc(1, sizeof *m);
    ctx_t* c = calloc(1, sizeof *c);
    if (m == NULL || c == NULL || !parse_model(model, size, m)) {
        free(m != NULL ? m->blob : NULL);
        free(m); free(c);
        return RKNN_ERR_MODEL_INVALID;
    }
    m->refs = 1; m->origin_alive = 1;
    c->model = m; c->is_origin = 1;
    if (!register_ctx(c)) { free(m->blob); free(m); free(c); return RKNN_ERR_MALLOC_FAIL; }
    pthread_mutex_lock(&g_mu);
    ++g_live_blobs; ++g_blob_allocs;
    pthread_mutex_unlock(&g_mu);
    *context = (rknn_context)(uintptr_t)c;
    return RKNN_SUCC;
}

#ifndef RKNN_DOUBLE_WITHOUT_DUP_CONTEXT
EXPORT int rknn_dup_context(rknn_context* context_in, rknn_context* context_out) {
    const int inj = injected("rknn_dup_context");
    if (inj) return inj;
    if (context_in == NULL || context_out == NULL) return RKNN_ERR_PARAM_INVALID;
    ctx_t* src = lookup(*context_in);
    if (src == NULL) return RKNN_ERR_CTX_INVALID;
    ctx_t* c = calloc(1, sizeof *c);
    if (c == NULL) return RKNN_ERR_MALLOC_FAIL;
    c->model = src->model;
    if (!register_ctx(c)) { free(c); return RKNN_ERR_MALLOC_FAIL; }
    pthread_mutex_lock(&g_mu);
    ++c->model->refs; ++c->model->dups_alive;
    pthread_mutex_unlock(&g_mu);
    *context_out = (rknn_context)(uintptr_t)c;
    return RKNN_SUCC;
}
#endif

EXPORT int rknn_destroy(rknn_context context) {
    pthread_mutex_lock(&g_mu);
    ctx_t* c = lookup_locked(context);
    if (c == NULL) { ++g_violations; pthread_mutex_unlock(&g_mu); return RKNN_ERR_CTX_INVALID; }
    for (int i = 0; i < MAX_CONTEXTS; ++i) if (g_ctx[i] == c) g_ctx[i] = NULL;
    model_t* m = c->model;
    if (c->live_mems != 0) ++g_violations;                 /* memory outlives its context */
    if (c->is_origin) {
        if (m->dups_alive > 0) ++g_violations;             /* weights owner destroyed before duplicates */
        m->origin_alive = 0;
    } else {
        --m->dups_alive;
    }
    if (--m->refs == 0) { free(m->blob); free(m); --g_live_blobs; }
    pthread_mutex_unlock(&g_mu);
    free(c);
    return RKNN_SUCC;
}

EXPORT int rknn_query(rknn_context context, rknn_query_cmd cmd, void* info, uint32_t size) {
    const int inj = injected("rknn_query");
    if (inj) return inj;
    if (cmd == RKNN_QUERY_INPUT_ATTR && injected("rknn_query:input_attr")) return RKNN_ERR_FAIL;
    if (cmd == RKNN_QUERY_CUSTOM_STRING && injected("rknn_query:custom_string")) return RKNN_ERR_PARAM_INVALID;
    ctx_t* c = lookup(context);
    if (c == NULL) return RKNN_ERR_CTX_INVALID;
    const model_t* m = c->model;
    if (info == NULL) return RKNN_ERR_PARAM_INVALID;
    switch (cmd) {
        case RKNN_QUERY_IN_OUT_NUM: {
            if (size < sizeof(rknn_input_output_num)) return RKNN_ERR_PARAM_INVALID;
            rknn_input_output_num* io = info;
            io->n_input = m->n_in; io->n_output = m->n_out;
            return RKNN_SUCC;
        }
        case RKNN_QUERY_INPUT_ATTR:
        case RKNN_QUERY_OUTPUT_ATTR: {
            if (size < sizeof(rknn_tensor_attr)) return RKNN_ERR_PARAM_INVALID;
            rknn_tensor_attr* a = info;
            const int is_in = cmd == RKNN_QUERY_INPUT_ATTR;
            const uint32_t index = a->index;
            if (index >= (is_in ? m->n_in : m->n_out)) return RKNN_ERR_PARAM_INVALID;
            const tensor_desc* t = &m->tensors[is_in ? index : m->n_in + index];
            memset(a, 0, sizeof *a);
            a->index = index;
            a->n_dims = t->n_dims;
            memcpy(a->dims, t->dims, t->n_dims * sizeof(uint32_t));
            memcpy(a->name, t->name, NAME_LEN);
            a->n_elems = t->n_elems;
            a->size = t->n_elems * elem_size(t->type);
            a->size_with_stride = a->size;
            a->fmt = (rknn_tensor_format)t->fmt;
            a->type = (rknn_tensor_type)t->type;
            a->qnt_type = RKNN_TENSOR_QNT_NONE;
            a->scale = 1.0f;
            return RKNN_SUCC;
        }
        case RKNN_QUERY_SDK_VERSION: {
            if (size < sizeof(rknn_sdk_version)) return RKNN_ERR_PARAM_INVALID;
            rknn_sdk_version* v = info;
            strcpy(v->api_version, "2.3.0 (rknn_double)");
            strcpy(v->drv_version, "0.9.8 (rknn_double)");
            return RKNN_SUCC;
        }
        case RKNN_QUERY_CUSTOM_STRING: {
            if (size < sizeof(rknn_custom_string)) return RKNN_ERR_PARAM_INVALID;
            memcpy(((rknn_custom_string*)info)->string, m->custom, sizeof m->custom);
            return RKNN_SUCC;
        }
        default:
            return RKNN_ERR_PARAM_INVALID;
    }
}

#ifndef RKNN_DOUBLE_WITHOUT_SET_CORE_MASK
EXPORT int rknn_set_core_mask(rknn_context context, rknn_core_mask core_mask) {
    const int inj = injected("rknn_set_core_mask");
    if (inj) return inj;
    ctx_t* c = lookup(context);
    if (c == NULL) return RKNN_ERR_CTX_INVALID;
    switch ((uint32_t)core_mask) {
        case 0: case 1: case 2: case 4: case 3: case 7: case 0xffff: break;
        default: return RKNN_ERR_PARAM_INVALID;
    }
    c->core_mask = (uint32_t)core_mask;
    return RKNN_SUCC;
}
#endif

EXPORT rknn_tensor_mem* rknn_create_mem(rknn_context context, uint32_t size) {
    if (injected("rknn_create_mem")) return NULL;
    ctx_t* c = lookup(context);
    if (c == NULL || size == 0) return NULL;
    rknn_tensor_mem* mem = calloc(1, sizeof *mem);
    void* data = aligned_alloc(64, ((size_t)size + 63) / 64 * 64);
    if (mem == NULL || data == NULL) { free(mem); free(data); return NULL; }
    memset(data, 0xA5, size); /* garbage, so a run that reads unwritten memory shows it */
    pthread_mutex_lock(&g_mu);
    mem->phys_addr = g_next_phys;
    g_next_phys += ((uint64_t)size + 4095) / 4096 * 4096;
    ++g_live_mems; ++c->live_mems;
    pthread_mutex_unlock(&g_mu);
    mem->virt_addr = data;
    mem->fd = -1;
    mem->size = size;
    mem->flags = RKNN_TENSOR_MEMORY_FLAGS_ALLOC_INSIDE;
    mem->priv_data = c;
    return mem;
}

EXPORT int rknn_destroy_mem(rknn_context context, rknn_tensor_mem* mem) {
    ctx_t* c = lookup(context);
    if (c == NULL) return RKNN_ERR_CTX_INVALID;
    if (mem == NULL || mem->priv_data != c) return RKNN_ERR_PARAM_INVALID;
    for (int i = 0; i < MAX_TENSORS; ++i) {
        if (c->in_mem[i] == mem) c->in_mem[i] = NULL;
        if (c->out_mem[i] == mem) c->out_mem[i] = NULL;
    }
    pthread_mutex_lock(&g_mu);
    --g_live_mems; --c->live_mems;
    pthread_mutex_unlock(&g_mu);
    free(mem->virt_addr);
    free(mem);
    return RKNN_SUCC;
}

#ifndef RKNN_DOUBLE_WITHOUT_SET_IO_MEM
EXPORT int rknn_set_io_mem(rknn_context context, rknn_tensor_mem* mem, rknn_tensor_attr* attr) {
    const int inj = injected("rknn_set_io_mem");
    if (inj) return inj;
    ctx_t* c = lookup(context);
    if (c == NULL) return RKNN_ERR_CTX_INVALID;
    if (mem == NULL || attr == NULL || mem->priv_data != c || attr->pass_through != 0) return RKNN_ERR_PARAM_INVALID;
    const model_t* m = c->model;
    /* The same call binds inputs and outputs: the tensor is found by name, and the index must agree. */
    for (uint32_t k = 0; k < m->n_in + m->n_out; ++k) {
        const tensor_desc* t = &m->tensors[k];
        if (strncmp(t->name, attr->name, NAME_LEN) != 0) continue;
        const int is_in = k < m->n_in;
        const uint32_t index = is_in ? k : k - m->n_in;
        if (attr->index != index || elem_size(attr->type) == 0) return RKNN_ERR_PARAM_INVALID;
        if (attr->n_elems != t->n_elems || mem->size < t->n_elems * elem_size(attr->type)) {
            return RKNN_ERR_PARAM_INVALID;
        }
        if (is_in) {
            const int layout_ok = t->n_dims == 4 ? (attr->fmt == RKNN_TENSOR_NCHW || attr->fmt == RKNN_TENSOR_NHWC)
                                                 : (int32_t)attr->fmt == t->fmt;
            uint32_t expect[4];
            dims_in(t, attr->fmt, expect);
            if (!layout_ok || attr->n_dims != t->n_dims || memcmp(attr->dims, expect, t->n_dims * 4) != 0) {
                return RKNN_ERR_PARAM_INVALID;
            }
            c->in_mem[index] = mem;
            c->in_attr[index] = *attr;
        } else {
            if ((attr->type != RKNN_TENSOR_FLOAT32 && attr->type != RKNN_TENSOR_FLOAT16) ||
                (int32_t)attr->fmt != t->fmt) {
                return RKNN_ERR_PARAM_INVALID;
            }
            c->out_mem[index] = mem;
            c->out_attr[index] = *attr;
        }
        return RKNN_SUCC;
    }
    return RKNN_ERR_PARAM_INVALID;
}
#endif

static void sleep_us(unsigned us) {
    struct timespec ts = {(time_t)(us / 1000000u), (long)(us % 1000000u) * 1000L};
    nanosleep(&ts, NULL);
}

EXPORT int rknn_run(rknn_context context, rknn_run_extend* extend) {
    (void)extend;
    const int inj = injected("rknn_run");
    if (inj) return inj;
    ctx_t* c = lookup(context);
    if (c == NULL) return RKNN_ERR_CTX_INVALID;
    const model_t* m = c->model;
    for (uint32_t i = 0; i < m->n_in; ++i) if (c->in_mem[i] == NULL) return RKNN_ERR_INPUT_INVALID;
    for (uint32_t i = 0; i < m->n_out; ++i) if (c->out_mem[i] == NULL) return RKNN_ERR_OUTPUT_INVALID;
    pthread_mutex_lock(&g_mu);
    if (++g_in_flight > g_max_in_flight) g_max_in_flight = g_in_flight;
    const unsigned delay = g_run_delay_us;
    pthread_mutex_unlock(&g_mu);
    if (delay) sleep_us(delay);

    float* x = malloc((size_t)m->cols * sizeof(float));
    int rc = x != NULL ? RKNN_SUCC : RKNN_ERR_MALLOC_FAIL;
    size_t col = 0;
    for (uint32_t i = 0; i < m->n_in && rc == RKNN_SUCC; ++i) {
        const tensor_desc* t = &m->tensors[i];
        const void* base = c->in_mem[i]->virt_addr;
        c->last_in_addr[i] = (uint64_t)(uintptr_t)base;
        for (size_t k = 0; k < t->n_elems; ++k) {
            x[col++] = read_elem(base, source_index(t, c->in_attr[i].fmt, k), c->in_attr[i].type);
        }
    }
    size_t row = 0;
    const float* w = m->blob;
    const float* bias = m->blob + (size_t)m->rows * m->cols;
    for (uint32_t j = 0; j < m->n_out && rc == RKNN_SUCC; ++j) {
        const tensor_desc* t = &m->tensors[m->n_in + j];
        void* out = c->out_mem[j]->virt_addr;
        for (size_t k = 0; k < t->n_elems; ++k, ++row) {
            double acc = bias[row];
            for (size_t q = 0; q < m->cols; ++q) acc += (double)w[row * m->cols + q] * (double)x[q];
            if (c->out_attr[j].type == RKNN_TENSOR_FLOAT16) ((uint16_t*)out)[k] = half_bits((float)acc);
            else ((float*)out)[k] = (float)acc;
        }
    }
    free(x);
    pthread_mutex_lock(&g_mu);
    --g_in_flight;
    if (rc == RKNN_SUCC) ++c->runs;
    pthread_mutex_unlock(&g_mu);
    return rc;
}

/* ---- instrumentation for the tests (not part of the RKNN ABI) ---- */
EXPORT int rknn_double_live_weight_blobs(void) { return g_live_blobs; }
EXPORT int rknn_double_weight_blob_allocs(void) { return g_blob_allocs; }
EXPORT int rknn_double_live_mems(void) { return g_live_mems; }
EXPORT int rknn_double_violations(void) { return g_violations; }
EXPORT int rknn_double_max_in_flight(void) { return g_max_in_flight; }

EXPORT int rknn_double_live_contexts(void) {
    int n = 0;
    pthread_mutex_lock(&g_mu);
    for (int i = 0; i < MAX_CONTEXTS; ++i) n += g_ctx[i] != NULL;
    pthread_mutex_unlock(&g_mu);
    return n;
}

/* Per-context facts; -1 / 0 for a handle that is not alive. */
EXPORT long long rknn_double_core_mask(uint64_t handle) {
    pthread_mutex_lock(&g_mu);
    const ctx_t* c = lookup_locked((rknn_context)handle);
    const long long mask = c ? (long long)c->core_mask : -1;
    pthread_mutex_unlock(&g_mu);
    return mask;
}

EXPORT uint64_t rknn_double_weights_addr(uint64_t handle) {
    pthread_mutex_lock(&g_mu);
    const ctx_t* c = lookup_locked((rknn_context)handle);
    const uint64_t addr = c ? (uint64_t)(uintptr_t)c->model->blob : 0;
    pthread_mutex_unlock(&g_mu);
    return addr;
}

EXPORT uint64_t rknn_double_last_input_addr(uint64_t handle, uint32_t index) {
    pthread_mutex_lock(&g_mu);
    const ctx_t* c = lookup_locked((rknn_context)handle);
    const uint64_t addr = c && index < MAX_TENSORS ? c->last_in_addr[index] : 0;
    pthread_mutex_unlock(&g_mu);
    return addr;
}

EXPORT int rknn_double_bound_input_fmt(uint64_t handle, uint32_t index) {
    pthread_mutex_lock(&g_mu);
    const ctx_t* c = lookup_locked((rknn_context)handle);
    const int fmt = c && index < MAX_TENSORS && c->in_mem[index] ? (int)c->in_attr[index].fmt : -1;
    pthread_mutex_unlock(&g_mu);
    return fmt;
}

EXPORT uint64_t rknn_double_runs(uint64_t handle) {
    pthread_mutex_lock(&g_mu);
    const ctx_t* c = lookup_locked((rknn_context)handle);
    const uint64_t runs = c ? c->runs : 0;
    pthread_mutex_unlock(&g_mu);
    return runs;
}

EXPORT void rknn_double_set_run_delay_us(unsigned us) {
    pthread_mutex_lock(&g_mu);
    g_run_delay_us = us;
    pthread_mutex_unlock(&g_mu);
}

EXPORT void rknn_double_fail(const char* fn, int nth_call, int code) {
    pthread_mutex_lock(&g_mu);
    for (int i = 0; i < 8; ++i) {
        if (g_inject[i].countdown == 0) {
            strncpy(g_inject[i].fn, fn, sizeof g_inject[i].fn - 1);
            g_inject[i].fn[sizeof g_inject[i].fn - 1] = '\0';
            g_inject[i].countdown = nth_call;
            g_inject[i].code = code;
            break;
        }
    }
    pthread_mutex_unlock(&g_mu);
}

/* Clear injections, delay and the in-flight maximum (live counts are facts and stay). */
EXPORT void rknn_double_reset(void) {
    pthread_mutex_lock(&g_mu);
    memset(g_inject, 0, sizeof g_inject);
    g_run_delay_us = 0;
    g_max_in_flight = 0;
    pthread_mutex_unlock(&g_mu);
}
