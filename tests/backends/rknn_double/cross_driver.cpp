// Drives the RKNN bridge against the test double on another architecture (aarch64 under qemu-user,
// the architecture of real RK35xx boards), without Python:
//   cross_driver <librknnrt double> <model file> <input float32 NCHW> <expected outputs float32>
// Prints the ABI layout as compiled for this architecture, then "OK" or the first failure.
#include <dlfcn.h>

#include <cmath>
#include <cstddef>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <vector>

#include "rknn_bridge.h"

namespace {

std::vector<char> slurp(const char* path) {
    std::ifstream in(path, std::ios::binary);
    return std::vector<char>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

int check(bool ok, const char* what) {
    if (!ok) std::printf("FAIL %s\n", what);
    return ok ? 0 : 1;
}

template <typename Fn>
Fn sym(void* lib, const char* name) {
    return reinterpret_cast<Fn>(dlsym(lib, name));
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 5) return 2;
    std::printf("rknn_tensor_attr %zu\nrknn_tensor_attr.zp %zu\nrknn_tensor_attr.h_stride %zu\n",
                sizeof(rknn_tensor_attr), offsetof(rknn_tensor_attr, zp), offsetof(rknn_tensor_attr, h_stride));
    std::printf("rknn_tensor_mem %zu\nrknn_output %zu\nrknn_context %zu\n", sizeof(rknn_tensor_mem),
                sizeof(rknn_output), sizeof(rknn_context));

    void* dbl = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);  // the same instance the bridge opens
    if (dbl == nullptr) return check(false, "dlopen double");
    auto blob_allocs = sym<int (*)()>(dbl, "rknn_double_weight_blob_allocs");
    auto live_contexts = sym<int (*)()>(dbl, "rknn_double_live_contexts");
    auto live_mems = sym<int (*)()>(dbl, "rknn_double_live_mems");
    auto violations = sym<int (*)()>(dbl, "rknn_double_violations");
    auto core_mask = sym<long long (*)(uint64_t)>(dbl, "rknn_double_core_mask");
    auto last_input = sym<uint64_t (*)(uint64_t, uint32_t)>(dbl, "rknn_double_last_input_addr");

    char err[768] = {0};
    rkb_runtime* rt = nullptr;
    if (rkb_runtime_open(argv[1], &rt, err, sizeof err) != RKB_OK) return check(false, err);
    const std::vector<char> model = slurp(argv[2]);
    rkb_model* m = nullptr;
    if (rkb_model_open(rt, model.data(), static_cast<uint32_t>(model.size()), &m, err, sizeof err) != RKB_OK) {
        return check(false, err);
    }
    const uint32_t masks[3] = {1, 2, 4};
    const int32_t in_types[1] = {RKNN_TENSOR_FLOAT32};
    const int32_t out_types[2] = {RKNN_TENSOR_FLOAT32, RKNN_TENSOR_FLOAT16};
    if (rkb_model_prepare(m, 3, masks, in_types, out_types, nullptr, 0, err, sizeof err) != RKB_OK) {
        return check(false, err);
    }
    int failures = check(blob_allocs() == 1, "one weight blob for three contexts");
    failures += check(live_contexts() == 3, "three live contexts");
    for (uint32_t s = 0; s < 3; ++s) failures += check(core_mask(rkb_model_context_handle(m, s)) == masks[s], "mask");

    const std::vector<char> input = slurp(argv[3]);
    const std::vector<char> expected_raw = slurp(argv[4]);
    const float* expected = reinterpret_cast<const float*>(expected_raw.data());
    uint32_t slot = 0, size = 0;
    if (rkb_model_acquire(m, &slot) != RKB_OK) return check(false, "acquire");
    void* dst = rkb_input_data(m, slot, 0, &size);
    failures += check(size == input.size(), "input memory size");
    // NCHW data, transposed by the bridge into the NHWC memory the runtime reads.
    failures += check(rkb_input_write_nchw(m, slot, 0, input.data(), input.size()) == RKB_OK, "write NCHW");
    if (rkb_run(m, slot, err, sizeof err) != RKB_OK) return check(false, err);
    failures += check(last_input(rkb_model_context_handle(m, slot), 0) == reinterpret_cast<uintptr_t>(dst),
                      "the runtime read the bound memory");
    size_t offset = 0;
    for (uint32_t i = 0; i < rkb_model_n_outputs(m); ++i) {
        const size_t n = rkb_model_output_attr(m, i)->n_elems;
        std::vector<float> out(n);
        failures += check(rkb_output_to_float(m, slot, i, out.data(), n) == RKB_OK, "output_to_float");
        const float tolerance = rkb_output_type(m, i) == RKNN_TENSOR_FLOAT16 ? 2e-3f : 1e-5f;
        for (size_t k = 0; k < n; ++k) {
            const float want = expected[offset + k];
            failures += check(std::fabs(out[k] - want) <= tolerance * (1.0f + std::fabs(want)), "output value");
        }
        offset += n;
    }
    rkb_model_release(m, slot);
    rkb_model_free(m);
    failures += check(live_contexts() == 0 && live_mems() == 0 && violations() == 0, "clean teardown");
    rkb_runtime_close(rt);
    dlclose(dbl);
    std::printf(failures == 0 ? "OK\n" : "FAILED %d\n", failures);
    return failures == 0 ? 0 : 1;
}
