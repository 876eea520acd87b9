// Internals shared by the bridge's translation units (formats.cpp, bridge.cpp). Includes ARM NN.
//
// Functions here may throw (armnn::Exception, std::exception); only the noexcept entry points in
// bridge.hpp catch, so an exception never crosses into the Cython wrapper.
#pragma once

#include "bridge.hpp"

#include <armnn/ArmNN.hpp>
#include <armnn/Version.hpp>
// Home of armnn::MemorySource until ARM NN moved it into Types.hpp.
#if __has_include(<armnn/MemorySources.hpp>)
#include <armnn/MemorySources.hpp>
#endif

#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace immich::armnn_bridge::detail {

// A graph input or output: the layer's name and the id ARM NN binds buffers with.
struct Binding {
    std::string name;
    armnn::LayerBindingId id;
};

// A network read from a file, before optimization.
struct Parsed {
    armnn::INetworkPtr network{nullptr, &armnn::INetwork::Destroy};
    std::vector<Binding> inputs;   // sorted by binding id
    std::vector<Binding> outputs;  // sorted by binding id
};

// An error a caller should see with a specific Status (anything else maps to kInternal, or to
// the Status the entry point chooses for armnn::Exception).
class BridgeError : public std::exception {
public:
    BridgeError(Status status, std::string message) : status_(status), message_(std::move(message)) {}
    const char* what() const noexcept override { return message_.c_str(); }
    Status status() const noexcept { return status_; }

private:
    Status status_;
    std::string message_;
};

// Copies `text` into a caller buffer of `length` bytes, always NUL-terminated.
inline void copy_text(const std::string& text, char* out, std::size_t length) noexcept {
    if (out == nullptr || length == 0) {
        return;
    }
    const std::size_t n = text.size() < length - 1 ? text.size() : length - 1;
    std::memcpy(out, text.data(), n);
    out[n] = '\0';
}

// Shared by the Runtime handle and every Network loaded on it, so destruction order between
// Python objects never matters: the IRuntime (which writes the GpuAcc tuning file when it is
// destroyed) goes away with the last reference.
struct RuntimeCore {
    armnn::IRuntimePtr runtime{nullptr, &armnn::IRuntime::Destroy};
    std::vector<armnn::BackendId> preferred;
    std::vector<std::string> registered;
    std::mutex load_mutex;  // LoadNetwork / UnloadNetwork
};

// Comma-separated text <-> list, and "a; b" note lists.
std::vector<std::string> split(const std::string& text);
std::string join(const std::vector<std::string>& parts);
inline void add_note(std::string& notes, const std::string& note) {
    notes += (notes.empty() ? "" : "; ") + note;
}

// Optimizes `parsed` for the runtime's backends (optimize.cpp). Throws BridgeError(kOptimizeFailed)
// with ARM NN's messages when no backend can take the graph.
armnn::IOptimizedNetworkPtr optimize(RuntimeCore& core, Parsed& parsed, const LoadOptions& load, bool fp16,
                                     bool import_memory, LoadReport& report);
// Fills report.backends (layers per backend) and report.fp16_applied from the optimized graph.
void describe_graph(const armnn::IOptimizedNetwork& optimized, LoadReport& report);
// Why requested model options cannot apply with the ARM NN this bridge was built against.
std::string model_option_notes(const LoadOptions& load);

// Reads a network from `path`, choosing the reader by extension (.armnn, .tflite, .onnx).
// Throws BridgeError(kFileNotFound / kUnsupportedFormat / kParseFailed).
Parsed parse_file(const std::string& path);

// Non-empty (the reason) when the .armnn file in `bytes` would make this ARM NN's deserializer
// abort the process (see armnn_file.cpp); "" when it is safe to hand over.
std::string deserializer_hazard(const std::vector<std::uint8_t>& bytes);
// The deserializer reads each output's tensor info from the wrong slot up to at least ARM NN
// 20.11 (library version 23); 21.05 (version 25) restructured it. Check everything before that.
inline constexpr bool kDeserializerOutputBug = ARMNN_MAJOR_VERSION < 25;

// Optimizer model options (FastMathEnabled, cached network) arrived in ARM NN 20.11 as
// OptimizerOptions::m_ModelOptions; detect the member instead of trusting version numbers.
template <typename Options, typename = void>
struct has_model_options : std::false_type {};
template <typename Options>
struct has_model_options<Options, std::void_t<decltype(std::declval<Options&>().m_ModelOptions)>>
    : std::true_type {};

inline constexpr bool kHaveModelOptions = has_model_options<armnn::OptimizerOptions>::value;
// GpuAcc SaveCachedNetwork / CachedNetworkFilePath arrived in ARM NN 21.02 (library version 24).
inline constexpr bool kHaveCachedNetwork = kHaveModelOptions && ARMNN_MAJOR_VERSION >= 24;

}  // namespace immich::armnn_bridge::detail
