"""RKNN bridge (pyx/_rknn.pyx over csrc/rknn): librknnrt.so opened at run time.

Element types and layouts are RKNN's integer codes (see ``csrc/rknn/rknn_abi.h``):
types FLOAT32 = 0, FLOAT16 = 1, INT8 = 2, UINT8 = 3, INT16 = 4, UINT16 = 5, INT32 = 6, UINT32 = 7,
INT64 = 8, BOOL = 9; layouts NCHW = 0, NHWC = 1, NC1HWC2 = 2, UNDEFINED = 3.
"""

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from typing_extensions import Buffer, disjoint_base

class RknnError(RuntimeError):
    """A failure from the bridge or librknnrt; ``code`` is the negative return code."""

    code: int
    def __init__(self, message: str, code: int) -> None: ...

def code_name(code: int) -> str:
    """``RKNN_ERR_TIMEOUT`` for -2, ``RKB_ERR_SYMBOL`` for -102, ..."""

def half_to_float_into(src: npt.NDArray[np.uint16], dst: npt.NDArray[np.float32]) -> None:
    """Widen binary16 bit patterns ``src`` (1-D, contiguous) into float32 ``dst`` of equal length."""

@disjoint_base
class Runtime:
    """One dlopen'ed librknnrt; raises RknnError naming the library or the missing function."""

    path: str
    def __init__(self, path: str) -> None: ...
    def has_function(self, name: str) -> bool: ...

@disjoint_base
class TensorAttr:
    """What ``rknn_query(RKNN_QUERY_INPUT_ATTR/OUTPUT_ATTR)`` reported for one tensor."""

    @property
    def index(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def dims(self) -> tuple[int, ...]: ...
    @property
    def fmt(self) -> int: ...
    @property
    def type(self) -> int: ...
    @property
    def qnt_type(self) -> int: ...
    @property
    def zp(self) -> int: ...
    @property
    def scale(self) -> float: ...
    @property
    def n_elems(self) -> int: ...
    @property
    def size(self) -> int: ...
    @property
    def size_with_stride(self) -> int: ...
    @property
    def w_stride(self) -> int: ...
    @property
    def h_stride(self) -> int: ...

@disjoint_base
class Model:
    """One .rknn model: ``rknn_init`` from ``data`` (the file's bytes, any buffer) plus attribute queries.

    ``data`` is only read during the call: the runtime keeps its own copy."""

    runtime: Runtime
    def __init__(self, runtime: Runtime, data: Buffer) -> None: ...
    @property
    def inputs(self) -> list[TensorAttr]: ...
    @property
    def outputs(self) -> list[TensorAttr]: ...
    @property
    def custom_string(self) -> str: ...
    @property
    def sdk_version(self) -> tuple[str, str]: ...
    def prepare(
        self,
        n_contexts: int,
        core_masks: Sequence[int],
        input_types: Sequence[int],
        output_types: Sequence[int],
        data: Buffer | None = None,
    ) -> None:
        """Create ``n_contexts`` contexts (rknn_dup_context after the first; from ``data``, the model
        bytes, when the runtime refuses), set ``core_masks[i]`` on context i (0 = AUTO, not set), and
        bind per-context memory: input i dense of ``input_types[i]`` (NHWC when 4-D), output i dense
        of ``output_types[i]`` (FLOAT32 or FLOAT16)."""
    @property
    def shared_contexts(self) -> int: ...
    @property
    def dynamic_shapes(self) -> int: ...
    @property
    def bound_inputs(self) -> list[TensorAttr]: ...
    @property
    def n_contexts(self) -> int: ...
    def context_handle(self, slot: int) -> int: ...
    def acquire(self) -> int:
        """Lease a context slot, blocking (GIL released) while all are busy."""
    def release(self, slot: int) -> None: ...
    def input_buffer(self, slot: int, index: int) -> memoryview:
        """Writable bytes of input ``index``'s memory on a leased ``slot`` (keeps the model alive)."""
    def input_write_nchw(self, slot: int, index: int, src: npt.NDArray[np.uint8] | Buffer) -> None:
        """Fill 4-D input ``index`` from the bytes of a dense NCHW array, transposing into NHWC memory."""
    def run(self, slot: int) -> None: ...
    def output_type(self, index: int) -> int: ...
    def output_buffer(self, slot: int, index: int) -> memoryview:
        """Read-only bytes of output ``index``'s memory on a leased ``slot``."""
    def output_into(self, slot: int, index: int, dst: npt.NDArray[np.float32]) -> None:
        """Write output ``index`` into 1-D float32 ``dst`` of exactly its element count."""
    def close(self) -> None: ...
