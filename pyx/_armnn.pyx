# cython: language_level=3, boundscheck=False, wraparound=False, embedsignature=True, autotestdict=False, auto_pickle=False
"""Loader and wrapper for the ARM NN bridge (csrc/armnn). Links no ARM NN library.

The bridge itself is a separate shared object per ARM NN ABI (``_armnn_bridge_abi<N>.so`` next to
this module) that :func:`load` opens with dlopen, after the board's libarmnn when a path is given,
so this module imports everywhere and one wheel serves every board. Until a bridge is loaded the
other functions raise RuntimeError. Buffers cross as the Python buffer protocol (numpy arrays):
dense C-contiguous memory whose size must equal the tensor's byte size. Long calls (load, run,
convert) release the GIL.
"""

from cpython.buffer cimport (
    PyBUF_C_CONTIGUOUS,
    PyBUF_WRITABLE,
    PyBuffer_Release,
    PyObject_GetBuffer,
)
from libc.string cimport memset
from libcpp.vector cimport vector
from posix.dlfcn cimport RTLD_GLOBAL, RTLD_LOCAL, RTLD_NOW, dlerror, dlopen, dlsym

cimport armnn as bridge

_DTYPES = ("float32", "float16", "uint8", "int8", "int16", "int32", "bool", "int64")
IMPORT_ALIGNMENT = bridge.kImportAlignment
API_VERSION = bridge.kApiVersion

ctypedef const void* const_ptr
ctypedef const bridge.Api* (*EntryPoint)(unsigned int) noexcept nogil

cdef const bridge.Api* _API = NULL
# (bridge path, preloaded library paths, ARM NN ABI) once a bridge is loaded.
_LOADED = None


