/*
 * Test double of librknnrt.so: the RKNPU2 C ABI (from csrc/rknn/rknn_abi.h), computing a known
 * function on the CPU, and recording what the bridge did so tests can check it.
 *
 * "Model file" (little endian), written by tests/backends/rknn_double/__init__.py:
 *   char magic[8] = "RKNNDBL1"; uint32 n_inputs, n_outputs, custom_len, flags (1: dynamic shape);
 *   n_inputs + n_outputs tensor records
 *     { char name[64]; uint32 n_dims; uint32 dims[4]; int32 fmt; int32 type; }
 *   custom_len bytes of custom string;
 *   float32 weights[rows][cols]; float32 bias[rows]
 * where cols = total input elements and rows = total output elements. rknn_run computes
 * y = weights . x + bias, x being every input read from its bound memory (converted from the bound
 * type and layout to the reported layout) and concatenated, y split across the outputs in order.
 *
 * Facts from Rockchip's documentation it enforces: struct sizes passed to rknn_query; memory bound
 * on the context that created it; rknn_set_io_mem naming a real tensor with consistent dims and
 * size, and 4-D inputs in NHWC (the zero-copy API takes no NCHW); everything bound before
 * rknn_run; dynamic-shape models refuse rknn_dup_context and need rknn_set_input_shapes (4-D
 * shapes as NHWC) before memory is bound or a run starts; live handles everywhere.
 * What it records: weight blobs allocated and alive (rknn_dup_context must share them), each
 * context's core mask, the address each run read its inputs from, runs in flight at once,
 * order violations (a context destroyed while it still owns memory, the weight-owning context
 * destroyed before its duplicates, calls on destroyed handles).
 *
 * Build variants drop a function to test missing symbols: -DRKNN_DOUBLE_WITHOUT_DUP_CONTEXT,
 * -DRKNN_DOUBLE_WITHOUT_SET_IO_MEM, -DRKNN_DOUBLE_WITHOUT_SET_CORE_MASK,
 * -DRKNN_DOUBLE_WITHOUT_SET_INPUT_SHAPES.
 *
 * Files: rknn_double.c (the ABI), rknn_double_model.c (model files, types, layouts),
 * rknn_double_record.c (failure injection, handles, instrumentation), rknn_double.h (shared state).
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rknn_double.h"

pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
ctx_t* g_ctx[MAX_CONTEXTS];
int g_live_blobs, g_blob_allocs, g_live_mems, g_violations, g_in_flight, g_max_in_flight;
unsigned g_run_delay_us;
uint64_t g_next_phys = 0x10000000u;

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
    if (src->model->dynamic) return RKNN_ERR_FAIL; /* documented: no rknn_dup_context for dynamic shapes */
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
        case RKNN_QUERY_CURRENT_INPUT_ATTR:
        case RKNN_QUERY_CURRENT_OUTPUT_ATTR:
            /* only meaningful for a dynamic model whose shape has been chosen */
            if (!m->dynamic || !c->shapes_set) return RKNN_ERR_PARAM_INVALID;
            /* fall through */
        case RKNN_QUERY_INPUT_ATTR:
        case RKNN_QUERY_OUTPUT_ATTR: {
            if (size < sizeof(rknn_tensor_attr)) return RKNN_ERR_PARAM_INVALID;
            rknn_tensor_attr* a = info;
            const int is_in = cmd == RKNN_QUERY_INPUT_ATTR || cmd == RKNN_QUERY_CURRENT_INPUT_ATTR;
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
        case RKNN_QUERY_INPUT_DYNAMIC_RANGE: {
            if (size < sizeof(rknn_input_range)) return RKNN_ERR_PARAM_INVALID;
            rknn_input_range* r = info;
            const uint32_t index = r->index;
            if (index >= m->n_in) return RKNN_ERR_PARAM_INVALID;
            memset(r, 0, sizeof *r);
            r->index = index;
            if (!m->dynamic) return RKNN_SUCC; /* static: no shapes */
            /* One shape, given as the source framework had it: NCHW for an ONNX image input. */
            const tensor_desc* t = &m->tensors[index];
            r->shape_number = 1;
            r->n_dims = t->n_dims;
            r->fmt = t->n_dims == 4 ? RKNN_TENSOR_NCHW : RKNN_TENSOR_UNDEFINED;
            dims_in(t, r->fmt, r->dyn_range[0]);
            memcpy(r->name, t->name, NAME_LEN);
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
            if (m->dynamic && !c->shapes_set) return RKNN_ERR_INPUT_INVALID;
            /* Rockchip's FAQ: with the zero-copy API a 4-D input is NHWC (or NC1HWC2), never NCHW. */
            const int layout_ok = t->n_dims == 4 ? attr->fmt == RKNN_TENSOR_NHWC : (int32_t)attr->fmt == t->fmt;
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

#ifndef RKNN_DOUBLE_WITHOUT_SET_INPUT_SHAPES
EXPORT int rknn_set_input_shapes(rknn_context context, uint32_t n_inputs, rknn_tensor_attr attr[]) {
    ctx_t* c = lookup(context);
    if (c == NULL) return RKNN_ERR_CTX_INVALID;
    const model_t* m = c->model;
    if (!m->dynamic) return RKNN_ERR_FAIL; /* only for dynamic-shape models */
    if (attr == NULL || n_inputs != m->n_in) return RKNN_ERR_PARAM_INVALID;
    for (uint32_t i = 0; i < n_inputs; ++i) {
        /* The one exported shape, 4-D inputs as NHWC (the call takes NHWC or UNDEFINED). */
        const tensor_desc* t = &m->tensors[i];
        const int32_t fmt = t->n_dims == 4 ? RKNN_TENSOR_NHWC : RKNN_TENSOR_UNDEFINED;
        uint32_t expect[4];
        dims_in(t, fmt, expect);
        if ((int32_t)attr[i].fmt != fmt || attr[i].n_dims != t->n_dims ||
            memcmp(attr[i].dims, expect, t->n_dims * 4) != 0) {
            return RKNN_ERR_PARAM_INVALID;
        }
    }
    c->shapes_set = 1;
    return RKNN_SUCC;
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
    if (m->dynamic && !c->shapes_set) return RKNN_ERR_INPUT_INVALID;
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
