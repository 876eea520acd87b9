/* Shared between the bridge's translation units: the runtime's function table and error helpers. */
#ifndef IMMICH_RKNN_INTERNAL_H
#define IMMICH_RKNN_INTERNAL_H

#include <condition_variable>
#include <cstdarg>
#include <mutex>
#include <string>
#include <vector>

#include "rknn_bridge.h"

struct rkb_runtime {
    void* handle = nullptr;
    std::string path;
    // Always needed: resolved at open, a missing one fails the open with its name.
    rknn_init_fn init = nullptr;
    rknn_destroy_fn destroy = nullptr;
    rknn_query_fn query = nullptr;
    rknn_create_mem_fn create_mem = nullptr;
    rknn_destroy_mem_fn destroy_mem = nullptr;
    rknn_set_io_mem_fn set_io_mem = nullptr;
    rknn_run_fn run = nullptr;
    // Needed only for RKNN_THREADS > 1 / explicit core masks: a runtime without them still serves
    // one context, and asking for more names the missing function then.
    rknn_dup_context_fn dup_context = nullptr;
    rknn_set_core_mask_fn set_core_mask = nullptr;
    // Needed only by dynamic-shape models (runtime >= 1.5).
    rknn_set_input_shapes_fn set_input_shapes = nullptr;
};

namespace rkb {

struct Binding {
    rknn_tensor_mem* mem = nullptr;
    rknn_tensor_attr attr{};  // what was passed to rknn_set_io_mem for this memory
};

struct Slot {
    rknn_context ctx = 0;
    bool owns_ctx = false;  // false for slot 0, whose context is the model's own
    std::vector<Binding> inputs;
    std::vector<Binding> outputs;
};

}  // namespace rkb

struct rkb_model {
    rkb_runtime* rt = nullptr;
    rknn_context ctx0 = 0;
    bool has_ctx0 = false;
    std::vector<rknn_tensor_attr> in_attrs;
    std::vector<rknn_tensor_attr> out_attrs;
    std::string custom_string;
    std::string api_version;
    std::string driver_version;
    uint32_t dynamic_shapes = 0;                  // 0: static model
    std::vector<rknn_tensor_attr> shape_attrs;    // dynamic models: what rknn_set_input_shapes gets
    uint32_t shared_contexts = 0;

    std::vector<rkb::Slot> slots;
    bool prepared = false;

    // The lease pool: free slots, who holds what, and how many threads are waiting.
    std::mutex mu;
    std::condition_variable cv;
    std::vector<uint32_t> free_slots;
    std::vector<bool> leased;
    uint32_t n_leased = 0;
    uint32_t n_waiting = 0;  // threads inside rkb_model_acquire
    bool closing = false;
};

namespace rkb {

/* Format a message into err (always NUL-terminated when err_len > 0) and return `code`. */
int fail(char* err, size_t err_len, int code, const char* fmt, ...) noexcept
    __attribute__((format(printf, 4, 5)));

/* "rknn_run failed on context 1: RKNN_ERR_TIMEOUT (-2)" plus a hint for the codes users can act on. */
int fail_rknn(char* err, size_t err_len, int code, const char* what) noexcept;

/* Bytes per element of an RKNN element type; 0 for types the bridge cannot lay out (INT4). */
uint32_t element_size(int32_t type) noexcept;

/* `attr` with its dims given in layout `fmt` (4-D NCHW <-> NHWC); false if that is not possible. */
bool with_layout(const rknn_tensor_attr& attr, int32_t fmt, rknn_tensor_attr* out) noexcept;

/* Destroy every context and memory of the model; the struct (and its lease pool) stays valid. */
void release_runtime_objects(rkb_model* m) noexcept;

}  // namespace rkb

#endif /* IMMICH_RKNN_INTERNAL_H */
