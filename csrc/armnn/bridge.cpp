// Runtime and network lifecycle: backend choice, loading with FP16 turbo (retried without it)
// and memory import (with a verified fallback to copies), execution under a per-network lock.
#include "internal.hpp"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <type_traits>

namespace immich::armnn_bridge {

using detail::add_note;
using detail::BridgeError;
using detail::copy_text;
using detail::join;
using detail::RuntimeCore;
using detail::split;

struct Runtime {
    std::shared_ptr<RuntimeCore> core;
};

struct Network {
    std::shared_ptr<RuntimeCore> core;
    armnn::NetworkId id = 0;
    std::vector<detail::Binding> inputs;
    std::vector<detail::Binding> outputs;
    std::vector<armnn::TensorInfo> input_infos;
    std::vector<armnn::TensorInfo> output_infos;
    bool loaded = false;
    bool imported = false;
    bool exported = false;
    std::mutex run_mutex;
};

namespace {

constexpr const char* kDefaultBackends = "GpuAcc,CpuAcc,CpuRef";

int fail(const std::exception& e, Status status, char* error, std::size_t length) {
    copy_text(e.what(), error, length);
    return status;
}

// ConstTensor needs a TensorInfo marked constant from ARM NN 22.05 on; older versions lack the flag.
template <typename Info>
auto mark_constant(Info& info, int) -> decltype(info.SetConstant(true), void()) {
    info.SetConstant(true);
}
template <typename Info>
void mark_constant(Info&, long) {}

// INetworkProperties took (importEnabled, exportEnabled) until ARM NN 21.05, then
// (asyncEnabled, inputSource, outputSource).
template <typename Properties = armnn::INetworkProperties>
Properties make_properties(bool import_inputs, bool export_outputs) {
    if constexpr (std::is_constructible_v<Properties, bool, armnn::MemorySource, armnn::MemorySource>) {
        return Properties(false,
                          import_inputs ? armnn::MemorySource::Malloc : armnn::MemorySource::Undefined,
                          export_outputs ? armnn::MemorySource::Malloc : armnn::MemorySource::Undefined);
    } else {
        return Properties(import_inputs, export_outputs);
    }
}

// Runs the loaded network once on zeroed buffers aligned for import.
void probe_run(RuntimeCore& core, Network& network) {
    std::vector<std::unique_ptr<unsigned char, decltype(&std::free)>> buffers;
    armnn::InputTensors inputs;
    armnn::OutputTensors outputs;
    const auto allocate = [&](const armnn::TensorInfo& info) {
        const std::size_t size = (info.GetNumBytes() + kImportAlignment - 1) / kImportAlignment * kImportAlignment;
        void* memory = std::aligned_alloc(kImportAlignment, size == 0 ? kImportAlignment : size);
        if (memory == nullptr) {
            throw std::bad_alloc();
        }
        std::memset(memory, 0, size);
        buffers.emplace_back(static_cast<unsigned char*>(memory), &std::free);
        return memory;
    };
    for (std::size_t i = 0; i < network.inputs.size(); ++i) {
        armnn::TensorInfo info = network.input_infos[i];
        mark_constant(info, 0);
        inputs.emplace_back(network.inputs[i].id, armnn::ConstTensor(info, allocate(info)));
    }
    for (std::size_t i = 0; i < network.outputs.size(); ++i) {
        outputs.emplace_back(network.outputs[i].id, armnn::Tensor(network.output_infos[i],
                                                                  allocate(network.output_infos[i])));
    }
    if (core.runtime->EnqueueWorkload(network.id, inputs, outputs) != armnn::Status::Success) {
        throw BridgeError(kRunFailed, "ARM NN failed the first (validation) run of the network");
    }
}

void load_optimized(RuntimeCore& core, Network& network, armnn::IOptimizedNetworkPtr optimized,
                    bool import_inputs, bool export_outputs) {
    std::string message;
    const armnn::INetworkProperties properties = make_properties(import_inputs, export_outputs);
    armnn::Status status;
    {
        std::lock_guard<std::mutex> lock(core.load_mutex);
        status = core.runtime->LoadNetwork(network.id, std::move(optimized), message, properties);
    }
    if (status != armnn::Status::Success) {
        throw BridgeError(kLoadFailed, "ARM NN could not load the network: " + message);
    }
    network.loaded = true;
    network.imported = import_inputs;
    network.exported = export_outputs;
    network.input_infos.clear();
    network.output_infos.clear();
    for (const auto& binding : network.inputs) {
        network.input_infos.push_back(core.runtime->GetInputTensorInfo(network.id, binding.id));
    }
    for (const auto& binding : network.outputs) {
        network.output_infos.push_back(core.runtime->GetOutputTensorInfo(network.id, binding.id));
    }
}

void unload(RuntimeCore& core, Network& network) noexcept {
    if (!network.loaded) {
        return;
    }
    network.loaded = false;
    try {
        std::lock_guard<std::mutex> lock(core.load_mutex);
        core.runtime->UnloadNetwork(network.id);
    } catch (...) {
        // Unloading failed: the runtime frees the network when it is destroyed.
    }
}

// Optimizes and loads `parsed`, then runs it once on zeros. The run validates the whole chain at
// load time (an error becomes a load error the caller can fall back from, not a failed request),
// warms GpuAcc kernels up, and settles memory import: with import/export enabled it is where ARM
// NN finds out whether the backend can map caller memory (GpuAcc in 20.08 cannot), so a refusal
// drops exactly the refused half and reloads. On return the network is loaded; on throw it is not.
void build(RuntimeCore& core, Network& network, detail::Parsed& parsed, const LoadOptions& options,
           bool fp16, LoadReport& report, std::string& notes) {
    bool import_inputs = options.import_memory;
    bool export_outputs = options.import_memory;
    try {
        armnn::IOptimizedNetworkPtr optimized =
            detail::optimize(core, parsed, options, fp16, import_inputs || export_outputs, report);
        detail::describe_graph(*optimized, report);
        load_optimized(core, network, std::move(optimized), import_inputs, export_outputs);
        for (int attempt = 0; attempt < 3; ++attempt) {
            try {
                probe_run(core, network);
                return;
            } catch (const armnn::MemoryImportException& e) {
                if (!import_inputs) throw;
                add_note(notes, std::string("inputs are copied: ") + e.what());
                import_inputs = false;
            } catch (const armnn::MemoryExportException& e) {
                if (!export_outputs) throw;
                add_note(notes, std::string("outputs are copied: ") + e.what());
                export_outputs = false;
            }
            unload(core, network);
            load_optimized(core, network,
                           detail::optimize(core, parsed, options, fp16, import_inputs || export_outputs, report),
                           import_inputs, export_outputs);
        }
        throw BridgeError(kLoadFailed, "ARM NN kept refusing caller memory for this network");
    } catch (...) {
        unload(core, network);
        throw;
    }
}

int dtype_of(armnn::DataType type) {
    switch (type) {
        case armnn::DataType::Float32: return kFloat32;
        case armnn::DataType::Float16: return kFloat16;
        case armnn::DataType::QAsymmU8: return kUInt8;
        case armnn::DataType::QAsymmS8:
        case armnn::DataType::QSymmS8: return kInt8;
        case armnn::DataType::QSymmS16: return kInt16;
        case armnn::DataType::Signed32: return kInt32;
        case armnn::DataType::Boolean: return kBool;
        default: break;
    }
    // Signed64 (21.05+) has no enumerator in older headers; match it by name.
    if (std::string(armnn::GetDataTypeName(type)) == "Signed64") {
        return kInt64;
    }
    return -1;
}

}  // namespace

int runtime_create(const RuntimeOptions& options, Runtime** out, char* error,
                   std::size_t error_length) noexcept {
    copy_text("", error, error_length);
    if (out == nullptr) {
        copy_text("out must not be null", error, error_length);
        return kInvalidArgument;
    }
    *out = nullptr;
    try {
        const int severity = std::clamp(options.log_severity, 0, 5);
        armnn::ConfigureLogging(true, false, static_cast<armnn::LogSeverity>(severity));
        armnn::IRuntime::CreationOptions creation;
        if (options.tuning_file != nullptr && *options.tuning_file != '\0') {
            creation.m_BackendOptions.emplace_back(armnn::BackendOptions{
                "GpuAcc",
                {{"TuningLevel", std::clamp(options.tuning_level, 0, 3)},
                 {"TuningFile", std::string(options.tuning_file)}}});
        }
        auto core = std::make_shared<RuntimeCore>();
        core->runtime = armnn::IRuntime::Create(creation);
        const armnn::BackendIdSet& supported = core->runtime->GetDeviceSpec().GetSupportedBackends();
        for (const auto& backend : supported) {
            core->registered.push_back(backend.Get());
        }
        std::sort(core->registered.begin(), core->registered.end());
        const std::string wanted =
            options.backends != nullptr && *options.backends != '\0' ? options.backends : kDefaultBackends;
        for (const auto& name : split(wanted)) {
            if (supported.count(armnn::BackendId(name)) != 0) {
                core->preferred.emplace_back(name);
            }
        }
        if (core->preferred.empty()) {
            copy_text("none of the ARM NN backends " + wanted + " is available (this runtime has: " +
                          (core->registered.empty() ? std::string("none") : join(core->registered)) + ")",
                      error, error_length);
            return kLoadFailed;
        }
        *out = new Runtime{std::move(core)};
        return kOk;
    } catch (const armnn::Exception& e) {
        return fail(e, kLoadFailed, error, error_length);
    } catch (const std::exception& e) {
        return fail(e, kInternal, error, error_length);
    } catch (...) {
        copy_text("unknown error while creating the ARM NN runtime", error, error_length);
        return kInternal;
    }
}

void runtime_backends(const Runtime* runtime, char* preferred, std::size_t preferred_length,
                      char* registered, std::size_t registered_length) noexcept {
    try {
        std::vector<std::string> names;
        if (runtime != nullptr) {
            for (const auto& backend : runtime->core->preferred) {
                names.push_back(backend.Get());
            }
        }
        copy_text(join(names), preferred, preferred_length);
        copy_text(runtime != nullptr ? join(runtime->core->registered) : "", registered, registered_length);
    } catch (...) {
        copy_text("", preferred, preferred_length);
        copy_text("", registered, registered_length);
    }
}

void runtime_release(Runtime* runtime) noexcept { delete runtime; }

int network_load(Runtime* runtime, const char* path, const LoadOptions& options, Network** out,
                 LoadReport* report_out, char* error, std::size_t error_length) noexcept {
    copy_text("", error, error_length);
    if (runtime == nullptr || path == nullptr || out == nullptr || report_out == nullptr) {
        copy_text("runtime, path, out and report are required", error, error_length);
        return kInvalidArgument;
    }
    *out = nullptr;
    LoadReport report{};
    std::string notes = detail::model_option_notes(options);
    RuntimeCore& core = *runtime->core;
    auto network = std::make_unique<Network>();
    network->core = runtime->core;
    try {
        detail::Parsed parsed = detail::parse_file(path);
        network->inputs = parsed.inputs;
        network->outputs = parsed.outputs;

        if (options.fp16) {
            try {
                build(core, *network, parsed, options, true, report, notes);
            } catch (const std::exception& e) {
                // Immich retries without FP16 turbo when a model rejects it (e.g. FP16 models);
                // here any failure of the FP16 attempt (optimize, load or first run) retries.
                add_note(notes, std::string("FP16 turbo failed, running FP32: ") + e.what());
            }
        }
        if (!network->loaded) {
            build(core, *network, parsed, options, false, report, notes);
        }
        if (!options.import_memory) {
            add_note(notes, "memory import disabled: inputs and outputs are copied");
        }
        report.inputs_imported = network->imported;
        report.outputs_exported = network->exported;
        for (std::size_t i = 0; i < network->inputs.size(); ++i) {
            if (dtype_of(network->input_infos[i].GetDataType()) < 0) {
                throw BridgeError(kUnsupportedFormat, "input '" + network->inputs[i].name + "' has type " +
                                  armnn::GetDataTypeName(network->input_infos[i].GetDataType()) +
                                  ", which the bridge cannot exchange");
            }
        }
        for (std::size_t i = 0; i < network->outputs.size(); ++i) {
            if (dtype_of(network->output_infos[i].GetDataType()) < 0) {
                throw BridgeError(kUnsupportedFormat, "output '" + network->outputs[i].name + "' has type " +
                                  armnn::GetDataTypeName(network->output_infos[i].GetDataType()) +
                                  ", which the bridge cannot exchange");
            }
        }
        copy_text(notes, report.notes, sizeof(report.notes));
        *report_out = report;
        *out = network.release();
        return kOk;
    } catch (const BridgeError& e) {
        unload(core, *network);
        return fail(e, e.status(), error, error_length);
    } catch (const armnn::Exception& e) {
        unload(core, *network);
        return fail(e, kLoadFailed, error, error_length);
    } catch (const std::exception& e) {
        unload(core, *network);
        return fail(e, kInternal, error, error_length);
    } catch (...) {
        unload(core, *network);
        copy_text("unknown error while loading the network", error, error_length);
        return kInternal;
    }
}

int network_tensor_count(const Network* network, bool inputs) noexcept {
    if (network == nullptr) {
        return -1;
    }
    return static_cast<int>(inputs ? network->inputs.size() : network->outputs.size());
}

int network_tensor(const Network* network, bool inputs, int index, TensorDesc* out) noexcept {
    if (network == nullptr || out == nullptr || index < 0 || index >= network_tensor_count(network, inputs)) {
        return kInvalidArgument;
    }
    const auto& binding = inputs ? network->inputs[index] : network->outputs[index];
    const auto& info = inputs ? network->input_infos[index] : network->output_infos[index];
    *out = TensorDesc{};
    copy_text(binding.name, out->name, sizeof(out->name));
    out->dtype = dtype_of(info.GetDataType());
    const unsigned int rank = info.GetNumDimensions();
    if (rank > static_cast<unsigned int>(kMaxRank)) {
        return kInvalidArgument;
    }
    out->rank = static_cast<int>(rank);
    for (unsigned int d = 0; d < rank; ++d) {
        out->dims[d] = info.GetShape()[d];
    }
    out->nbytes = info.GetNumBytes();
    return kOk;
}

int network_run(Network* network, const void* const* inputs, void* const* outputs, char* error,
                std::size_t error_length) noexcept {
    copy_text("", error, error_length);
    if (network == nullptr || inputs == nullptr || outputs == nullptr) {
        copy_text("network, inputs and outputs are required", error, error_length);
        return kInvalidArgument;
    }
    try {
        armnn::InputTensors input_tensors;
        armnn::OutputTensors output_tensors;
        for (std::size_t i = 0; i < network->inputs.size(); ++i) {
            if (inputs[i] == nullptr ||
                (network->imported && reinterpret_cast<std::uintptr_t>(inputs[i]) % kImportAlignment != 0)) {
                copy_text("input '" + network->inputs[i].name + "' is null or not aligned to " +
                              std::to_string(kImportAlignment) + " bytes",
                          error, error_length);
                return kInvalidArgument;
            }
            armnn::TensorInfo info = network->input_infos[i];
            mark_constant(info, 0);
            input_tensors.emplace_back(network->inputs[i].id, armnn::ConstTensor(info, inputs[i]));
        }
        for (std::size_t i = 0; i < network->outputs.size(); ++i) {
            if (outputs[i] == nullptr ||
                (network->exported && reinterpret_cast<std::uintptr_t>(outputs[i]) % kImportAlignment != 0)) {
                copy_text("output '" + network->outputs[i].name + "' is null or not aligned to " +
                              std::to_string(kImportAlignment) + " bytes",
                          error, error_length);
                return kInvalidArgument;
            }
            output_tensors.emplace_back(network->outputs[i].id, armnn::Tensor(network->output_infos[i], outputs[i]));
        }
        std::lock_guard<std::mutex> lock(network->run_mutex);
        if (network->core->runtime->EnqueueWorkload(network->id, input_tensors, output_tensors) !=
            armnn::Status::Success) {
            copy_text("ARM NN failed to run the network", error, error_length);
            return kRunFailed;
        }
        return kOk;
    } catch (const armnn::Exception& e) {
        return fail(e, kRunFailed, error, error_length);
    } catch (const std::exception& e) {
        return fail(e, kInternal, error, error_length);
    } catch (...) {
        copy_text("unknown error while running the network", error, error_length);
        return kInternal;
    }
}

void network_release(Network* network) noexcept {
    if (network == nullptr) {
        return;
    }
    {
        std::lock_guard<std::mutex> run_lock(network->run_mutex);
        unload(*network->core, *network);
    }
    delete network;
}

}  // namespace immich::armnn_bridge
