/* Internal to the librknnrt test double: shared state and helpers of rknn_double*.c. */
#ifndef RKNN_DOUBLE_H
#define RKNN_DOUBLE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "rknn_abi.h"

#define EXPORT __attribute__((visibility("default")))  /* everything else stays hidden */
#define MAX_TENSORS 16
#define MAX_CONTEXTS 256
#define NAME_LEN 64
#define MODEL_DYNAMIC 1u /* model file flag */

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
    int dynamic;            /* exported with one "dynamic" input shape, as Immich's detection models */
    tensor_desc tensors[2 * MAX_TENSORS];
    char custom[1024];
    float* blob;            /* weights then bias: the "weights" the NPU would hold */
} model_t;

typedef struct {
    model_t* model;
    int is_origin;
    int live_mems;
    uint32_t core_mask;
    int shapes_set;         /* dynamic models: rknn_set_input_shapes was called */
    rknn_tensor_mem* in_mem[MAX_TENSORS];
    rknn_tensor_attr in_attr[MAX_TENSORS];
    rknn_tensor_mem* out_mem[MAX_TENSORS];
    rknn_tensor_attr out_attr[MAX_TENSORS];
    uint64_t last_in_addr[MAX_TENSORS];
    uint64_t runs;
} ctx_t;

/* Shared state, guarded by g_mu (defined in rknn_double.c). */
extern pthread_mutex_t g_mu;
extern ctx_t* g_ctx[MAX_CONTEXTS];
extern int g_live_blobs, g_blob_allocs, g_live_mems, g_violations, g_in_flight, g_max_in_flight;
extern unsigned g_run_delay_us;
extern uint64_t g_next_phys;

/* rknn_double_record.c: failure injection and handle registry. */
int injected(const char* fn);
ctx_t* lookup_locked(rknn_context handle);
ctx_t* lookup(rknn_context handle); /* counts a violation when the handle is dead */
int register_ctx(ctx_t* c);

/* rknn_double_model.c: model files, element types, layouts. */
int parse_model(const uint8_t* p, uint32_t size, model_t* m);
uint32_t elem_size(int32_t type);
float read_elem(const void* base, size_t i, int32_t type);
uint16_t half_bits(float f);
size_t source_index(const tensor_desc* t, int32_t fmt, size_t k);
void dims_in(const tensor_desc* t, int32_t fmt, uint32_t out[4]);

#endif /* RKNN_DOUBLE_H */
