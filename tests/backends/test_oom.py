"""Accelerator out-of-memory: recognised in the runtimes' real error texts, raised as the transient
AcceleratorOutOfMemory (never a permanent provider fallback)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import nets
import numpy as np
import pytest

from immich_ml.backends import providers as P
from immich_ml.backends.base import ModelArtifacts, SessionOptions, Target
from immich_ml.backends.oom import is_out_of_memory
from immich_ml.backends.ort import OrtSession, _Loaded
from immich_ml.config import Settings
from immich_ml.errors import AcceleratorOutOfMemory

NAME = "input.1"

# Texts as the runtimes print them (from their sources and user reports).
OOM_TEXTS = [
    # ORT CUDA EP, BFC arena (onnxruntime/core/framework/bfc_arena.cc)
    "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned while running FusedConv node. "
    "Name:'Conv_0' Status Message: /onnxruntime_src/onnxruntime/core/framework/bfc_arena.cc:376 void* "
    "onnxruntime::BFCArena::AllocateRawInternal(size_t, bool, onnxruntime::Stream*, bool, "
    "onnxruntime::WaitNotificationFn) Failed to allocate memory for requested buffer of size 1073741824",
    # ORT CUDA EP, CUDA_CALL (onnxruntime/core/providers/cuda/cuda_call.cc)
    "CUDA failure 2: out of memory ; GPU=0 ; hostname=immich ; file=/onnxruntime_src/onnxruntime/core/providers/"
    "cuda/cuda_allocator.cc ; line=47 ; expr=cudaMalloc((void**)&p, size);",
    "CUDNN failure 4: CUDNN_STATUS_ALLOC_FAILED ; GPU=0 ; hostname=x ; expr=cudnnFindConvolutionForwardAlgorithmEx",
    "CUBLAS failure 3: CUBLAS_STATUS_ALLOC_FAILED ; GPU=0 ; expr=cublasCreate(&cublas_handle_)",
    "Available memory of 12582912 is smaller than requested bytes of 411041792",
    # MIGraphX / ROCm
    "HIP failure 2: out of memory ; GPU=0 ; expr=hipMalloc((void**)&p, size);",
    "migraphx_program_run: hipErrorOutOfMemory: out of memory",
    # OpenVINO GPU plugin
    "Exception from src/inference/src/cpp/infer_request.cpp:223: [GPU] out of GPU resources",
    "[GPU] clEnqueueNDRangeKernel, error code: -5 CL_OUT_OF_RESOURCES",
    "Exception from src/plugins/intel_gpu/src/runtime/ocl/ocl_memory.cpp:40: [GPU] CL_MEM_OBJECT_ALLOCATION_FAILURE",
    "Exceeded max size of memory object allocation: requested 4294967296 bytes",
    "std::bad_alloc",
    # ARM NN (GpuAcc / CpuAcc)
    "armnn::MemoryException: Failed to allocate tensor memory for the workload",
    "OpenCL error: CL_OUT_OF_RESOURCES while enqueueing kernel",
    # RKNN
    "rknn_run failed: -3 (RKNN_ERR_MALLOC_FAIL)",
    "rknn_create_mem fail! ret=-1",
]
NOT_OOM = [
    "CUDA failure 35: driver version is insufficient",
    "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid dimensions for input: input.1",
    "RKNN_ERR_TIMEOUT",
    "Failed to load library libonnxruntime_providers_cuda.so",
]


@pytest.mark.parametrize("text", OOM_TEXTS)
def test_recognises_out_of_memory(text: str) -> None:
    assert is_out_of_memory(text)


@pytest.mark.parametrize("text", NOT_OOM)
def test_other_failures_are_not_out_of_memory(text: str) -> None:
    assert not is_out_of_memory(text)


class _OomRun:
    """Wraps a real ORT session; runs fail with CUDA's real OOM text until ``left`` reaches 0."""

    def __init__(self, inner: Any, left: int) -> None:
        self._inner = inner
        self.left = left
        self.run_options: list[Any] = []

    def io_binding(self) -> Any:
        return self._inner.io_binding()

    def run_with_iobinding(self, binding: Any, run_options: Any = None) -> None:
        self.run_options.append(run_options)
        if self.left:
            self.left -= 1
            raise RuntimeError(OOM_TEXTS[0])
        self._inner.run_with_iobinding(binding)


def test_ort_raises_transient_oom_and_keeps_the_provider(arcface_artifacts: ModelArtifacts) -> None:
    session = OrtSession(arcface_artifacts, Settings(), Target("cpu"), SessionOptions(label="m"))
    state = session._state
    failing = _OomRun(state.session, left=1)
    session._chain = [P.CUDA, P.CPU]
    placement = replace(state.placement, provider=P.CUDA, device="cuda:0")
    session._state = _Loaded(failing, 0, placement, state.output_names, None)
    session._placement = placement
    x = nets.faces(2)
    with pytest.raises(AcceleratorOutOfMemory, match="Failed to allocate memory"):
        session.run({NAME: x})
    assert session.placement.provider == P.CUDA and session.placement.fallback_reason is None
    session.free_memory()
    out = session.run({NAME: x})[0]  # the same session serves again once memory is back
    assert out.shape[0] == 2 and np.isfinite(out).all()
    # After free_memory the next run asks ORT to shrink the device arena, once.
    assert failing.run_options[0] is None and failing.run_options[1] is not None
    session.close()
