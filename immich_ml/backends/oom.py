"""Recognise an accelerator's out-of-memory failure in the error texts its runtime raises.

Runtimes report an exhausted device as a generic run failure; only the text tells. An OOM is
transient (a smaller batch, or later, may fit), so it must not move the model off its device
for good the way a broken provider does: the backends raise
:class:`~immich_ml.errors.AcceleratorOutOfMemory` instead, and the model layer halves the batch
and, if allowed, runs that one request on the CPU.

The texts are the ones the runtimes print (checked against their sources): ORT's CUDA arena and
CUDA/cuDNN/cuBLAS status codes, HIP/MIGraphX, OpenVINO's GPU plugin and OpenCL codes, ARM NN's
OpenCL backend and RKNN's ``RKNN_ERR_MALLOC_FAIL``.
"""

from __future__ import annotations

import re

_PATTERNS: tuple[str, ...] = (
    # ONNX Runtime CUDA EP / BFC arena
    r"CUDA failure 2\b",
    r"cudaErrorMemoryAllocation",
    r"CUDNN_STATUS_ALLOC_FAILED",
    r"CUBLAS_STATUS_ALLOC_FAILED",
    r"Failed to allocate memory for requested buffer of size",
    r"Available memory of \d+ is smaller than requested bytes",
    r"BFCArena.*Failed to allocate",
    # TensorRT EP
    r"TensorRT EP.*(out of memory|could not allocate|insufficient memory)",
    # ROCm / MIGraphX
    r"hipErrorOutOfMemory",
    r"HIP failure 2\b",
    r"MIOPEN_STATUS_ALLOC_FAILED",
    # OpenVINO GPU plugin / OpenCL (also ARM NN's GpuAcc)
    r"CL_OUT_OF_RESOURCES",
    r"CL_OUT_OF_HOST_MEMORY",
    r"CL_MEM_OBJECT_ALLOCATION_FAILURE",
    r"out of GPU resources",
    r"Exceeded max size of memory object allocation",
    r"std::bad_alloc",
    # ARM NN
    r"(Memory|Allocation)Exception",
    r"failed to allocate (tensor|memory|buffer)",
    # RKNN
    r"RKNN_ERR_MALLOC_FAIL",
    r"rknn_create_mem.*fail",
    # Generic wording every one of them also uses
    r"\bout of (device |GPU |NPU )?memory\b",
)
_OOM = re.compile("|".join(f"(?:{p})" for p in _PATTERNS), re.IGNORECASE)


def is_out_of_memory(text: str) -> bool:
    """Whether an error text reports exhausted accelerator (or pinned host) memory."""
    return _OOM.search(text) is not None
