// Model files → armnn::INetwork: the .armnn deserializer (Immich's export format) and, where this
// ARM NN installation has them, the TfLite and ONNX parsers. Also the .armnn export (serializer)
// and the build's capability report.
#include "internal.hpp"

#include <armnnDeserializer/IDeserializer.hpp>

#if IMMICH_ARMNN_HAVE_TFLITE
#include <armnnTfLiteParser/ITfLiteParser.hpp>
#endif
#if IMMICH_ARMNN_HAVE_ONNX
#include <armnnOnnxParser/IOnnxParser.hpp>
#endif
#if IMMICH_ARMNN_HAVE_SERIALIZER
#include <armnnSerializer/ISerializer.hpp>
#endif
// ARM NN 21.05 replaced layer visitors with strategies (and later removed the visitors).
#if __has_include(<armnn/IStrategy.hpp>)
#include <armnn/IStrategy.hpp>
#define IMMICH_ARMNN_USE_STRATEGY 1
#else
#include <armnn/LayerVisitorBase.hpp>
#define IMMICH_ARMNN_USE_STRATEGY 0
#endif

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace immich::armnn_bridge {
namespace detail {
namespace {

// Collects the names and binding ids of a network's input and output layers.
#if IMMICH_ARMNN_USE_STRATEGY
class IoCollector final : public armnn::IStrategy {
public:
    void ExecuteStrategy(const armnn::IConnectableLayer* layer, const armnn::BaseDescriptor&,
                         const std::vector<armnn::ConstTensor>&, const char* name,
                         const armnn::LayerBindingId id) override {
        if (layer->GetType() == armnn::LayerType::Input) {
            inputs.push_back({name != nullptr ? name : "", id});
        } else if (layer->GetType() == armnn::LayerType::Output) {
            outputs.push_back({name != nullptr ? name : "", id});
        }
    }
    void collect(const armnn::INetwork& network) { network.ExecuteStrategy(*this); }
    std::vector<Binding> inputs;
    std::vector<Binding> outputs;
};
#else
class IoCollector final : public armnn::LayerVisitorBase<armnn::VisitorNoThrowPolicy> {
public:
    void VisitInputLayer(const armnn::IConnectableLayer*, armnn::LayerBindingId id,
                         const char* name) override {
        inputs.push_back({name != nullptr ? name : "", id});
    }
    void VisitOutputLayer(const armnn::IConnectableLayer*, armnn::LayerBindingId id,
                          const char* name) override {
        outputs.push_back({name != nullptr ? name : "", id});
    }
    void collect(const armnn::INetwork& network) { network.Accept(*this); }
    std::vector<Binding> inputs;
    std::vector<Binding> outputs;
};
#endif

std::string lower_extension(const std::string& path) {
    std::string ext = std::filesystem::path(path).extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return ext;
}

armnn::INetworkPtr read_armnn(const std::string& path) {
    std::ifstream stream(path, std::ios::binary);
    if (!stream) {
        throw BridgeError(kFileNotFound, "cannot open " + path);
    }
    const std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(stream)), std::istreambuf_iterator<char>());
    if constexpr (kDeserializerOutputBug) {
        const std::string hazard = deserializer_hazard(bytes);
        if (!hazard.empty()) {
            throw BridgeError(kUnsupportedFormat, path + ": " + hazard);
        }
    }
    auto deserializer = armnnDeserializer::IDeserializer::Create();
    return deserializer->CreateNetworkFromBinary(bytes);
}

armnn::INetworkPtr read_tflite(const std::string& path) {
#if IMMICH_ARMNN_HAVE_TFLITE
    auto parser = armnnTfLiteParser::ITfLiteParser::Create();
    return parser->CreateNetworkFromBinaryFile(path.c_str());
#else
    throw BridgeError(kUnsupportedFormat,
                      "this build has no ARM NN TfLite parser (libarmnnTfLiteParser was not "
                      "found when immich_ml was built), so " + path + " cannot be loaded");
#endif
}

armnn::INetworkPtr read_onnx(const std::string& path) {
#if IMMICH_ARMNN_HAVE_ONNX
    auto parser = armnnOnnxParser::IOnnxParser::Create();
    return parser->CreateNetworkFromBinaryFile(path.c_str());
#else
    throw BridgeError(kUnsupportedFormat,
                      "this build has no ARM NN ONNX parser (libarmnnOnnxParser was not found "
                      "when immich_ml was built), so " + path + " cannot be loaded");
#endif
}

}  // namespace

