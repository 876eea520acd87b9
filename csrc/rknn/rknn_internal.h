/* Shared between the bridge's translation units: the runtime's function table and error helpers. */
#ifndef IMMICH_RKNN_INTERNAL_H
#define IMMICH_RKNN_INTERNAL_H

#include <cstdarg>
#include <string>

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
};

namespace rkb {

/* Format a message into err (always NUL-terminated when err_len > 0) and return `code`. */
int fail(char* err, size_t err_len, int code, const char* fmt, ...) noexcept
    __attribute__((format(printf, 4, 5)));

/* "rknn_run failed on context 1: RKNN_ERR_TIMEOUT (-2)" plus a hint for the codes users can act on. */
int fail_rknn(char* err, size_t err_len, int code, const char* what) noexcept;

/* Bytes per element of an RKNN element type; 0 for types the bridge cannot lay out (INT4). */
uint32_t element_size(int32_t type) noexcept;

}  // namespace rkb

#endif /* IMMICH_RKNN_INTERNAL_H */
