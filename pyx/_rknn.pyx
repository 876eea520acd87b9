# cython: language_level=3, boundscheck=False, wraparound=False, auto_pickle=False
"""Thin wrapper over the RKNN bridge (csrc/rknn): librknnrt.so opened at run time, no Rockchip SDK.

``Runtime`` is one dlopen'ed library; ``Model`` one .rknn model with a pool of contexts sharing its
weights. Blocking calls (init, prepare, acquire, run, close) release the GIL. Runtime memory is
exposed as ``memoryview`` objects over it (buffer protocol), so numpy views of NPU memory need no copy.
Errors raise :class:`RknnError` carrying the bridge's message and return code.
"""

import os

from cpython.buffer cimport PyBUF_FORMAT, PyBUF_WRITABLE
from libc.stdint cimport int32_t, uint16_t, uint32_t, uint64_t
from libcpp.vector cimport vector

from rknn cimport *

cdef enum:
    ERR_LEN = 768


class RknnError(RuntimeError):
    """A failure reported by the bridge or by librknnrt; ``code`` is the (negative) return code."""

    def __init__(self, message, code):
        super().__init__(message)
        self.code = code

    def __reduce__(self):
        return (type(self), (str(self), self.code))


cdef str _text(const char* s):
    return s.decode("utf-8", "replace")


def code_name(int code):
    """Name of a bridge/RKNN return code, e.g. ``RKNN_ERR_TIMEOUT``."""
    return _text(rkb_code_name(code))


def half_to_float_into(const uint16_t[::1] src, float[::1] dst):
    """Widen IEEE binary16 bit patterns (uint16) into float32 ``dst`` of the same length."""
    if src.shape[0] != dst.shape[0]:
        raise ValueError("src and dst lengths differ")
    if src.shape[0] == 0:
        return
    with nogil:
        rkb_half_to_float(&src[0], &dst[0], <size_t>src.shape[0])


cdef class Runtime:
    """librknnrt.so (or a library with the same C ABI) loaded from ``path``."""

    cdef rkb_runtime* _rt
    cdef readonly str path

    def __init__(self, str path):
        if self._rt != NULL:
            raise RknnError("Runtime is already open", -106)
        cdef bytes encoded = os.fsencode(path)
        cdef const char* c_path = encoded
        cdef char err[ERR_LEN]
        cdef int rc
        err[0] = 0
        with nogil:
            rc = rkb_runtime_open(c_path, &self._rt, err, ERR_LEN)
        if rc != 0:
            raise RknnError(_text(err), rc)
        self.path = path

    def has_function(self, str name):
        """Whether the library exports ``name`` (e.g. ``rknn_dup_context``)."""
        cdef bytes encoded = name.encode()
        return rkb_runtime_has(self._rt, encoded) == 1

    def __dealloc__(self):
        rkb_runtime_close(self._rt)


cdef class TensorAttr:
    """A snapshot of one ``rknn_tensor_attr`` as the runtime reported it."""

    cdef readonly uint32_t index
    cdef readonly str name
    cdef readonly tuple dims
    cdef readonly int fmt
    cdef readonly int type
    cdef readonly int qnt_type
    cdef readonly int zp
    cdef readonly float scale
    cdef readonly uint32_t n_elems
    cdef readonly uint32_t size
    cdef readonly uint32_t size_with_stride
    cdef readonly uint32_t w_stride
    cdef readonly uint32_t h_stride

    def __repr__(self):
        return (f"TensorAttr(index={self.index}, name={self.name!r}, dims={self.dims}, fmt={self.fmt}, "
                f"type={self.type}, n_elems={self.n_elems}, size={self.size})")


cdef TensorAttr _attr(const rknn_tensor_attr* a):
    cdef TensorAttr t = TensorAttr.__new__(TensorAttr)
    t.index = a.index
    t.name = _text(a.name)
    t.dims = tuple(a.dims[i] for i in range(a.n_dims))
    t.fmt = a.fmt
    t.type = a.type
    t.qnt_type = a.qnt_type
    t.zp = a.zp
    t.scale = a.scale
    t.n_elems = a.n_elems
    t.size = a.size
    t.size_with_stride = a.size_with_stride
    t.w_stride = a.w_stride
    t.h_stride = a.h_stride
    return t