class ArmnnError(RuntimeError):
    """ARM NN reported a failure; ``status`` is the bridge's Status code."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


cdef str _text(const char* value):
    return value.decode("utf-8", "replace")


cdef _raise(int status, const char* message):
    text = _text(message)
    if status == bridge.kFileNotFound:
        raise FileNotFoundError(text)
    if status == bridge.kInvalidArgument:
        raise ValueError(text)
    raise ArmnnError(status, text)


cdef str _dl_error():
    cdef const char* text = dlerror()
    return "unknown dynamic loader error" if text == NULL else _text(text)


cdef const bridge.Api* _api() except NULL:
    if _API == NULL:
        raise RuntimeError("no ARM NN bridge is loaded (immich_ml._core._armnn.load)")
    return _API


def load(str bridge_path, preload=()):
    """Open the bridge at ``bridge_path``; first open each path in ``preload`` (the board's libarmnn
    and its parser libraries) globally, so the bridge binds to those instead of searching.

    Once per process: loading the same bridge again returns the same info, another one raises
    RuntimeError. OSError carries the dynamic loader's message (a missing or incompatible library).
    Returns ``loaded()``.
    """
    global _API, _LOADED
    cdef void* handle
    cdef void* entry
    cdef const bridge.Api* api
    if _API != NULL:
        if _LOADED[0] == bridge_path:
            return loaded()
        raise RuntimeError("an ARM NN bridge is already loaded in this process (%s)" % _LOADED[0])
    paths = tuple(str(path) for path in preload)
    for path in paths:
        if dlopen(path.encode(), RTLD_NOW | RTLD_GLOBAL) == NULL:
            raise OSError(_dl_error())
    handle = dlopen(bridge_path.encode(), RTLD_NOW | RTLD_LOCAL)
    if handle == NULL:
        raise OSError(_dl_error())
    entry = dlsym(handle, bridge.kApiSymbol)
    if entry == NULL:
        raise OSError("%s is not an ARM NN bridge (%s)" % (bridge_path, _dl_error()))
    api = (<EntryPoint>entry)(bridge.kApiVersion)
    if api == NULL:
        raise OSError("%s implements another bridge API than this module (version %d); reinstall immich-ml"
                      % (bridge_path, bridge.kApiVersion))
    _API = api
    _LOADED = (bridge_path, paths, api.armnn_abi)
    return loaded()


def loaded():
    """The loaded bridge as {"bridge", "preloaded", "abi"}, or None."""
    if _LOADED is None:
        return None
    return {"bridge": _LOADED[0], "preloaded": _LOADED[1], "abi": _LOADED[2]}


def capabilities():
    """What this build supports: version, tflite_parser, onnx_parser, serializer, fast_math, cached_network."""
    cdef bridge.Capabilities caps
    _api().capabilities(&caps)
    return {
        "version": _text(caps.version),
        "tflite_parser": caps.tflite_parser,
        "onnx_parser": caps.onnx_parser,
        "serializer": caps.serializer,
        "fast_math": caps.fast_math,
        "cached_network": caps.cached_network,
    }


def convert(str source, str destination):
    """Parse a .tflite/.onnx model and write it as a serialized .armnn network."""
    cdef bytes src = source.encode()
    cdef bytes dst = destination.encode()
    cdef const char* src_c = src
    cdef const char* dst_c = dst
    cdef char error[1024]
    cdef int status
    cdef const bridge.Api* api = _api()
    with nogil:
        status = api.convert_to_armnn(src_c, dst_c, error, sizeof(error))
    if status != bridge.kOk:
        _raise(status, error)


cdef class Runtime:
    """An ARM NN runtime with a filtered backend preference list and GpuAcc tuning options."""

    cdef bridge.Runtime* _ptr
    cdef object __weakref__

    def __init__(self, str backends="", int tuning_level=0, str tuning_file="", int log_severity=3):
        cdef bytes backends_b = backends.encode()
        cdef bytes tuning_b = tuning_file.encode()
        cdef bridge.RuntimeOptions options
        cdef char error[1024]
        options.backends = backends_b
        options.tuning_level = tuning_level
        options.tuning_file = tuning_b
        options.log_severity = log_severity
        cdef int status
        cdef const bridge.Api* api = _api()
        with nogil:
            status = api.runtime_create(&options, &self._ptr, error, sizeof(error))
        if status != bridge.kOk:
            _raise(status, error)

    def __dealloc__(self):
        if self._ptr != NULL:
            _API.runtime_release(self._ptr)
            self._ptr = NULL

    def _backends(self):
        cdef char preferred[512]
        cdef char registered[512]
        _API.runtime_backends(self._ptr, preferred, sizeof(preferred), registered, sizeof(registered))
        split = lambda text: tuple(part for part in text.split(",") if part)
        return split(_text(preferred)), split(_text(registered))

    @property
    def preferred(self):
        """Backends networks are optimized for, best first (the requested order, filtered)."""
        return self._backends()[0]

    @property
    def registered(self):
        """Every backend this ARM NN runtime has."""
        return self._backends()[1]


cdef class Network:
    """A network loaded on a Runtime. ``run`` may be called from many threads (one lock inside)."""

    cdef bridge.Network* _ptr
    cdef Runtime _runtime
    cdef int _active
    cdef bint _closing
    cdef readonly tuple inputs
    cdef readonly tuple outputs
    cdef readonly dict report

    def __init__(self, Runtime runtime not None, str path, *, bint fp16=False, bint fast_math=True,
                 bint import_memory=True, str cached_network_path=""):
        cdef bytes path_b = path.encode()
        cdef bytes cache_b = cached_network_path.encode()
        cdef const char* path_c = path_b
        cdef bridge.LoadOptions options
        cdef bridge.LoadReport report
        cdef char error[1024]
        cdef int status
        options.fp16 = fp16
        options.fast_math = fast_math
        options.import_memory = import_memory
        options.cached_network_path = cache_b
        memset(&report, 0, sizeof(report))
        cdef const bridge.Api* api = _api()
        with nogil:
            status = api.network_load(runtime._ptr, path_c, &options, &self._ptr, &report, error,
                                      sizeof(error))
        if status != bridge.kOk:
            _raise(status, error)
        self._runtime = runtime
        self.inputs = self._tensors(True)
        self.outputs = self._tensors(False)
        self.report = {
            "fp16_applied": report.fp16_applied,
            "inputs_imported": report.inputs_imported,
            "outputs_exported": report.outputs_exported,
            "fast_math_applied": report.fast_math_applied,
            "cached_network_applied": report.cached_network_applied,
            "backends": _text(report.backends),
            "notes": _text(report.notes),
        }

    cdef tuple _tensors(self, bint inputs):
        cdef bridge.TensorDesc desc
        result = []
        for index in range(_API.network_tensor_count(self._ptr, inputs)):
            if _API.network_tensor(self._ptr, inputs, index, &desc) != bridge.kOk or desc.dtype < 0:
                raise ArmnnError(bridge.kInternal, "cannot describe tensor %d" % index)
            shape = tuple(desc.dims[d] for d in range(desc.rank))
            result.append((_text(desc.name), shape, _DTYPES[desc.dtype], desc.nbytes))
        return tuple(result)

    def run(self, inputs, outputs):
        """Run once. ``inputs``/``outputs``: one buffer per tensor, in ``self.inputs``/``self.outputs``
        order, each dense C-contiguous with exactly the tensor's byte size (outputs writable)."""
        cdef Py_ssize_t n_in = len(self.inputs)
        cdef Py_ssize_t n_out = len(self.outputs)
        cdef vector[Py_buffer] views
        cdef vector[const_ptr] in_ptrs
        cdef vector[void*] out_ptrs
        cdef Py_ssize_t acquired = 0
        cdef Py_ssize_t i
        cdef char error[1024]
        cdef int status
        if self._ptr == NULL or self._closing:
            raise ValueError("the ARM NN network is closed")
        if len(inputs) != n_in or len(outputs) != n_out:
            raise ValueError("expected %d inputs and %d outputs, got %d and %d"
                             % (n_in, n_out, len(inputs), len(outputs)))
        views.resize(n_in + n_out)
        in_ptrs.resize(n_in)
        out_ptrs.resize(n_out)
        try:
            for i in range(n_in + n_out):
                is_input = i < n_in
                spec = self.inputs[i] if is_input else self.outputs[i - n_in]
                obj = inputs[i] if is_input else outputs[i - n_in]
                PyObject_GetBuffer(obj, &views[i], PyBUF_C_CONTIGUOUS | (0 if is_input else PyBUF_WRITABLE))
                acquired += 1
                if views[i].len != <Py_ssize_t>spec[3]:
                    raise ValueError("%s '%s' needs %d bytes (%s %s), got %d"
                                     % ("input" if is_input else "output", spec[0], spec[3], spec[2],
                                        spec[1], views[i].len))
                if is_input:
                    in_ptrs[i] = views[i].buf
                else:
                    out_ptrs[i - n_in] = views[i].buf
            self._active += 1
            with nogil:
                status = _API.network_run(self._ptr, in_ptrs.data(), out_ptrs.data(), error, sizeof(error))
            self._active -= 1
            if self._closing and self._active == 0:
                self._release()
            if status != bridge.kOk:
                _raise(status, error)
        finally:
            for i in range(acquired):
                PyBuffer_Release(&views[i])

    cdef _release(self):
        cdef bridge.Network* ptr = self._ptr
        self._ptr = NULL
        # The C++ network keeps the runtime alive as long as it needs it; drop the Python handle.
        self._runtime = None
        with nogil:
            _API.network_release(ptr)

    def close(self):
        """Unload the network; a run still in progress on another thread finishes first."""
        self._closing = True
        if self._active == 0 and self._ptr != NULL:
            self._release()

    def __dealloc__(self):
        if self._ptr != NULL:
            _API.network_release(self._ptr)
            self._ptr = NULL
