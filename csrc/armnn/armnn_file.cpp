// A bounds-checked look inside .armnn files (a FlatBuffer with ARM NN's ArmnnSchema), used to
// refuse, with a message, files that older ARM NN deserializers would abort the process on.
//
// ARM NN up to at least 20.11 (Debian bookworm ships 20.08) reads output i's tensor info from
// output slot i of the layer feeding it instead of from the connected slot. A network whose
// second output comes from a single-output layer (every multi-output detector, e.g. SCRFD) then
// fails a FlatBuffers assertion inside libarmnnSerializer and aborts: no exception to catch.
#include "internal.hpp"

#include <cstdint>
#include <cstring>
#include <optional>

namespace immich::armnn_bridge::detail {
namespace {

// ArmnnSchema.fbs: union Layer member numbers and table field slots used below.
constexpr std::uint8_t kInputLayer = 9, kOutputLayer = 11;
constexpr int kGraphLayers = 0, kGraphOutputIds = 2, kGraphFeatureVersions = 3;
constexpr int kAnyLayerType = 0, kAnyLayerValue = 1;
constexpr int kLayerBase = 0;                // first field of every layer table
constexpr int kBindableBase = 0, kBindableId = 1;
constexpr int kBaseIndex = 0, kBaseInputSlots = 3, kBaseOutputSlots = 4;
constexpr int kSlotConnection = 1;           // InputSlot.connection: struct {uint source, uint slot}
constexpr int kFeatureBindingScheme = 0;

class Reader {
public:
    Reader(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}

