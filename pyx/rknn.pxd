# Declarations for the RKNN bridge (csrc/rknn): our own ABI header and the bridge's C API.
from libc.stdint cimport int8_t, int32_t, uint8_t, uint16_t, uint32_t, uint64_t


cdef extern from "rknn/rknn_abi.h" nogil:
    # Enum-typed fields are read as int; the C++ compiler does the conversion.
    ctypedef struct rknn_tensor_attr:
        uint32_t index
        uint32_t n_dims
        uint32_t dims[16]
        char name[256]
        uint32_t n_elems
        uint32_t size
        int fmt
        int type
        int qnt_type
        int8_t fl
        int32_t zp
        float scale
        uint32_t w_stride
        uint32_t size_with_stride
        uint8_t pass_through
        uint32_t h_stride


cdef extern from "rknn/rknn_bridge.h" nogil:
    ctypedef struct rkb_runtime:
        pass
    ctypedef struct rkb_model:
        pass

    const char* rkb_code_name(int code) noexcept

    int rkb_runtime_open(const char* path, rkb_runtime** out, char* err, size_t err_len) noexcept
    int rkb_runtime_has(const rkb_runtime* rt, const char* name) noexcept
    void rkb_runtime_close(rkb_runtime* rt) noexcept

    int rkb_model_open(rkb_runtime* rt, const void* data, uint32_t size, rkb_model** out, char* err,
                       size_t err_len) noexcept
    uint32_t rkb_model_n_inputs(const rkb_model* m) noexcept
    uint32_t rkb_model_n_outputs(const rkb_model* m) noexcept
    const rknn_tensor_attr* rkb_model_input_attr(const rkb_model* m, uint32_t i) noexcept
    const rknn_tensor_attr* rkb_model_output_attr(const rkb_model* m, uint32_t i) noexcept
    const char* rkb_model_custom_string(const rkb_model* m) noexcept
    const char* rkb_model_api_version(const rkb_model* m) noexcept
    const char* rkb_model_driver_version(const rkb_model* m) noexcept

    int rkb_model_prepare(rkb_model* m, uint32_t n_contexts, const uint32_t* core_masks,
                          const int32_t* input_types, const int32_t* output_types, const void* data,
                          uint32_t size, char* err, size_t err_len) noexcept
    uint32_t rkb_model_shared_contexts(const rkb_model* m) noexcept
    uint32_t rkb_model_dynamic_shapes(const rkb_model* m) noexcept
    const rknn_tensor_attr* rkb_model_bound_input_attr(const rkb_model* m, uint32_t i) noexcept
    uint32_t rkb_model_n_contexts(const rkb_model* m) noexcept
    uint64_t rkb_model_context_handle(const rkb_model* m, uint32_t slot) noexcept

    int rkb_model_acquire(rkb_model* m, uint32_t* slot) noexcept
    void rkb_model_release(rkb_model* m, uint32_t slot) noexcept
    void* rkb_input_data(rkb_model* m, uint32_t slot, uint32_t i, uint32_t* size) noexcept
    int rkb_input_write_nchw(rkb_model* m, uint32_t slot, uint32_t i, const void* src, size_t bytes) noexcept
    int rkb_run(rkb_model* m, uint32_t slot, char* err, size_t err_len) noexcept
    const void* rkb_output_data(const rkb_model* m, uint32_t slot, uint32_t i, uint32_t* size) noexcept
    int32_t rkb_output_type(const rkb_model* m, uint32_t i) noexcept
    int rkb_output_to_float(const rkb_model* m, uint32_t slot, uint32_t i, float* dst, size_t n) noexcept

    void rkb_model_close(rkb_model* m) noexcept
    void rkb_model_free(rkb_model* m) noexcept

    void rkb_half_to_float(const uint16_t* src, float* dst, size_t n) noexcept
