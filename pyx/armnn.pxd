# Declarations of the ARM NN bridge (csrc/armnn/bridge.hpp, bridge_api.hpp) for pyx/_armnn.pyx:
# the types, and the function table a bridge module returns (the module is dlopened, never linked).
from libc.stddef cimport size_t
from libc.stdint cimport int64_t
from libcpp cimport bool


cdef extern from "bridge_api.hpp" namespace "immich::armnn_bridge" nogil:
    const int kMaxRank
    const size_t kNameLength
    const size_t kNoteLength
    const size_t kImportAlignment

    enum Status:
        kOk
        kInvalidArgument
        kFileNotFound
        kUnsupportedFormat
        kParseFailed
        kOptimizeFailed
        kLoadFailed
        kRunFailed
        kInternal

    cdef struct Capabilities:
        char version[32]
        bool tflite_parser
        bool onnx_parser
        bool serializer
        bool fast_math
        bool cached_network

    cdef struct RuntimeOptions:
        const char* backends
        int tuning_level
        const char* tuning_file
        int log_severity

    cdef struct LoadOptions:
        bool fp16
        bool fast_math
        bool import_memory
        const char* cached_network_path

    cdef struct LoadReport:
        bool fp16_applied
        bool inputs_imported
        bool outputs_exported
        bool fast_math_applied
        bool cached_network_applied
        char backends[512]
        char notes[512]

    cdef struct TensorDesc:
        char name[256]
        int dtype
        int rank
        int64_t dims[8]
        size_t nbytes

    cdef cppclass Runtime:
        pass

    cdef cppclass Network:
        pass

    ctypedef struct Api:
        unsigned int api_version
        int armnn_abi
        void (*capabilities)(Capabilities* out) noexcept nogil
        int (*runtime_create)(const RuntimeOptions* options, Runtime** out, char* error,
                              size_t error_length) noexcept nogil
        void (*runtime_backends)(const Runtime* runtime, char* preferred, size_t preferred_length,
                                 char* registered, size_t registered_length) noexcept nogil
        void (*runtime_release)(Runtime* runtime) noexcept nogil
        int (*network_load)(Runtime* runtime, const char* path, const LoadOptions* options,
                            Network** out, LoadReport* report, char* error,
                            size_t error_length) noexcept nogil
        int (*network_tensor_count)(const Network* network, bool inputs) noexcept nogil
        int (*network_tensor)(const Network* network, bool inputs, int index,
                              TensorDesc* out) noexcept nogil
        int (*network_run)(Network* network, const void* const* inputs, void* const* outputs,
                           char* error, size_t error_length) noexcept nogil
        void (*network_release)(Network* network) noexcept nogil
        int (*convert_to_armnn)(const char* source, const char* destination, char* error,
                                size_t error_length) noexcept nogil

    const unsigned int kApiVersion
    const char* kApiSymbol
