// The ARM NN bridge as a loadable module: one C entry point returning a table of the bridge
// functions (bridge.hpp).
//
// Why a table: the bridge is compiled against one ARM NN C++ ABI (libarmnn.so.<ABI>), so it is
// built as its own shared object, immich_ml/_core/_armnn_bridge_abi<ABI>.so, and the Python
// module _armnn (which links no ARM NN library) opens it with dlopen at run time. A wheel thus
// imports on every board, carries no libarmnn, and uses the board's library when its ABI matches.
// Both sides are compiled from this header by the same compiler, so the struct layout agrees;
// kApiVersion guards against a stale bridge file left next to a newer module.
#pragma once

#include <cstdint>

#include "bridge.hpp"

namespace immich::armnn_bridge {

inline constexpr std::uint32_t kApiVersion = 1;

struct Api {
    std::uint32_t api_version;  // kApiVersion of the bridge
    int armnn_abi;              // ARMNN_MAJOR_VERSION the bridge was compiled against (soname major)
    void (*capabilities)(Capabilities* out) noexcept;
    int (*runtime_create)(const RuntimeOptions* options, Runtime** out, char* error,
                          std::size_t error_length) noexcept;
    void (*runtime_backends)(const Runtime* runtime, char* preferred, std::size_t preferred_length,
                             char* registered, std::size_t registered_length) noexcept;
    void (*runtime_release)(Runtime* runtime) noexcept;
    int (*network_load)(Runtime* runtime, const char* path, const LoadOptions* options, Network** out,
                        LoadReport* report, char* error, std::size_t error_length) noexcept;
    int (*network_tensor_count)(const Network* network, bool inputs) noexcept;
    int (*network_tensor)(const Network* network, bool inputs, int index, TensorDesc* out) noexcept;
    int (*network_run)(Network* network, const void* const* inputs, void* const* outputs, char* error,
                       std::size_t error_length) noexcept;
    void (*network_release)(Network* network) noexcept;
    int (*convert_to_armnn)(const char* source, const char* destination, char* error,
                            std::size_t error_length) noexcept;
};

// Name of the entry point, for dlsym.
inline constexpr const char* kApiSymbol = "immich_armnn_bridge_api";

}  // namespace immich::armnn_bridge

// The table when `api_version` is the one this bridge implements, else nullptr.
extern "C" const immich::armnn_bridge::Api* immich_armnn_bridge_api(std::uint32_t api_version) noexcept;