    std::optional<std::uint32_t> u32(std::size_t at) const {
        if (at + 4 > size_) return std::nullopt;
        std::uint32_t v;
        std::memcpy(&v, data_ + at, 4);
        return v;
    }
    std::optional<std::uint16_t> u16(std::size_t at) const {
        if (at + 2 > size_) return std::nullopt;
        std::uint16_t v;
        std::memcpy(&v, data_ + at, 2);
        return v;
    }
    std::optional<std::uint8_t> u8(std::size_t at) const {
        if (at + 1 > size_) return std::nullopt;
        return data_[at];
    }
    // Position of field `slot` of the table at `table`, or nullopt when absent/out of bounds.
    std::optional<std::size_t> field(std::size_t table, int slot) const {
        const auto soffset = u32(table);
        if (!soffset) return std::nullopt;
        const std::int64_t vtable = static_cast<std::int64_t>(table) - static_cast<std::int32_t>(*soffset);
        if (vtable < 0) return std::nullopt;
        const auto vsize = u16(static_cast<std::size_t>(vtable));
        if (!vsize || static_cast<std::size_t>(4 + 2 * slot + 2) > *vsize) return std::nullopt;
        const auto offset = u16(static_cast<std::size_t>(vtable) + 4 + 2 * slot);
        if (!offset || *offset == 0) return std::nullopt;
        return table + *offset;
    }
    // Follows the uoffset stored in field `slot` (a table, vector or string).
    std::optional<std::size_t> ref(std::size_t table, int slot) const {
        const auto at = field(table, slot);
        if (!at) return std::nullopt;
        const auto offset = u32(*at);
        if (!offset || *at + *offset >= size_) return std::nullopt;
        return *at + *offset;
    }
    std::optional<std::uint32_t> length(std::size_t vector) const { return u32(vector); }
    // Element `i` of a vector of tables.
    std::optional<std::size_t> table_at(std::size_t vector, std::uint32_t i) const {
        const std::size_t at = vector + 4 + 4 * static_cast<std::size_t>(i);
        const auto offset = u32(at);
        if (!offset || at + *offset >= size_) return std::nullopt;
        return at + *offset;
    }

private:
    const std::uint8_t* data_;
    std::size_t size_;
};

struct LayerInfo {
    std::uint8_t type = 0;
    std::uint32_t index = 0;
    std::int32_t binding = 0;
    std::uint32_t output_slots = 0;
    std::optional<std::uint32_t> source;  // for output layers: the layer index feeding slot 0
};

std::optional<LayerInfo> read_layer(const Reader& r, std::size_t any) {
    LayerInfo info;
    const auto type_at = r.field(any, kAnyLayerType);
    const auto layer = r.ref(any, kAnyLayerValue);
    if (!type_at || !layer) return std::nullopt;
    info.type = r.u8(*type_at).value_or(0);
    auto base = r.ref(*layer, kLayerBase);
    if (!base) return std::nullopt;
    if (info.type == kInputLayer || info.type == kOutputLayer) {
        if (const auto id = r.field(*base, kBindableId)) {
            info.binding = static_cast<std::int32_t>(r.u32(*id).value_or(0));
        }
        base = r.ref(*base, kBindableBase);
        if (!base) return std::nullopt;
    }
    if (const auto index = r.field(*base, kBaseIndex)) {
        info.index = r.u32(*index).value_or(0);
    }
    if (const auto slots = r.ref(*base, kBaseOutputSlots)) {
        info.output_slots = r.length(*slots).value_or(0);
    }
    if (info.type == kOutputLayer) {
        const auto inputs = r.ref(*base, kBaseInputSlots);
        if (inputs && r.length(*inputs).value_or(0) > 0) {
            if (const auto slot = r.table_at(*inputs, 0)) {
                if (const auto connection = r.field(*slot, kSlotConnection)) {
                    info.source = r.u32(*connection);
                }
            }
        }
    }
    return info;
}

}  // namespace

std::string deserializer_hazard(const std::vector<std::uint8_t>& bytes) {
    // ARM NN's serializer writes no file identifier, so nothing identifies the file up front; any
    // structure this reader cannot follow is left to the deserializer's own verifier.
    const Reader r(bytes.data(), bytes.size());
    const auto root_offset = r.u32(0);
    if (!root_offset) return "";
    const std::size_t root = *root_offset;
    const auto layers = r.ref(root, kGraphLayers);
    const auto outputs = r.ref(root, kGraphOutputIds);
    if (!layers || !outputs) return "";
    std::uint32_t scheme = 0;
    if (const auto features = r.ref(root, kGraphFeatureVersions)) {
        if (const auto at = r.field(*features, kFeatureBindingScheme)) {
            scheme = r.u32(*at).value_or(0);
        }
    }
    std::vector<LayerInfo> all;
    const std::uint32_t n_layers = r.length(*layers).value_or(0);
    for (std::uint32_t i = 0; i < n_layers; ++i) {
        const auto any = r.table_at(*layers, i);
        const auto info = any ? read_layer(r, *any) : std::nullopt;
        if (!info) return "";
        all.push_back(*info);
    }
    const std::uint32_t n_outputs = r.length(*outputs).value_or(0);
    for (std::uint32_t i = 1; i < n_outputs; ++i) {
        const auto id = r.u32(*outputs + 4 + 4 * static_cast<std::size_t>(i));
        if (!id) return "";
        const LayerInfo* output = nullptr;
        for (const auto& layer : all) {
            const bool match = scheme == 0 ? layer.index == *id
                                           : (layer.type == kOutputLayer &&
                                              layer.binding == static_cast<std::int32_t>(*id));
            if (match) {
                output = &layer;
                break;
            }
        }
        if (output == nullptr || !output->source) return "";
        for (const auto& layer : all) {
            if (layer.index == *output->source && layer.output_slots <= i) {
                return "this .armnn network has " + std::to_string(n_outputs) +
                       " outputs, and the libarmnn " ARMNN_VERSION
                       " deserializer aborts the process on such files (it reads output " +
                       std::to_string(i) + " from a layer with " + std::to_string(layer.output_slots) +
                       " output slot(s)); a newer ARM NN reads them correctly";
            }
        }
    }
    return "";
}

}  // namespace immich::armnn_bridge::detail
