// Opening librknnrt.so at run time, error text, and fp16 widening for the RKNN bridge.
#include <dlfcn.h>

#include <cstdio>
#include <cstring>
#include <new>

#include "rknn_internal.h"

namespace rkb {

int fail(char* err, size_t err_len, int code, const char* fmt, ...) noexcept {
    if (err != nullptr && err_len > 0) {
        va_list args;
        va_start(args, fmt);
        std::vsnprintf(err, err_len, fmt, args);
        va_end(args);
    }
    return code;
}

// What a user can do about the codes that come from the setup rather than from a bug.
static const char* hint(int code) noexcept {
    switch (code) {
        case RKNN_ERR_MODEL_INVALID:
            return " (the .rknn file is corrupt or was exported by an incompatible rknn-toolkit2)";
        case RKNN_ERR_DEVICE_UNAVAILABLE:
            return " (is /dev/rknpu or /dev/dri visible to this process?)";
        case RKNN_ERR_DEVICE_UNMATCH:
            return " (librknnrt and the RKNPU kernel driver do not match; update them together)";
        case RKNN_ERR_TARGET_PLATFORM_UNMATCH:
            return " (the model was compiled for another Rockchip SoC)";
        case RKNN_ERR_MALLOC_FAIL:
            return " (the NPU could not allocate memory; fewer MACHINE_LEARNING_RKNN_THREADS use less)";
        default:
            return "";
    }
}

int fail_rknn(char* err, size_t err_len, int code, const char* what) noexcept {
    return fail(err, err_len, code, "%s failed: %s (%d)%s", what, rkb_code_name(code), code, hint(code));
}

uint32_t element_size(int32_t type) noexcept {
    switch (type) {
        case RKNN_TENSOR_FLOAT32:
        case RKNN_TENSOR_INT32:
        case RKNN_TENSOR_UINT32:
            return 4;
        case RKNN_TENSOR_FLOAT16:
        case RKNN_TENSOR_BFLOAT16:
        case RKNN_TENSOR_INT16:
        case RKNN_TENSOR_UINT16:
            return 2;
        case RKNN_TENSOR_INT8:
        case RKNN_TENSOR_UINT8:
        case RKNN_TENSOR_BOOL:
            return 1;
        case RKNN_TENSOR_INT64:
            return 8;
        default:
            return 0;
    }
}

template <typename Fn>
static bool resolve(void* handle, const char* name, Fn* out) noexcept {
    void* sym = dlsym(handle, name);
    *out = reinterpret_cast<Fn>(sym);
    return sym != nullptr;
}

}  // namespace rkb

