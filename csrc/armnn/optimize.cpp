// Optimization: backend assignment, FP16 turbo, per-backend model options, and a description of
// the optimized graph for the load report.
#include "internal.hpp"

#include <algorithm>
#include <filesystem>
#include <map>
#include <sstream>

namespace immich::armnn_bridge::detail {
namespace {

// Per-backend model options (FastMathEnabled, GpuAcc cached network), where they exist.
template <typename Options>
void set_model_options(Options& options, const LoadOptions& load, LoadReport& report) {
    if constexpr (has_model_options<Options>::value) {
        armnn::BackendOptions gpu("GpuAcc");
        armnn::BackendOptions cpu("CpuAcc");
        if (load.fast_math) {
            gpu.AddOption({"FastMathEnabled", true});
            cpu.AddOption({"FastMathEnabled", true});
            report.fast_math_applied = true;
        }
        if constexpr (kHaveCachedNetwork) {
            if (load.cached_network_path != nullptr && *load.cached_network_path != '\0') {
                // Save when the file does not exist yet; afterwards ARM NN loads it instead of
                // compiling the OpenCL kernels again.
                std::error_code ec;
                const bool exists = std::filesystem::exists(load.cached_network_path, ec);
                gpu.AddOption({"SaveCachedNetwork", !exists});
                gpu.AddOption({"CachedNetworkFilePath", std::string(load.cached_network_path)});
                report.cached_network_applied = true;
            }
        }
        options.m_ModelOptions = {gpu, cpu};
    }
}

}  // namespace

std::vector<std::string> split(const std::string& text) {
    std::vector<std::string> parts;
    std::stringstream stream(text);
    std::string part;
    while (std::getline(stream, part, ',')) {
        part.erase(0, part.find_first_not_of(" \t"));
        part.erase(part.find_last_not_of(" \t") + 1);
        if (!part.empty()) {
            parts.push_back(part);
        }
    }
    return parts;
}

std::string join(const std::vector<std::string>& parts) {
    std::string out;
    for (const auto& part : parts) {
        out += (out.empty() ? "" : ",") + part;
    }
    return out;
}

std::string model_option_notes(const LoadOptions& load) {
    std::string notes;
    if (load.fast_math && !kHaveModelOptions) {
        add_note(notes, "fast math needs ARM NN 20.11 or later");
    }
    const bool want_cache = load.cached_network_path != nullptr && *load.cached_network_path != '\0';
    if (want_cache && !kHaveCachedNetwork) {
        add_note(notes, "cached network file needs ARM NN 21.02 or later");
    }
    return notes;
}

// The optimized graph's dot dump is the only place ARM NN 20.08 exposes the backend assignment.
void describe_graph(const armnn::IOptimizedNetwork& optimized, LoadReport& report) {
    std::stringstream dot;
    optimized.SerializeToDot(dot);
    std::map<std::string, int> counts;
    std::string line;
    bool fp16 = false;
    while (std::getline(dot, line)) {
        const auto at = line.find("BackendID : ");
        if (at != std::string::npos) {
            const auto start = at + 12;
            const auto end = line.find_first_of("\\}|\"", start);
            counts[line.substr(start, end - start)] += 1;
        }
        if (line.find("ConvertFp32ToFp16") != std::string::npos) {
            fp16 = true;
        }
    }
    std::vector<std::pair<std::string, int>> sorted(counts.begin(), counts.end());
    std::stable_sort(sorted.begin(), sorted.end(),
                     [](const auto& a, const auto& b) { return a.second > b.second; });
    std::vector<std::string> parts;
    for (const auto& [backend, count] : sorted) {
        parts.push_back(backend + ":" + std::to_string(count));
    }
    copy_text(join(parts), report.backends, sizeof(report.backends));
    report.fp16_applied = fp16;
}

armnn::IOptimizedNetworkPtr optimize(RuntimeCore& core, Parsed& parsed, const LoadOptions& load,
                                     bool fp16, bool import_memory, LoadReport& report) {
    armnn::OptimizerOptions options;
    options.m_ReduceFp32ToFp16 = fp16;
    options.m_ImportEnabled = import_memory;
    set_model_options(options, load, report);
    std::vector<std::string> messages;
    armnn::IOptimizedNetworkPtr optimized = armnn::Optimize(
        *parsed.network, core.preferred, core.runtime->GetDeviceSpec(), options,
        armnn::Optional<std::vector<std::string>&>(messages));
    if (!optimized) {
        std::vector<std::string> names;
        for (const auto& backend : core.preferred) {
            names.push_back(backend.Get());
        }
        std::string text = "ARM NN could not optimize the network for " + join(names);
        for (const auto& message : messages) {
            text += ": " + message;
        }
        throw BridgeError(kOptimizeFailed, text);
    }
    return optimized;
}

}  // namespace immich::armnn_bridge::detail
