/*
 * RKNN bridge: drives librknnrt.so (opened at run time) for one model with several contexts.
 *
 *   rkb_runtime  one dlopen'ed librknnrt and its resolved functions; shared by every model.
 *   rkb_model    one .rknn model: context 0 from rknn_init, contexts 1..N-1 from rknn_dup_context
 *                (weights shared), each with its own input/output memory from rknn_create_mem bound
 *                with rknn_set_io_mem. A context is leased to one caller at a time.
 *
 * Every function is noexcept, never aborts, and reports failure as a negative return code plus a
 * message in the caller's `err` buffer. RKNN's own codes (-1..-13) pass through unchanged; the
 * bridge's own codes are below -100. Functions that may block (open, prepare, acquire, run, close)
 * touch no Python state, so the wrapper calls them without the GIL.
 */
#ifndef IMMICH_RKNN_BRIDGE_H
#define IMMICH_RKNN_BRIDGE_H

#include <stddef.h>
#include <stdint.h>

#include "rknn_abi.h"

#ifdef __cplusplus
extern "C" {
#define RKB_NOEXCEPT noexcept
#else
#define RKB_NOEXCEPT
#endif

#define RKB_OK 0
#define RKB_ERR_LOAD (-101)      /* dlopen failed */
#define RKB_ERR_SYMBOL (-102)    /* a function is missing from the library */
#define RKB_ERR_ARGUMENT (-103)  /* bad argument from the caller (index, size, count) */
#define RKB_ERR_MEMORY (-104)    /* host allocation or rknn_create_mem failed */
#define RKB_ERR_CLOSED (-105)    /* the model is closing or closed */
#define RKB_ERR_STATE (-106)     /* call out of order (e.g. run before prepare) */

typedef struct rkb_runtime rkb_runtime;
typedef struct rkb_model rkb_model;

/* Human-readable name of a return code ("RKNN_ERR_TIMEOUT", "RKB_ERR_SYMBOL", ...). */
const char* rkb_code_name(int code) RKB_NOEXCEPT;

/* Open `path` with dlopen and resolve the functions the bridge always needs. */
int rkb_runtime_open(const char* path, rkb_runtime** out, char* err, size_t err_len) RKB_NOEXCEPT;
/* 1 when the optional function `name` (rknn_dup_context, rknn_set_core_mask) is present. */
int rkb_runtime_has(const rkb_runtime* rt, const char* name) RKB_NOEXCEPT;
void rkb_runtime_close(rkb_runtime* rt) RKB_NOEXCEPT;

/* rknn_init from the model bytes (the runtime keeps its own copy), then query the tensor counts,
 * attributes, custom string and SDK version. A dynamic-shape model is set to its first exported
 * shape (rknn_set_input_shapes) and its attributes are those of that shape. The runtime must
 * outlive the model. */
int rkb_model_open(rkb_runtime* rt, const void* data, uint32_t size, rkb_model** out, char* err,
                   size_t err_len) RKB_NOEXCEPT;
uint32_t rkb_model_n_inputs(const rkb_model* m) RKB_NOEXCEPT;
uint32_t rkb_model_n_outputs(const rkb_model* m) RKB_NOEXCEPT;
/* Attributes from RKNN_QUERY_INPUT_ATTR / RKNN_QUERY_OUTPUT_ATTR; NULL for a bad index. */
const rknn_tensor_attr* rkb_model_input_attr(const rkb_model* m, uint32_t i) RKB_NOEXCEPT;
const rknn_tensor_attr* rkb_model_output_attr(const rkb_model* m, uint32_t i) RKB_NOEXCEPT;
/* NUL-terminated; empty when the model has none or the query is unsupported. */
const char* rkb_model_custom_string(const rkb_model* m) RKB_NOEXCEPT;
const char* rkb_model_api_version(const rkb_model* m) RKB_NOEXCEPT;
const char* rkb_model_driver_version(const rkb_model* m) RKB_NOEXCEPT;

/* Create `n_contexts` contexts, each with input/output memory bound by rknn_set_io_mem.
 * Context 0 is the model's own; the others come from rknn_dup_context and share its weights. If the
 * runtime refuses to duplicate (Rockchip documents this for dynamic-shape models) and `data`/`size`
 * (the model bytes) are given, that context is initialised from them instead and holds its own copy
 * of the weights; rkb_model_shared_contexts tells how many contexts share.
 * core_masks[i] goes to context i with rknn_set_core_mask (skipped for 0 = AUTO, the default).
 * Memory, per context: input i dense, of element type input_types[i], laid out NHWC when it is 4-D
 * (the zero-copy API takes NHWC, not NCHW, for 4-D inputs) and as reported otherwise; output i
 * dense, of element type output_types[i] (FLOAT32 or FLOAT16), in its reported layout.
 * Called once; on failure everything it created is destroyed again. */
int rkb_model_prepare(rkb_model* m, uint32_t n_contexts, const uint32_t* core_masks,
                      const int32_t* input_types, const int32_t* output_types, const void* data,
                      uint32_t size, char* err, size_t err_len) RKB_NOEXCEPT;
/* Contexts (context 0 included) that use context 0's weights rather than a copy. */
uint32_t rkb_model_shared_contexts(const rkb_model* m) RKB_NOEXCEPT;
/* Number of input shapes of a dynamic-shape model (the first is used); 0 for a static model. */
uint32_t rkb_model_dynamic_shapes(const rkb_model* m) RKB_NOEXCEPT;
/* The attribute input i's memory is bound with (dims in the bound layout); NULL before prepare. */
const rknn_tensor_attr* rkb_model_bound_input_attr(const rkb_model* m, uint32_t i) RKB_NOEXCEPT;
uint32_t rkb_model_n_contexts(const rkb_model* m) RKB_NOEXCEPT;
/* The rknn_context value of slot `slot` (0 when out of range); lets tests correlate with the runtime. */
uint64_t rkb_model_context_handle(const rkb_model* m, uint32_t slot) RKB_NOEXCEPT;

/* Lease a free context, blocking while all are busy. RKB_ERR_CLOSED once closing has begun. */
int rkb_model_acquire(rkb_model* m, uint32_t* slot) RKB_NOEXCEPT;
void rkb_model_release(rkb_model* m, uint32_t slot) RKB_NOEXCEPT;

/* Input memory of a leased slot: the NPU-visible buffer the caller writes its tensor into. */
void* rkb_input_data(rkb_model* m, uint32_t slot, uint32_t i, uint32_t* size) RKB_NOEXCEPT;
/* Fill input i of a leased slot from a dense NCHW buffer of `bytes` bytes (same element type),
 * transposing into the NHWC memory the NPU reads: for preprocessing that produces NCHW. */
int rkb_input_write_nchw(rkb_model* m, uint32_t slot, uint32_t i, const void* src, size_t bytes) RKB_NOEXCEPT;
/* rknn_run on a leased slot; outputs land in its bound output memory. */
int rkb_run(rkb_model* m, uint32_t slot, char* err, size_t err_len) RKB_NOEXCEPT;
/* Output memory of a leased slot, in the element type chosen at prepare. */
const void* rkb_output_data(const rkb_model* m, uint32_t slot, uint32_t i,
                            uint32_t* size) RKB_NOEXCEPT;
int32_t rkb_output_type(const rkb_model* m, uint32_t i) RKB_NOEXCEPT;
/* Copy output i of a leased slot into `dst` as float32, widening FLOAT16; `n` must be n_elems. */
int rkb_output_to_float(const rkb_model* m, uint32_t slot, uint32_t i, float* dst, size_t n) RKB_NOEXCEPT;

/* Wait until no slot is leased, then destroy memory and contexts (duplicates first, the context that
 * owns the weights last). Afterwards acquire answers RKB_ERR_CLOSED; attributes stay readable.
 * Idempotent, and safe on a model whose prepare failed. */
void rkb_model_close(rkb_model* m) RKB_NOEXCEPT;
/* Close if needed and free the model. No other thread may still hold `m`. */
void rkb_model_free(rkb_model* m) RKB_NOEXCEPT;

/* IEEE binary16 -> binary32 for n elements; exact for every value (subnormals, inf, NaN payload). */
void rkb_half_to_float(const uint16_t* src, float* dst, size_t n) RKB_NOEXCEPT;

#ifdef __cplusplus
}
#endif

#endif /* IMMICH_RKNN_BRIDGE_H */