Parsed parse_file(const std::string& path) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) {
        throw BridgeError(kFileNotFound, "model file not found: " + path);
    }
    const std::string ext = lower_extension(path);
    Parsed parsed;
    try {
        if (ext == ".armnn") {
            parsed.network = read_armnn(path);
        } else if (ext == ".tflite") {
            parsed.network = read_tflite(path);
        } else if (ext == ".onnx") {
            parsed.network = read_onnx(path);
        } else {
            throw BridgeError(kUnsupportedFormat,
                              "unknown model format '" + ext + "' (expected .armnn, .tflite or .onnx)");
        }
    } catch (const armnn::Exception& e) {
        throw BridgeError(kParseFailed, "ARM NN could not read " + path + ": " + e.what());
    }
    if (!parsed.network) {
        throw BridgeError(kParseFailed, "ARM NN returned no network for " + path);
    }
    IoCollector collector;
    collector.collect(*parsed.network);
    const auto by_id = [](const Binding& a, const Binding& b) { return a.id < b.id; };
    std::sort(collector.inputs.begin(), collector.inputs.end(), by_id);
    std::sort(collector.outputs.begin(), collector.outputs.end(), by_id);
    if (collector.inputs.empty() || collector.outputs.empty()) {
        throw BridgeError(kParseFailed, path + " has no input or no output layer");
    }
    parsed.inputs = std::move(collector.inputs);
    parsed.outputs = std::move(collector.outputs);
    return parsed;
}

}  // namespace detail

void capabilities(Capabilities* out) noexcept {
    if (out == nullptr) {
        return;
    }
    detail::copy_text(ARMNN_VERSION, out->version, sizeof(out->version));
    out->tflite_parser = IMMICH_ARMNN_HAVE_TFLITE != 0;
    out->onnx_parser = IMMICH_ARMNN_HAVE_ONNX != 0;
    out->serializer = IMMICH_ARMNN_HAVE_SERIALIZER != 0;
    out->fast_math = detail::kHaveModelOptions;
    out->cached_network = detail::kHaveCachedNetwork;
}

int convert_to_armnn(const char* source, const char* destination, char* error,
                     std::size_t error_length) noexcept {
    detail::copy_text("", error, error_length);
    if (source == nullptr || destination == nullptr) {
        detail::copy_text("source and destination paths are required", error, error_length);
        return kInvalidArgument;
    }
#if IMMICH_ARMNN_HAVE_SERIALIZER
    try {
        detail::Parsed parsed = detail::parse_file(source);
        auto serializer = armnnSerializer::ISerializer::Create();
        serializer->Serialize(*parsed.network);
        // Write next to the destination first so a crash never leaves a truncated .armnn behind.
        const std::string partial = std::string(destination) + ".partial";
        {
            std::ofstream stream(partial, std::ios::binary | std::ios::trunc);
            if (!stream || !serializer->SaveSerializedToStream(stream) || !stream.flush()) {
                detail::copy_text("cannot write " + partial, error, error_length);
                return kInvalidArgument;
            }
        }
        std::filesystem::rename(partial, destination);
        return kOk;
    } catch (const detail::BridgeError& e) {
        detail::copy_text(e.what(), error, error_length);
        return e.status();
    } catch (const armnn::Exception& e) {
        detail::copy_text(std::string("ARM NN could not serialize the network: ") + e.what(), error,
                          error_length);
        return kParseFailed;
    } catch (const std::exception& e) {
        detail::copy_text(e.what(), error, error_length);
        return kInternal;
    } catch (...) {
        detail::copy_text("unknown error while converting to .armnn", error, error_length);
        return kInternal;
    }
#else
    detail::copy_text("this build has no ARM NN serializer (libarmnnSerializer was not found when "
                      "immich_ml was built)",
                      error, error_length);
    return kUnsupportedFormat;
#endif
}

}  // namespace immich::armnn_bridge
