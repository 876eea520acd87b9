/*
 * Our own declarations of the librknnrt C ABI (Rockchip RKNPU2 runtime), written from the facts in
 * Rockchip's public rknn_api.h documentation: function signatures, struct field order and types,
 * enum and error-code values. Nothing here is Rockchip's text; only the binary interface matches.
 *
 * Why our own header: the bridge opens librknnrt.so at run time (dlopen), so building immich_ml
 * needs no Rockchip SDK, and the test double of librknnrt.so compiles against this same file.
 * The layout on 64-bit Linux is pinned by static assertions at the end and re-checked by
 * tests/backends/test_rknn_abi.py against independently derived offsets.
 *
 * Plain C (C99) so that both the C++ bridge and the C test double include it.
 */
#ifndef IMMICH_RKNN_ABI_H
#define IMMICH_RKNN_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A context handle: 32 bits on 32-bit ARM, 64 bits elsewhere. */
#if defined(__arm__)
typedef uint32_t rknn_context;
#else
typedef uint64_t rknn_context;
#endif

/* Return codes: 0 is success, failures are negative. */
#define RKNN_SUCC 0
#define RKNN_ERR_FAIL (-1)
#define RKNN_ERR_TIMEOUT (-2)
#define RKNN_ERR_DEVICE_UNAVAILABLE (-3)
#define RKNN_ERR_MALLOC_FAIL (-4)
#define RKNN_ERR_PARAM_INVALID (-5)
#define RKNN_ERR_MODEL_INVALID (-6)
#define RKNN_ERR_CTX_INVALID (-7)
#define RKNN_ERR_INPUT_INVALID (-8)
#define RKNN_ERR_OUTPUT_INVALID (-9)
#define RKNN_ERR_DEVICE_UNMATCH (-10)
#define RKNN_ERR_INCOMPATILE_PRE_COMPILE_MODEL (-11)
#define RKNN_ERR_INCOMPATILE_OPTIMIZATION_LEVEL_VERSION (-12)
#define RKNN_ERR_TARGET_PLATFORM_UNMATCH (-13)

/* Array bounds inside the structs below. */
#define RKNN_MAX_DIMS 16
#define RKNN_MAX_NAME_LEN 256
#define RKNN_MAX_DYNAMIC_SHAPE_NUM 512

/* rknn_query commands (the NATIVE_* queries report the NPU's own layout; the bridge does not use them). */
typedef enum {
    RKNN_QUERY_IN_OUT_NUM = 0,
    RKNN_QUERY_INPUT_ATTR = 1,
    RKNN_QUERY_OUTPUT_ATTR = 2,
    RKNN_QUERY_PERF_DETAIL = 3,
    RKNN_QUERY_PERF_RUN = 4,
    RKNN_QUERY_SDK_VERSION = 5,
    RKNN_QUERY_MEM_SIZE = 6,
    RKNN_QUERY_CUSTOM_STRING = 7,
    RKNN_QUERY_NATIVE_INPUT_ATTR = 8,
    RKNN_QUERY_NATIVE_OUTPUT_ATTR = 9,
    RKNN_QUERY_NATIVE_NHWC_INPUT_ATTR = 10,
    RKNN_QUERY_NATIVE_NHWC_OUTPUT_ATTR = 11,
    RKNN_QUERY_DEVICE_MEM_INFO = 12,
    RKNN_QUERY_INPUT_DYNAMIC_RANGE = 13, /* runtime >= 1.5: the input shapes a dynamic-shape model accepts */
    RKNN_QUERY_CURRENT_INPUT_ATTR = 14,
    RKNN_QUERY_CURRENT_OUTPUT_ATTR = 15
} rknn_query_cmd;

/* Element types. */
typedef enum {
    RKNN_TENSOR_FLOAT32 = 0,
    RKNN_TENSOR_FLOAT16 = 1,
    RKNN_TENSOR_INT8 = 2,
    RKNN_TENSOR_UINT8 = 3,
    RKNN_TENSOR_INT16 = 4,
    RKNN_TENSOR_UINT16 = 5,
    RKNN_TENSOR_INT32 = 6,
    RKNN_TENSOR_UINT32 = 7,
    RKNN_TENSOR_INT64 = 8,
    RKNN_TENSOR_BOOL = 9,
    RKNN_TENSOR_INT4 = 10,
    RKNN_TENSOR_BFLOAT16 = 11
} rknn_tensor_type;