cdef class _Buffer:
    """Bytes of runtime memory, exported through the buffer protocol.

    Keeps its model alive; the memory itself is only valid while the context that owns it is
    leased and the model is open.
    """

    cdef object _owner
    cdef char* _data
    cdef Py_ssize_t _shape[1]
    cdef Py_ssize_t _strides[1]
    cdef bint _writable

    def __getbuffer__(self, Py_buffer* view, int flags):
        if (flags & PyBUF_WRITABLE) and not self._writable:
            raise BufferError("this runtime buffer is read-only")
        view.buf = self._data
        view.obj = self
        view.len = self._shape[0]
        view.readonly = 0 if self._writable else 1
        view.itemsize = 1
        if flags & PyBUF_FORMAT:
            view.format = b"B"
        else:
            view.format = NULL
        view.ndim = 1
        view.shape = self._shape
        view.strides = self._strides
        view.suboffsets = NULL
        view.internal = NULL

    def __releasebuffer__(self, Py_buffer* view):
        pass


cdef object _view(object owner, const void* data, uint32_t size, bint writable):
    if data == NULL:
        raise RknnError("no such runtime buffer (bad slot or index, or the model is closed)", -103)
    cdef _Buffer b = _Buffer.__new__(_Buffer)
    b._owner = owner
    b._data = <char*>data
    b._shape[0] = size
    b._strides[0] = 1
    b._writable = writable
    return memoryview(b)


