// ARM NN bridge: a small, exception-free facade over libarmnn for the Cython wrapper.
//
// Everything here is plain C++17 and includes no ARM NN header, so pyx/armnn.pxd can declare it
// without knowing ARM NN's types. Handles are opaque; every function is noexcept and reports
// failure as a Status plus a message written into a caller buffer (NUL-terminated, truncated).
//
// Threading: a Runtime may be shared by any number of Networks and threads. Each Network owns
// one mutex that serialises network_run (ARM NN reuses a network's working memory between
// calls); loading and unloading hold one runtime-wide mutex.
#pragma once

#include <cstddef>
#include <cstdint>

namespace immich::armnn_bridge {

inline constexpr int kMaxRank = 8;
inline constexpr std::size_t kNameLength = 256;
inline constexpr std::size_t kNoteLength = 512;
// Buffers passed to network_run must be aligned to this many bytes when the network imports
// inputs or exports outputs (ARM NN maps the caller's memory instead of copying it).
inline constexpr std::size_t kImportAlignment = 64;

enum Status : int {
    kOk = 0,
    kInvalidArgument = 1,
    kFileNotFound = 2,
    kUnsupportedFormat = 3,
    kParseFailed = 4,
    kOptimizeFailed = 5,
    kLoadFailed = 6,
    kRunFailed = 7,
    kInternal = 8,
};

// Element types a bridge tensor can have (numpy equivalents in brackets).
enum DType : int {
    kFloat32 = 0,  // float32
    kFloat16 = 1,  // float16
    kUInt8 = 2,    // uint8 (also ARM NN QAsymmU8)
    kInt8 = 3,     // int8 (ARM NN QAsymmS8 / QSymmS8)
    kInt16 = 4,    // int16 (ARM NN QSymmS16)
    kInt32 = 5,    // int32
    kBool = 6,     // bool
    kInt64 = 7,    // int64 (ARM NN 21.05 and later)
};

// What this build of the bridge can do, decided when it was compiled against libarmnn.
struct Capabilities {
    char version[32];       // ARM NN library version, e.g. "22.0.0" (ARM NN 20.08)
    bool tflite_parser;     // .tflite models can be loaded
    bool onnx_parser;       // .onnx models can be loaded
    bool serializer;        // networks can be exported to .armnn (convert_to_armnn)
    bool fast_math;         // optimizer model options (FastMathEnabled) exist (ARM NN >= 20.11)
    bool cached_network;    // GpuAcc SaveCachedNetwork/CachedNetworkFilePath exist (ARM NN >= 21.02)
};

struct RuntimeOptions {
    // Comma-separated backend preference, e.g. "GpuAcc,CpuAcc,CpuRef". Backends the runtime
    // does not have are dropped; nullptr or "" means GpuAcc,CpuAcc,CpuRef.
    const char* backends;
    // GpuAcc tuning: 0 = only read tuning_file, 1 = rapid, 2 = normal, 3 = exhaustive.
    int tuning_level;
    // GpuAcc tuning file (read at start, written when the runtime is destroyed); nullptr/"" = none.
    const char* tuning_file;
    // ARM NN's own log threshold: 0 trace, 1 debug, 2 info, 3 warning, 4 error, 5 fatal.
    int log_severity;
};

struct LoadOptions {
    bool fp16;                        // ReduceFp32ToFp16 (retried without it if it fails)
    bool fast_math;                   // GpuAcc/CpuAcc FastMathEnabled, where supported
    bool import_memory;               // import inputs / export outputs instead of copying
    const char* cached_network_path;  // GpuAcc compiled-network cache file; nullptr/"" = none
};

// What really happened while loading, for logs and health reporting.
struct LoadReport {
    bool fp16_applied;              // the optimized graph contains FP16 layers
    bool inputs_imported;           // network_run maps input memory (no copy)
    bool outputs_exported;          // network_run writes straight into output memory
    bool fast_math_applied;
    bool cached_network_applied;
    char backends[kNoteLength];     // layers per backend in the optimized graph, "CpuRef:7,GpuAcc:2"
    char notes[kNoteLength];        // why a requested feature was not applied ("" when none)
};

struct TensorDesc {
    char name[kNameLength];
    int dtype;                      // a DType value
    int rank;
    std::int64_t dims[kMaxRank];
    std::size_t nbytes;             // bytes of one dense C-contiguous buffer for this tensor
};

struct Runtime;
struct Network;

void capabilities(Capabilities* out) noexcept;

int runtime_create(const RuntimeOptions& options, Runtime** out, char* error,
                   std::size_t error_length) noexcept;
// Comma-separated lists: the filtered preference order, and every backend the runtime has.
void runtime_backends(const Runtime* runtime, char* preferred, std::size_t preferred_length,
                      char* registered, std::size_t registered_length) noexcept;
// Drops this handle's reference; networks still loaded keep the runtime alive.
void runtime_release(Runtime* runtime) noexcept;

// Loads `path` (.armnn, or .tflite/.onnx where the parsers were built) onto the runtime.
int network_load(Runtime* runtime, const char* path, const LoadOptions& options, Network** out,
                 LoadReport* report, char* error, std::size_t error_length) noexcept;
int network_tensor_count(const Network* network, bool inputs) noexcept;
int network_tensor(const Network* network, bool inputs, int index, TensorDesc* out) noexcept;
// Runs once. inputs/outputs hold one pointer per tensor, in network_tensor order, each to a
// dense C-contiguous buffer of TensorDesc::nbytes (aligned to kImportAlignment if imported).
int network_run(Network* network, const void* const* inputs, void* const* outputs, char* error,
                std::size_t error_length) noexcept;
void network_release(Network* network) noexcept;

// Parses a .tflite/.onnx model and writes it as a serialized .armnn network.
int convert_to_armnn(const char* source, const char* destination, char* error,
                     std::size_t error_length) noexcept;

}  // namespace immich::armnn_bridge