extern "C" {

const char* rkb_code_name(int code) noexcept {
    switch (code) {
        case RKNN_SUCC: return "RKNN_SUCC";
        case RKNN_ERR_FAIL: return "RKNN_ERR_FAIL";
        case RKNN_ERR_TIMEOUT: return "RKNN_ERR_TIMEOUT";
        case RKNN_ERR_DEVICE_UNAVAILABLE: return "RKNN_ERR_DEVICE_UNAVAILABLE";
        case RKNN_ERR_MALLOC_FAIL: return "RKNN_ERR_MALLOC_FAIL";
        case RKNN_ERR_PARAM_INVALID: return "RKNN_ERR_PARAM_INVALID";
        case RKNN_ERR_MODEL_INVALID: return "RKNN_ERR_MODEL_INVALID";
        case RKNN_ERR_CTX_INVALID: return "RKNN_ERR_CTX_INVALID";
        case RKNN_ERR_INPUT_INVALID: return "RKNN_ERR_INPUT_INVALID";
        case RKNN_ERR_OUTPUT_INVALID: return "RKNN_ERR_OUTPUT_INVALID";
        case RKNN_ERR_DEVICE_UNMATCH: return "RKNN_ERR_DEVICE_UNMATCH";
        case RKNN_ERR_INCOMPATILE_PRE_COMPILE_MODEL: return "RKNN_ERR_INCOMPATILE_PRE_COMPILE_MODEL";
        case RKNN_ERR_INCOMPATILE_OPTIMIZATION_LEVEL_VERSION:
            return "RKNN_ERR_INCOMPATILE_OPTIMIZATION_LEVEL_VERSION";
        case RKNN_ERR_TARGET_PLATFORM_UNMATCH: return "RKNN_ERR_TARGET_PLATFORM_UNMATCH";
        case RKB_ERR_LOAD: return "RKB_ERR_LOAD";
        case RKB_ERR_SYMBOL: return "RKB_ERR_SYMBOL";
        case RKB_ERR_ARGUMENT: return "RKB_ERR_ARGUMENT";
        case RKB_ERR_MEMORY: return "RKB_ERR_MEMORY";
        case RKB_ERR_CLOSED: return "RKB_ERR_CLOSED";
        case RKB_ERR_STATE: return "RKB_ERR_STATE";
        default: return "unknown error";
    }
}

int rkb_runtime_open(const char* path, rkb_runtime** out, char* err, size_t err_len) noexcept {
    if (path == nullptr || out == nullptr) {
        return rkb::fail(err, err_len, RKB_ERR_ARGUMENT, "no library path given");
    }
    *out = nullptr;
    // RTLD_LOCAL: librknnrt's symbols stay out of the global namespace of the Python process.
    void* handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
        const char* why = dlerror();
        return rkb::fail(err, err_len, RKB_ERR_LOAD, "cannot load %s: %s", path, why ? why : "unknown dlopen error");
    }
    rkb_runtime* rt = new (std::nothrow) rkb_runtime;
    if (rt == nullptr) {
        dlclose(handle);
        return rkb::fail(err, err_len, RKB_ERR_MEMORY, "out of memory");
    }
    rt->handle = handle;
    struct Required {
        const char* name;
        bool ok;
    };
    const Required required[] = {
        {"rknn_init", rkb::resolve(handle, "rknn_init", &rt->init)},
        {"rknn_destroy", rkb::resolve(handle, "rknn_destroy", &rt->destroy)},
        {"rknn_query", rkb::resolve(handle, "rknn_query", &rt->query)},
        {"rknn_create_mem", rkb::resolve(handle, "rknn_create_mem", &rt->create_mem)},
        {"rknn_destroy_mem", rkb::resolve(handle, "rknn_destroy_mem", &rt->destroy_mem)},
        {"rknn_set_io_mem", rkb::resolve(handle, "rknn_set_io_mem", &rt->set_io_mem)},
        {"rknn_run", rkb::resolve(handle, "rknn_run", &rt->run)},
    };
    for (const Required& r : required) {
        if (!r.ok) {
            rkb::fail(err, err_len, RKB_ERR_SYMBOL,
                      "%s has no function %s, which the RKNN bridge needs "
                      "(is it librknnrt.so from Rockchip's RKNPU2 runtime?)",
                      path, r.name);
            dlclose(handle);
            delete rt;
            return RKB_ERR_SYMBOL;
        }
    }
    rkb::resolve(handle, "rknn_dup_context", &rt->dup_context);
    rkb::resolve(handle, "rknn_set_core_mask", &rt->set_core_mask);
    rkb::resolve(handle, "rknn_set_input_shapes", &rt->set_input_shapes);
    try {
        rt->path = path;
    } catch (...) {
        dlclose(handle);
        delete rt;
        return rkb::fail(err, err_len, RKB_ERR_MEMORY, "out of memory");
    }
    *out = rt;
    return RKB_OK;
}

int rkb_runtime_has(const rkb_runtime* rt, const char* name) noexcept {
    if (rt == nullptr || name == nullptr) return 0;
    return dlsym(rt->handle, name) != nullptr ? 1 : 0;
}

void rkb_runtime_close(rkb_runtime* rt) noexcept {
    if (rt == nullptr) return;
    dlclose(rt->handle);
    delete rt;
}

// Bit-exact widening. Zero and subnormal halves go through an integer->float conversion and a
// power-of-two scale, which never produces an fp32 subnormal, so the result stays exact even on
// threads that run with flush-to-zero / denormals-are-zero (ONNX Runtime sets those).
void rkb_half_to_float(const uint16_t* src, float* dst, size_t n) noexcept {
    for (size_t i = 0; i < n; ++i) {
        const uint32_t h = src[i];
        const uint32_t sign = (h & 0x8000u) << 16;
        const uint32_t exponent = (h >> 10) & 0x1fu;
        const uint32_t mantissa = h & 0x3ffu;
        uint32_t bits;
        if (exponent == 0) {
            const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
            std::memcpy(&bits, &magnitude, sizeof bits);
        } else if (exponent == 0x1fu) {
            bits = 0x7f800000u | (mantissa << 13);
        } else {
            bits = ((exponent + (127u - 15u)) << 23) | (mantissa << 13);
        }
        bits |= sign;
        std::memcpy(&dst[i], &bits, sizeof bits);
    }
}

}  // extern "C"