cdef class Model:
    """One .rknn model opened on ``runtime`` from its file bytes (rknn_init + attribute queries)."""

    cdef rkb_model* _m
    cdef readonly Runtime runtime

    def __init__(self, Runtime runtime not None, const unsigned char[::1] data not None):
        if self._m != NULL:
            raise RknnError("Model is already open", -106)
        if runtime._rt == NULL:
            raise RknnError("Runtime is not open", -106)
        cdef char err[ERR_LEN]
        cdef int rc
        cdef Py_ssize_t n = data.shape[0]
        if n == 0 or n > 0xFFFFFFFF:
            raise RknnError(f"model data of {n} bytes cannot be passed to rknn_init", -103)
        err[0] = 0
        with nogil:
            rc = rkb_model_open(runtime._rt, &data[0], <uint32_t>n, &self._m, err, ERR_LEN)
        if rc != 0:
            raise RknnError(_text(err), rc)
        self.runtime = runtime

    cdef rkb_model* _get(self) except NULL:
        if self._m == NULL:
            raise RknnError("the model is not open", -106)
        return self._m

    def __dealloc__(self):
        if self._m != NULL:
            with nogil:
                rkb_model_free(self._m)

    @property
    def inputs(self):
        cdef rkb_model* m = self._get()
        return [_attr(rkb_model_input_attr(m, i)) for i in range(rkb_model_n_inputs(m))]

    @property
    def outputs(self):
        cdef rkb_model* m = self._get()
        return [_attr(rkb_model_output_attr(m, i)) for i in range(rkb_model_n_outputs(m))]

    @property
    def custom_string(self):
        cdef rkb_model* m = self._get()
        return _text(rkb_model_custom_string(m))

    @property
    def sdk_version(self):
        """(API version, driver version); empty strings when the runtime did not say."""
        cdef rkb_model* m = self._get()
        return _text(rkb_model_api_version(m)), _text(rkb_model_driver_version(m))

    def prepare(self, uint32_t n_contexts, core_masks, input_types, output_types,
                const unsigned char[::1] data=None):
        """Create the contexts and bind their memory (see ``rkb_model_prepare``); ``data`` (the model
        bytes) lets a context the runtime refuses to duplicate be initialised on its own."""
        cdef rkb_model* m = self._get()
        cdef vector[uint32_t] masks = core_masks
        cdef vector[int32_t] in_types = input_types
        cdef vector[int32_t] out_types = output_types
        if masks.size() != n_contexts or in_types.size() != rkb_model_n_inputs(m) or \
                out_types.size() != rkb_model_n_outputs(m):
            raise RknnError("prepare: one core mask per context, one type per input and per output", -103)
        cdef const void* c_data = NULL
        cdef uint32_t c_size = 0
        if data is not None and data.shape[0] > 0:
            if data.shape[0] > 0xFFFFFFFF:
                raise RknnError("model data too large for rknn_init", -103)
            c_data = &data[0]
            c_size = <uint32_t>data.shape[0]
        cdef char err[ERR_LEN]
        cdef int rc
        err[0] = 0
        with nogil:
            rc = rkb_model_prepare(m, n_contexts, masks.data(), in_types.data(), out_types.data(), c_data, c_size,
                                   err, ERR_LEN)
        if rc != 0:
            raise RknnError(_text(err), rc)

    @property
    def shared_contexts(self):
        """Contexts (the first included) using the first context's weights rather than a copy."""
        cdef rkb_model* m = self._get()
        return rkb_model_shared_contexts(m)

    @property
    def dynamic_shapes(self):
        """Input shapes a dynamic-shape model accepts (the first is used); 0 for a static model."""
        cdef rkb_model* m = self._get()
        return rkb_model_dynamic_shapes(m)

    @property
    def bound_inputs(self):
        """How each input's memory is described to the runtime (empty before prepare)."""
        cdef rkb_model* m = self._get()
        cdef const rknn_tensor_attr* a
        bound = []
        for i in range(rkb_model_n_inputs(m)):
            a = rkb_model_bound_input_attr(m, i)
            if a == NULL:
                return []
            bound.append(_attr(a))
        return bound

    @property
    def n_contexts(self):
        cdef rkb_model* m = self._get()
        return rkb_model_n_contexts(m)

    def context_handle(self, uint32_t slot):
        """The ``rknn_context`` value behind ``slot`` (0 when there is none)."""
        cdef rkb_model* m = self._get()
        return rkb_model_context_handle(m, slot)

    def acquire(self):
        """Lease a context, waiting (without the GIL) while all are busy; returns its slot."""
        cdef rkb_model* m = self._get()
        cdef uint32_t slot = 0
        cdef int rc
        with nogil:
            rc = rkb_model_acquire(m, &slot)
        if rc != 0:
            raise RknnError(f"cannot lease an RKNN context: {code_name(rc)}", rc)
        return slot

    def release(self, uint32_t slot):
        cdef rkb_model* m = self._get()
        rkb_model_release(m, slot)

    def input_buffer(self, uint32_t slot, uint32_t index):
        """Writable bytes of input ``index``'s memory on a leased ``slot``."""
        cdef rkb_model* m = self._get()
        cdef uint32_t size = 0
        cdef void* data = rkb_input_data(m, slot, index, &size)
        return _view(self, data, size, True)

    def input_write_nchw(self, uint32_t slot, uint32_t index, const unsigned char[::1] src not None):
        """Fill 4-D input ``index`` of a leased ``slot`` from the bytes of a dense NCHW array of its
        element type, transposing into the NHWC memory the NPU reads."""
        cdef rkb_model* m = self._get()
        cdef int rc
        if src.shape[0] == 0:
            raise RknnError(f"input {index}: empty source", -103)
        with nogil:
            rc = rkb_input_write_nchw(m, slot, index, &src[0], <size_t>src.shape[0])
        if rc != 0:
            raise RknnError(f"input {index}: source must be a dense NCHW tensor of the bound type and size", rc)

    def run(self, uint32_t slot):
        cdef rkb_model* m = self._get()
        cdef char err[ERR_LEN]
        cdef int rc
        err[0] = 0
        with nogil:
            rc = rkb_run(m, slot, err, ERR_LEN)
        if rc != 0:
            raise RknnError(_text(err), rc)

    def output_type(self, uint32_t index):
        """RKNN element type of output ``index``'s memory (FLOAT32 = 0, FLOAT16 = 1)."""
        cdef rkb_model* m = self._get()
        return rkb_output_type(m, index)

    def output_buffer(self, uint32_t slot, uint32_t index):
        """Read-only bytes of output ``index``'s memory on a leased ``slot``."""
        cdef rkb_model* m = self._get()
        cdef uint32_t size = 0
        cdef const void* data = rkb_output_data(m, slot, index, &size)
        return _view(self, data, size, False)

    def output_into(self, uint32_t slot, uint32_t index, float[::1] dst not None):
        """Write output ``index`` as float32 into ``dst`` (widening FLOAT16 memory)."""
        cdef rkb_model* m = self._get()
        cdef int rc
        if dst.shape[0] == 0:
            raise RknnError(f"output {index}: empty destination", -103)
        with nogil:
            rc = rkb_output_to_float(m, slot, index, &dst[0], <size_t>dst.shape[0])
        if rc != 0:
            raise RknnError(f"output {index}: destination must hold exactly its element count", rc)

    def close(self):
        """Wait for leased contexts to come back, then free the runtime's memory and contexts."""
        if self._m == NULL:
            return
        with nogil:
            rkb_model_close(self._m)
