/* Failure injection, handle registry and the instrumentation the tests read (not RKNN ABI). */
#define _POSIX_C_SOURCE 200809L
#include <string.h>

#include "rknn_double.h"

/* ---- failure injection: the nth next call of a function returns `code` (NULL for create_mem) ---- */
typedef struct {
    char fn[48];
    int countdown;
    int code;
} injection;
static injection g_inject[8];

int injected(const char* fn) {
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
ctx_t* lookup_locked(rknn_context handle) {
    for (int i = 0; i < MAX_CONTEXTS; ++i) {
        if (g_ctx[i] != NULL && (rknn_context)(uintptr_t)g_ctx[i] == handle) return g_ctx[i];
    }
    return NULL;
}

ctx_t* lookup(rknn_context handle) {
    pthread_mutex_lock(&g_mu);
    ctx_t* c = lookup_locked(handle);
    if (c == NULL) ++g_violations;
    pthread_mutex_unlock(&g_mu);
    return c;
}

int register_ctx(ctx_t* c) {
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
