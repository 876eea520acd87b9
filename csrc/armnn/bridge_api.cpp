// The bridge's only exported symbol: the function table of bridge_api.hpp.
#include "bridge_api.hpp"

#include <armnn/Version.hpp>

namespace immich::armnn_bridge {
namespace {

int runtime_create_at(const RuntimeOptions* options, Runtime** out, char* error,
                      std::size_t error_length) noexcept {
    return runtime_create(*options, out, error, error_length);
}

int network_load_at(Runtime* runtime, const char* path, const LoadOptions* options, Network** out,
                    LoadReport* report, char* error, std::size_t error_length) noexcept {
    return network_load(runtime, path, *options, out, report, error, error_length);
}

constexpr Api kApi{
    kApiVersion,          ARMNN_MAJOR_VERSION,  capabilities,   runtime_create_at,
    runtime_backends,     runtime_release,      network_load_at, network_tensor_count,
    network_tensor,       network_run,          network_release, convert_to_armnn,
};

}  // namespace
}  // namespace immich::armnn_bridge

extern "C" __attribute__((visibility("default"))) const immich::armnn_bridge::Api* immich_armnn_bridge_api(
    std::uint32_t api_version) noexcept {
    return api_version == immich::armnn_bridge::kApiVersion ? &immich::armnn_bridge::kApi : nullptr;
}