/* Quantization schemes. */
typedef enum {
    RKNN_TENSOR_QNT_NONE = 0,
    RKNN_TENSOR_QNT_DFP = 1,
    RKNN_TENSOR_QNT_AFFINE_ASYMMETRIC = 2
} rknn_tensor_qnt_type;

/* Memory layouts. */
typedef enum {
    RKNN_TENSOR_NCHW = 0,
    RKNN_TENSOR_NHWC = 1,
    RKNN_TENSOR_NC1HWC2 = 2,
    RKNN_TENSOR_UNDEFINED = 3
} rknn_tensor_format;

/* Which NPU cores a context may run on (multi-core SoCs: RK3576 has 2, RK3588 has 3). */
typedef enum {
    RKNN_NPU_CORE_AUTO = 0,
    RKNN_NPU_CORE_0 = 1,
    RKNN_NPU_CORE_1 = 2,
    RKNN_NPU_CORE_2 = 4,
    RKNN_NPU_CORE_0_1 = 3,
    RKNN_NPU_CORE_0_1_2 = 7,
    RKNN_NPU_CORE_ALL = 0xffff
} rknn_core_mask;

/* rknn_tensor_mem.flags: set when the runtime allocated the descriptor itself (rknn_create_mem). */
#define RKNN_TENSOR_MEMORY_FLAGS_ALLOC_INSIDE 1

/* Answer to RKNN_QUERY_IN_OUT_NUM. */
typedef struct {
    uint32_t n_input;
    uint32_t n_output;
} rknn_input_output_num;

/* Answer to RKNN_QUERY_INPUT_ATTR / RKNN_QUERY_OUTPUT_ATTR (set `index` before the query), and the
 * description handed to rknn_set_io_mem of the buffer the caller provides. */
typedef struct {
    uint32_t index;
    uint32_t n_dims;
    uint32_t dims[RKNN_MAX_DIMS];
    char name[RKNN_MAX_NAME_LEN];
    uint32_t n_elems;
    uint32_t size;              /* bytes of the dense tensor */
    rknn_tensor_format fmt;
    rknn_tensor_type type;
    rknn_tensor_qnt_type qnt_type;
    int8_t fl;                  /* fractional length, DFP quantization */
    int32_t zp;                 /* zero point, affine quantization */
    float scale;                /* scale, affine quantization */
    uint32_t w_stride;          /* read-only; 0 means "equals width" */
    uint32_t size_with_stride;  /* bytes including row padding */
    uint8_t pass_through;       /* 1: buffer is already in the NPU's native form; 0: runtime converts from type/fmt */
    uint32_t h_stride;          /* 0 means "equals height" */
} rknn_tensor_attr;

/* Answer to RKNN_QUERY_INPUT_DYNAMIC_RANGE (set `index` first): shape_number shapes of n_dims each,
 * in layout `fmt` (the source framework's; NCHW for ONNX image inputs). 33 KiB: allocate it. */
typedef struct {
    uint32_t index;
    uint32_t shape_number;
    rknn_tensor_format fmt;
    char name[RKNN_MAX_NAME_LEN];
    uint32_t dyn_range[RKNN_MAX_DYNAMIC_SHAPE_NUM][RKNN_MAX_DIMS];
    uint32_t n_dims;
} rknn_input_range;

/* Answer to RKNN_QUERY_SDK_VERSION. */
typedef struct {
    char api_version[256];
    char drv_version[256];
} rknn_sdk_version;

/* Answer to RKNN_QUERY_CUSTOM_STRING: text stored in the model at export time (Immich: JSON dims). */
typedef struct {
    char string[1024];
} rknn_custom_string;

/* Tensor memory the NPU reads or writes directly (rknn_create_mem / rknn_set_io_mem). */
typedef struct {
    void* virt_addr;
    uint64_t phys_addr;
    int32_t fd;
    int32_t offset;
    uint32_t size;
    uint32_t flags;
    void* priv_data;
} rknn_tensor_mem;

/* One output for rknn_outputs_get (the copying path; the bridge binds output memory instead). */
typedef struct {
    uint8_t want_float;
    uint8_t is_prealloc;
    uint32_t index;
    void* buf;
    uint32_t size;
} rknn_output;

/* Optional arguments of rknn_init / rknn_run / rknn_outputs_get (the bridge passes NULL). */
typedef struct rknn_init_extend rknn_init_extend;
typedef struct rknn_run_extend rknn_run_extend;
typedef struct rknn_output_extend rknn_output_extend;

