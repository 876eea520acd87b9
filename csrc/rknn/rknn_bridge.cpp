// One RKNN model: opening it, and preparing a pool of contexts that share its weights (rknn_bridge.h).
#include "rknn_bridge.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "rknn_internal.h"

namespace {

// Generous bounds against a corrupt answer from the runtime; real Immich models have 1 input and
// at most 9 outputs.
constexpr uint32_t kMaxTensors = 1024;
constexpr uint32_t kMaxContexts = 64;

bool is_layout(int32_t fmt) { return fmt == RKNN_TENSOR_NCHW || fmt == RKNN_TENSOR_NHWC; }

// Create `mem_size` bytes of memory on `ctx` and bind it with rknn_set_io_mem as b->attr describes.
int bind_memory(const rkb_runtime* rt, rknn_context ctx, uint32_t slot, const char* role, uint32_t mem_size,
                rkb::Binding* b, char* err, size_t err_len) {
    b->mem = rt->create_mem(ctx, mem_size);
    if (b->mem == nullptr || b->mem->virt_addr == nullptr || b->mem->size < mem_size) {
        if (b->mem != nullptr) {
            rt->destroy_mem(ctx, b->mem);
            b->mem = nullptr;
        }
        return rkb::fail(err, err_len, RKB_ERR_MEMORY, "rknn_create_mem(%u bytes) failed for %s '%s' on context %u",
                         mem_size, role, b->attr.name, slot);
    }
    const int rc = rt->set_io_mem(ctx, b->mem, &b->attr);
    if (rc != RKNN_SUCC) {
        char what[384];
        std::snprintf(what, sizeof what, "rknn_set_io_mem for %s '%s' on context %u", role, b->attr.name, slot);
        return rkb::fail_rknn(err, err_len, rc, what);
    }
    return RKB_OK;
}

// Describe the dense buffer the caller fills for `attr`: element type `type`, pass_through = 0 so
// the runtime converts it to the NPU's native form during rknn_run.
int dense_attr(const rknn_tensor_attr& attr, int32_t type, rknn_tensor_attr* out, char* err, size_t err_len) {
    const uint32_t elem = rkb::element_size(type);
    if (elem == 0) {
        return rkb::fail(err, err_len, RKB_ERR_ARGUMENT, "tensor '%s': element type %d is not supported", attr.name,
                         type);
    }
    *out = attr;
    out->type = static_cast<rknn_tensor_type>(type);
    out->qnt_type = RKNN_TENSOR_QNT_NONE;
    out->pass_through = 0;
    out->size = attr.n_elems * elem;
    out->size_with_stride = out->size;
    out->w_stride = 0;
    out->h_stride = 0;
    return RKB_OK;
}

// Destroy every slot's memory, then the extra contexts (newest first); slot 0's context is the
// model's own and stays. Memory belongs to a context and duplicates borrow the first context's
// weights, so nothing is destroyed before what depends on it.
void teardown_slots(rkb_model* m) {
    const rkb_runtime* rt = m->rt;
    for (rkb::Slot& s : m->slots) {
        for (std::vector<rkb::Binding>* bindings : {&s.inputs, &s.outputs}) {
            for (rkb::Binding& b : *bindings) {
                if (b.mem != nullptr) rt->destroy_mem(s.ctx, b.mem);
                b.mem = nullptr;
            }
        }
    }
    for (size_t i = m->slots.size(); i-- > 0;) {
        if (m->slots[i].owns_ctx) rt->destroy(m->slots[i].ctx);
    }
    m->slots.clear();
}

void destroy_model(rkb_model* m) {
    rkb::release_runtime_objects(m);
    delete m;
}

int query_attrs(rkb_model* m, rknn_query_cmd cmd, uint32_t n, std::vector<rknn_tensor_attr>* out, char* err,
                size_t err_len) {
    out->assign(n, rknn_tensor_attr{});
    const bool inputs = cmd == RKNN_QUERY_INPUT_ATTR || cmd == RKNN_QUERY_CURRENT_INPUT_ATTR;
    const bool current = cmd == RKNN_QUERY_CURRENT_INPUT_ATTR || cmd == RKNN_QUERY_CURRENT_OUTPUT_ATTR;
    char what[64];
    std::snprintf(what, sizeof what, "rknn_query(RKNN_QUERY_%s%s_ATTR)", current ? "CURRENT_" : "",
                  inputs ? "INPUT" : "OUTPUT");
    for (uint32_t i = 0; i < n; ++i) {
        rknn_tensor_attr& a = (*out)[i];
        a.index = i;
        const int rc = m->rt->query(m->ctx0, cmd, &a, sizeof a);
        if (rc != RKNN_SUCC) return rkb::fail_rknn(err, err_len, rc, what);
        a.name[RKNN_MAX_NAME_LEN - 1] = '\0';
        if (a.n_dims == 0 || a.n_dims > RKNN_MAX_DIMS) {
            return rkb::fail(err, err_len, RKNN_ERR_MODEL_INVALID, "%s: tensor %u reports %u dimensions", what, i,
                             a.n_dims);
        }
    }
    return RKB_OK;
}

// A dynamic-shape model accepts a fixed list of input shapes and runs one after
// rknn_set_input_shapes. Immich exports a single shape, so the first one is set here (4-D inputs as
// NHWC, as that call requires) and the attributes are re-read for it.
int fix_dynamic_shape(rkb_model* m, char* err, size_t err_len) {
    std::unique_ptr<rknn_input_range> range(new rknn_input_range);
    m->shape_attrs = m->in_attrs;
    for (uint32_t i = 0; i < m->in_attrs.size(); ++i) {
        std::memset(range.get(), 0, sizeof *range);
        range->index = i;
        // Runtimes before 1.5 do not know the query, and static models have no ranges: both static.
        if (m->rt->query(m->ctx0, RKNN_QUERY_INPUT_DYNAMIC_RANGE, range.get(), sizeof *range) != RKNN_SUCC ||
            range->shape_number == 0) {
            if (i == 0) return RKB_OK;
            continue;
        }
        rknn_tensor_attr& a = m->shape_attrs[i];
        if (range->n_dims != a.n_dims || range->shape_number > RKNN_MAX_DYNAMIC_SHAPE_NUM) {
            return rkb::fail(err, err_len, RKNN_ERR_MODEL_INVALID, "input %u: inconsistent dynamic shape range", i);
        }
        m->dynamic_shapes = range->shape_number;
        std::memcpy(a.dims, range->dyn_range[0], a.n_dims * sizeof(uint32_t));
        a.fmt = range->fmt;
        a.n_elems = 1;
        for (uint32_t d = 0; d < a.n_dims; ++d) a.n_elems *= a.dims[d];
        if (!rkb::with_layout(a, a.n_dims == 4 ? RKNN_TENSOR_NHWC : RKNN_TENSOR_UNDEFINED, &a)) {
            a.fmt = a.n_dims == 4 ? RKNN_TENSOR_NHWC : RKNN_TENSOR_UNDEFINED;
        }
    }
    if (m->rt->set_input_shapes == nullptr) {
        return rkb::fail(err, err_len, RKB_ERR_SYMBOL,
                         "the model has dynamic input shapes and %s has no function rknn_set_input_shapes "
                         "(dynamic shapes need librknnrt >= 1.5)",
                         m->rt->path.c_str());
    }
    const int rc = m->rt->set_input_shapes(m->ctx0, static_cast<uint32_t>(m->shape_attrs.size()),
                                           m->shape_attrs.data());
    if (rc != RKNN_SUCC) return rkb::fail_rknn(err, err_len, rc, "rknn_set_input_shapes on context 0");
    const int in = query_attrs(m, RKNN_QUERY_CURRENT_INPUT_ATTR, static_cast<uint32_t>(m->in_attrs.size()),
                               &m->in_attrs, err, err_len);
    if (in != RKB_OK) return in;
    return query_attrs(m, RKNN_QUERY_CURRENT_OUTPUT_ATTR, static_cast<uint32_t>(m->out_attrs.size()),
                       &m->out_attrs, err, err_len);
}

// Context i >= 1: a duplicate of context 0 (shared weights), or, when the runtime refuses and the
// model bytes are at hand, a context of its own.
int add_context(rkb_model* m, uint32_t i, const void* data, uint32_t size, char* err, size_t err_len) {
    const rkb_runtime* rt = m->rt;
    rkb::Slot& s = m->slots[i];
    rknn_context source = m->ctx0;
    char what[96];
    int code = rt->dup_context(&source, &s.ctx);
    if (code == RKNN_SUCC) {
        s.owns_ctx = true;
        ++m->shared_contexts;
    } else if (data == nullptr || size == 0) {
        std::snprintf(what, sizeof what, "rknn_dup_context for context %u", i);
        return rkb::fail_rknn(err, err_len, code, what);
    } else {
        code = rt->init(&s.ctx, const_cast<void*>(data), size, 0, nullptr);
        if (code != RKNN_SUCC) {
            std::snprintf(what, sizeof what, "rknn_init for context %u (rknn_dup_context was refused)", i);
            return rkb::fail_rknn(err, err_len, code, what);
        }
        s.owns_ctx = true;
    }
    if (m->dynamic_shapes > 0) {
        code = rt->set_input_shapes(s.ctx, static_cast<uint32_t>(m->shape_attrs.size()), m->shape_attrs.data());
        if (code != RKNN_SUCC) {
            std::snprintf(what, sizeof what, "rknn_set_input_shapes on context %u", i);
            return rkb::fail_rknn(err, err_len, code, what);
        }
    }
    return RKB_OK;
}

int bind_slot(rkb_model* m, uint32_t i, const int32_t* input_types, const int32_t* output_types, char* err,
              size_t err_len) {
    rkb::Slot& s = m->slots[i];
    s.inputs.resize(m->in_attrs.size());
    s.outputs.resize(m->out_attrs.size());
    for (uint32_t j = 0; j < s.inputs.size(); ++j) {
        const rknn_tensor_attr& reported = m->in_attrs[j];
        rknn_tensor_attr layout = reported;
        if (reported.n_dims == 4) rkb::with_layout(reported, RKNN_TENSOR_NHWC, &layout);
        int rc = dense_attr(layout, input_types[j], &s.inputs[j].attr, err, err_len);
        // Rockchip's FAQ: zero-copy memory for an input is sized by size_with_stride ("failed to
        // submit" otherwise); the dense description may be smaller.
        const uint32_t mem_size = std::max(s.inputs[j].attr.size, reported.size_with_stride);
        if (rc == RKB_OK) rc = bind_memory(m->rt, s.ctx, i, "input", mem_size, &s.inputs[j], err, err_len);
        if (rc != RKB_OK) return rc;
    }
    for (uint32_t j = 0; j < s.outputs.size(); ++j) {
        int rc = dense_attr(m->out_attrs[j], output_types[j], &s.outputs[j].attr, err, err_len);
        if (rc == RKB_OK) {
            rc = bind_memory(m->rt, s.ctx, i, "output", s.outputs[j].attr.size, &s.outputs[j], err, err_len);
        }
        if (rc != RKB_OK) return rc;
    }
    return RKB_OK;
}

}  // namespace

