// The context pool of an RKNN model: leasing, per-call memory access, runs, and closing.
#include <cstdio>
#include <cstring>

#include "rknn_internal.h"

namespace {

bool valid_slot(const rkb_model* m, uint32_t slot) { return m != nullptr && m->prepared && slot < m->slots.size(); }

// Dense NCHW -> NHWC for `nhwc` = {N, H, W, C}, element by element as bit patterns. Writes are
// sequential in the NPU memory; reads stride over the C planes (C is 3 for images).
template <typename T>
void nchw_to_nhwc(const T* src, T* dst, const uint32_t* nhwc) {
    const size_t n_batch = nhwc[0], height = nhwc[1], width = nhwc[2], channels = nhwc[3];
    const size_t plane = height * width;
    for (size_t n = 0; n < n_batch; ++n) {
        const T* image = src + n * channels * plane;
        for (size_t p = 0; p < plane; ++p) {
            for (size_t c = 0; c < channels; ++c) *dst++ = image[c * plane + p];
        }
    }
}

}  // namespace

extern "C" {

int rkb_model_acquire(rkb_model* m, uint32_t* slot) noexcept {
    if (m == nullptr || slot == nullptr) return RKB_ERR_ARGUMENT;
    try {
        std::unique_lock<std::mutex> lock(m->mu);
        if (m->closing) return RKB_ERR_CLOSED;
        if (!m->prepared) return RKB_ERR_STATE;
        ++m->n_waiting;
        m->cv.wait(lock, [m] { return m->closing || !m->free_slots.empty(); });
        --m->n_waiting;
        if (m->closing) {
            m->cv.notify_all();  // close() may be waiting for the last waiter to leave
            return RKB_ERR_CLOSED;
        }
        *slot = m->free_slots.back();
        m->free_slots.pop_back();
        m->leased[*slot] = true;
        ++m->n_leased;
    } catch (...) {
        return RKB_ERR_STATE;
    }
    return RKB_OK;
}

void rkb_model_release(rkb_model* m, uint32_t slot) noexcept {
    if (m == nullptr) return;
    try {
        std::lock_guard<std::mutex> lock(m->mu);
        if (slot >= m->leased.size() || !m->leased[slot]) return;
        m->leased[slot] = false;
        m->free_slots.push_back(slot);
        --m->n_leased;
    } catch (...) {
        return;
    }
    // Wakes both a waiting acquirer and a close() waiting for the last lease.
    m->cv.notify_all();
}

void* rkb_input_data(rkb_model* m, uint32_t slot, uint32_t i, uint32_t* size) noexcept {
    if (!valid_slot(m, slot) || i >= m->in_attrs.size()) return nullptr;
    const rkb::Binding& b = m->slots[slot].inputs[i];
    if (size != nullptr) *size = b.attr.size;
    return b.mem->virt_addr;
}

int rkb_input_write_nchw(rkb_model* m, uint32_t slot, uint32_t i, const void* src, size_t bytes) noexcept {
    if (!valid_slot(m, slot) || i >= m->in_attrs.size() || src == nullptr) return RKB_ERR_ARGUMENT;
    const rkb::Binding& b = m->slots[slot].inputs[i];
    const uint32_t elem = rkb::element_size(b.attr.type);
    if (b.attr.n_dims != 4 || b.attr.fmt != RKNN_TENSOR_NHWC || bytes != size_t{b.attr.n_elems} * elem) {
        return RKB_ERR_ARGUMENT;
    }
    const uint32_t* d = b.attr.dims;  // N, H, W, C
    void* dst = b.mem->virt_addr;
    switch (elem) {
        case 1: nchw_to_nhwc(static_cast<const uint8_t*>(src), static_cast<uint8_t*>(dst), d); break;
        case 2: nchw_to_nhwc(static_cast<const uint16_t*>(src), static_cast<uint16_t*>(dst), d); break;
        case 4: nchw_to_nhwc(static_cast<const uint32_t*>(src), static_cast<uint32_t*>(dst), d); break;
        case 8: nchw_to_nhwc(static_cast<const uint64_t*>(src), static_cast<uint64_t*>(dst), d); break;
        default: return RKB_ERR_ARGUMENT;
    }
    return RKB_OK;
}

int rkb_run(rkb_model* m, uint32_t slot, char* err, size_t err_len) noexcept {
    if (!valid_slot(m, slot)) return rkb::fail(err, err_len, RKB_ERR_STATE, "no prepared context %u", slot);
    const int rc = m->rt->run(m->slots[slot].ctx, nullptr);
    if (rc != RKNN_SUCC) {
        char what[48];
        std::snprintf(what, sizeof what, "rknn_run on context %u", slot);
        return rkb::fail_rknn(err, err_len, rc, what);
    }
    return RKB_OK;
}

const void* rkb_output_data(const rkb_model* m, uint32_t slot, uint32_t i, uint32_t* size) noexcept {
    if (!valid_slot(m, slot) || i >= m->out_attrs.size()) return nullptr;
    const rkb::Binding& b = m->slots[slot].outputs[i];
    if (size != nullptr) *size = b.attr.size;
    return b.mem->virt_addr;
}

int32_t rkb_output_type(const rkb_model* m, uint32_t i) noexcept {
    if (m == nullptr || !m->prepared || i >= m->out_attrs.size()) return -1;
    return m->slots[0].outputs[i].attr.type;
}

int rkb_output_to_float(const rkb_model* m, uint32_t slot, uint32_t i, float* dst, size_t n) noexcept {
    if (!valid_slot(m, slot) || i >= m->out_attrs.size() || dst == nullptr) return RKB_ERR_ARGUMENT;
    const rkb::Binding& b = m->slots[slot].outputs[i];
    if (n != b.attr.n_elems) return RKB_ERR_ARGUMENT;
    if (b.attr.type == RKNN_TENSOR_FLOAT16) {
        rkb_half_to_float(static_cast<const uint16_t*>(b.mem->virt_addr), dst, n);
    } else {
        std::memcpy(dst, b.mem->virt_addr, n * sizeof(float));
    }
    return RKB_OK;
}

void rkb_model_close(rkb_model* m) noexcept {
    if (m == nullptr) return;
    try {
        std::unique_lock<std::mutex> lock(m->mu);
        if (m->closing) return;
        m->closing = true;
        m->cv.notify_all();
        m->cv.wait(lock, [m] { return m->n_leased == 0 && m->n_waiting == 0; });
    } catch (...) {
        // A mutex that cannot be locked leaves nothing safe to wait on; release anyway.
    }
    rkb::release_runtime_objects(m);
}

void rkb_model_free(rkb_model* m) noexcept {
    if (m == nullptr) return;
    rkb_model_close(m);
    delete m;
}

}  // extern "C"