/* Function types, one per symbol the bridge resolves with dlsym. */
typedef int (*rknn_init_fn)(rknn_context* context, void* model, uint32_t size, uint32_t flag,
                            rknn_init_extend* extend);
typedef int (*rknn_dup_context_fn)(rknn_context* context_in, rknn_context* context_out);
typedef int (*rknn_destroy_fn)(rknn_context context);
typedef int (*rknn_query_fn)(rknn_context context, rknn_query_cmd cmd, void* info, uint32_t size);
typedef int (*rknn_set_core_mask_fn)(rknn_context context, rknn_core_mask core_mask);
typedef rknn_tensor_mem* (*rknn_create_mem_fn)(rknn_context context, uint32_t size);
typedef int (*rknn_destroy_mem_fn)(rknn_context context, rknn_tensor_mem* mem);
typedef int (*rknn_set_io_mem_fn)(rknn_context context, rknn_tensor_mem* mem, rknn_tensor_attr* attr);
typedef int (*rknn_run_fn)(rknn_context context, rknn_run_extend* extend);
/* Dynamic-shape models: choose the shape of every input (4-D inputs as NHWC) before binding memory. */
typedef int (*rknn_set_input_shapes_fn)(rknn_context context, uint32_t n_inputs, rknn_tensor_attr attr[]);
typedef int (*rknn_outputs_get_fn)(rknn_context context, uint32_t n_outputs, rknn_output outputs[],
                                   rknn_output_extend* extend);
typedef int (*rknn_outputs_release_fn)(rknn_context context, uint32_t n_outputs, rknn_output outputs[]);

/* The layout this header must have on 64-bit Linux (LP64), derived from the documented field lists. */
#if defined(__LP64__)
#ifdef __cplusplus
#define IMMICH_RKNN_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define IMMICH_RKNN_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif
IMMICH_RKNN_STATIC_ASSERT(sizeof(rknn_context) == 8, "rknn_context is 64-bit on LP64");
IMMICH_RKNN_STATIC_ASSERT(sizeof(rknn_input_output_num) == 8, "rknn_input_output_num size");
IMMICH_RKNN_STATIC_ASSERT(sizeof(rknn_tensor_attr) == 376, "rknn_tensor_attr size");
IMMICH_RKNN_STATIC_ASSERT(offsetof(rknn_tensor_attr, name) == 72, "rknn_tensor_attr.name");
IMMICH_RKNN_STATIC_ASSERT(offsetof(rknn_tensor_attr, fmt) == 336, "rknn_tensor_attr.fmt");
IMMICH_RKNN_STATIC_ASSERT(offsetof(rknn_tensor_attr, zp) == 352, "rknn_tensor_attr.zp");
IMMICH_RKNN_STATIC_ASSERT(offsetof(rknn_tensor_attr, pass_through) == 368, "rknn_tensor_attr.pass_through");
IMMICH_RKNN_STATIC_ASSERT(offsetof(rknn_tensor_attr, h_stride) == 372, "rknn_tensor_attr.h_stride");
IMMICH_RKNN_STATIC_ASSERT(sizeof(rknn_tensor_mem) == 40, "rknn_tensor_mem size");
IMMICH_RKNN_STATIC_ASSERT(offsetof(rknn_tensor_mem, size) == 24, "rknn_tensor_mem.size");
IMMICH_RKNN_STATIC_ASSERT(offsetof(rknn_tensor_mem, priv_data) == 32, "rknn_tensor_mem.priv_data");
IMMICH_RKNN_STATIC_ASSERT(sizeof(rknn_output) == 24, "rknn_output size");
IMMICH_RKNN_STATIC_ASSERT(sizeof(rknn_sdk_version) == 512, "rknn_sdk_version size");
IMMICH_RKNN_STATIC_ASSERT(sizeof(rknn_input_range) == 33040, "rknn_input_range size");
IMMICH_RKNN_STATIC_ASSERT(offsetof(rknn_input_range, dyn_range) == 268, "rknn_input_range.dyn_range");
IMMICH_RKNN_STATIC_ASSERT(sizeof(rknn_custom_string) == 1024, "rknn_custom_string size");
IMMICH_RKNN_STATIC_ASSERT(sizeof(rknn_tensor_format) == 4 && sizeof(rknn_tensor_type) == 4, "enums are int-sized");
#undef IMMICH_RKNN_STATIC_ASSERT
#endif

#ifdef __cplusplus
}
#endif

#endif /* IMMICH_RKNN_ABI_H */