namespace rkb {

bool with_layout(const rknn_tensor_attr& attr, int32_t fmt, rknn_tensor_attr* out) noexcept {
    rknn_tensor_attr a = attr;
    if (fmt != attr.fmt) {
        if (attr.n_dims != 4 || !is_layout(fmt) || !is_layout(attr.fmt)) return false;
        const uint32_t* d = attr.dims;
        const bool to_nchw = fmt == RKNN_TENSOR_NCHW;  // from NHWC then, and the reverse
        const uint32_t permuted[4] = {d[0], to_nchw ? d[3] : d[2], to_nchw ? d[1] : d[3], to_nchw ? d[2] : d[1]};
        std::memcpy(a.dims, permuted, sizeof permuted);
        a.fmt = static_cast<rknn_tensor_format>(fmt);
    }
    *out = a;
    return true;
}

void release_runtime_objects(rkb_model* m) noexcept {
    teardown_slots(m);
    if (m->has_ctx0) m->rt->destroy(m->ctx0);
    m->has_ctx0 = false;
    m->prepared = false;
}

}  // namespace rkb

extern "C" {

int rkb_model_open(rkb_runtime* rt, const void* data, uint32_t size, rkb_model** out, char* err,
                   size_t err_len) noexcept {
    if (rt == nullptr || data == nullptr || size == 0 || out == nullptr) {
        return rkb::fail(err, err_len, RKB_ERR_ARGUMENT, "empty model data");
    }
    *out = nullptr;
    rkb_model* m = new (std::nothrow) rkb_model;
    if (m == nullptr) return rkb::fail(err, err_len, RKB_ERR_MEMORY, "out of memory");
    m->rt = rt;
    try {
        // rknn_init takes a non-const pointer but, with size > 0, reads the bytes and keeps its own copy.
        int rc = rt->init(&m->ctx0, const_cast<void*>(data), size, 0, nullptr);
        if (rc != RKNN_SUCC) {
            delete m;
            return rkb::fail_rknn(err, err_len, rc, "rknn_init");
        }
        m->has_ctx0 = true;
        rknn_input_output_num io{};
        rc = rt->query(m->ctx0, RKNN_QUERY_IN_OUT_NUM, &io, sizeof io);
        if (rc != RKNN_SUCC) {
            rc = rkb::fail_rknn(err, err_len, rc, "rknn_query(RKNN_QUERY_IN_OUT_NUM)");
        } else if (io.n_input == 0 || io.n_output == 0 || io.n_input > kMaxTensors || io.n_output > kMaxTensors) {
            rc = rkb::fail(err, err_len, RKNN_ERR_MODEL_INVALID, "model reports %u inputs and %u outputs",
                           io.n_input, io.n_output);
        }
        if (rc == RKB_OK) rc = query_attrs(m, RKNN_QUERY_INPUT_ATTR, io.n_input, &m->in_attrs, err, err_len);
        if (rc == RKB_OK) rc = query_attrs(m, RKNN_QUERY_OUTPUT_ATTR, io.n_output, &m->out_attrs, err, err_len);
        if (rc == RKB_OK) rc = fix_dynamic_shape(m, err, err_len);
        if (rc != RKB_OK) {
            destroy_model(m);
            return rc;
        }
        // Both are optional: models exported without a custom string, and runtimes that do not
        // answer the version query, still run.
        rknn_custom_string custom{};
        if (rt->query(m->ctx0, RKNN_QUERY_CUSTOM_STRING, &custom, sizeof custom) == RKNN_SUCC) {
            custom.string[sizeof custom.string - 1] = '\0';
            m->custom_string = custom.string;
        }
        rknn_sdk_version version{};
        if (rt->query(m->ctx0, RKNN_QUERY_SDK_VERSION, &version, sizeof version) == RKNN_SUCC) {
            version.api_version[sizeof version.api_version - 1] = '\0';
            version.drv_version[sizeof version.drv_version - 1] = '\0';
            m->api_version = version.api_version;
            m->driver_version = version.drv_version;
        }
    } catch (...) {
        destroy_model(m);
        return rkb::fail(err, err_len, RKB_ERR_MEMORY, "out of memory");
    }
    *out = m;
    return RKB_OK;
}

uint32_t rkb_model_n_inputs(const rkb_model* m) noexcept { return static_cast<uint32_t>(m->in_attrs.size()); }
uint32_t rkb_model_n_outputs(const rkb_model* m) noexcept { return static_cast<uint32_t>(m->out_attrs.size()); }

const rknn_tensor_attr* rkb_model_input_attr(const rkb_model* m, uint32_t i) noexcept {
    return i < m->in_attrs.size() ? &m->in_attrs[i] : nullptr;
}

const rknn_tensor_attr* rkb_model_output_attr(const rkb_model* m, uint32_t i) noexcept {
    return i < m->out_attrs.size() ? &m->out_attrs[i] : nullptr;
}

const rknn_tensor_attr* rkb_model_bound_input_attr(const rkb_model* m, uint32_t i) noexcept {
    return m->prepared && i < m->in_attrs.size() ? &m->slots[0].inputs[i].attr : nullptr;
}

const char* rkb_model_custom_string(const rkb_model* m) noexcept { return m->custom_string.c_str(); }
const char* rkb_model_api_version(const rkb_model* m) noexcept { return m->api_version.c_str(); }
const char* rkb_model_driver_version(const rkb_model* m) noexcept { return m->driver_version.c_str(); }
uint32_t rkb_model_dynamic_shapes(const rkb_model* m) noexcept { return m->dynamic_shapes; }
uint32_t rkb_model_shared_contexts(const rkb_model* m) noexcept { return m->shared_contexts; }

int rkb_model_prepare(rkb_model* m, uint32_t n_contexts, const uint32_t* core_masks, const int32_t* input_types,
                      const int32_t* output_types, const void* data, uint32_t size, char* err,
                      size_t err_len) noexcept {
    if (m == nullptr || m->closing || !m->has_ctx0) {
        return rkb::fail(err, err_len, RKB_ERR_CLOSED, "the model is closed");
    }
    if (m->prepared || !m->slots.empty()) {
        return rkb::fail(err, err_len, RKB_ERR_STATE, "the model is already prepared");
    }
    if (n_contexts == 0 || n_contexts > kMaxContexts || core_masks == nullptr || input_types == nullptr ||
        output_types == nullptr) {
        return rkb::fail(err, err_len, RKB_ERR_ARGUMENT, "between 1 and %u contexts are possible, %u asked",
                         kMaxContexts, n_contexts);
    }
    const rkb_runtime* rt = m->rt;
    if (n_contexts > 1 && rt->dup_context == nullptr) {
        return rkb::fail(err, err_len, RKB_ERR_SYMBOL,
                         "%s has no function rknn_dup_context, so %u contexts cannot share one copy of the "
                         "weights; set MACHINE_LEARNING_RKNN_THREADS=1 or install a newer librknnrt",
                         rt->path.c_str(), n_contexts);
    }
    for (uint32_t i = 0; i < n_contexts; ++i) {
        if (core_masks[i] != RKNN_NPU_CORE_AUTO && rt->set_core_mask == nullptr) {
            return rkb::fail(err, err_len, RKB_ERR_SYMBOL,
                             "%s has no function rknn_set_core_mask, so contexts cannot be pinned to NPU cores",
                             rt->path.c_str());
        }
    }
    for (uint32_t j = 0; j < m->out_attrs.size(); ++j) {
        if (output_types[j] != RKNN_TENSOR_FLOAT32 && output_types[j] != RKNN_TENSOR_FLOAT16) {
            return rkb::fail(err, err_len, RKB_ERR_ARGUMENT, "output %u: only FLOAT32 or FLOAT16 memory is supported",
                             j);
        }
    }
    int rc = RKB_OK;
    try {
        m->slots.resize(n_contexts);
        m->slots[0].ctx = m->ctx0;
        m->shared_contexts = 1;
        for (uint32_t i = 1; i < n_contexts && rc == RKB_OK; ++i) rc = add_context(m, i, data, size, err, err_len);
        for (uint32_t i = 0; i < n_contexts && rc == RKB_OK; ++i) {
            if (core_masks[i] == RKNN_NPU_CORE_AUTO) continue;
            const int code = rt->set_core_mask(m->slots[i].ctx, static_cast<rknn_core_mask>(core_masks[i]));
            if (code != RKNN_SUCC) {
                char what[64];
                std::snprintf(what, sizeof what, "rknn_set_core_mask(0x%x) for context %u", core_masks[i], i);
                rc = rkb::fail_rknn(err, err_len, code, what);
            }
        }
        for (uint32_t i = 0; i < n_contexts && rc == RKB_OK; ++i) {
            rc = bind_slot(m, i, input_types, output_types, err, err_len);
        }
        if (rc == RKB_OK) {
            m->leased.assign(n_contexts, false);
            m->free_slots.clear();
            for (uint32_t i = n_contexts; i-- > 0;) m->free_slots.push_back(i);
        }
    } catch (...) {
        rc = rkb::fail(err, err_len, RKB_ERR_MEMORY, "out of memory");
    }
    if (rc != RKB_OK) {
        teardown_slots(m);
        m->shared_contexts = 0;
        return rc;
    }
    m->prepared = true;
    return RKB_OK;
}

uint32_t rkb_model_n_contexts(const rkb_model* m) noexcept { return static_cast<uint32_t>(m->slots.size()); }

uint64_t rkb_model_context_handle(const rkb_model* m, uint32_t slot) noexcept {
    return slot < m->slots.size() ? static_cast<uint64_t>(m->slots[slot].ctx) : 0;
}

}  // extern "C"
