"""How an RKNN model's tensors meet numpy: feed dtypes, input layouts, and views of NPU memory.

The runtime describes each tensor with ``rknn_tensor_attr`` (dims in the compiled layout, usually
NHWC for images, and the element type of the binary, fp16 for Immich's unquantized exports). The
model layer works in numpy terms: float32 NCHW from the normalizing kernels, or raw uint8 NHWC
pixels for graphs that normalize on the NPU. This module maps one onto the other.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from immich_ml._core import _rknn
from immich_ml.backends.base import TensorSpec
from immich_ml.errors import BackendError, ModelLoadError

log = logging.getLogger(__name__)

# RKNN codes (csrc/rknn/rknn_abi.h).
FLOAT32, FLOAT16, INT8, UINT8, INT16, UINT16, INT32, UINT32, INT64, BOOL = range(10)
NCHW, NHWC = 0, 1
QNT_NONE = 0
_FEED_DTYPE = {
    # Float models take float32 from the preprocessing kernels; the runtime converts to fp16, and
    # quantizes for int8 models, as part of rknn_run.
    FLOAT32: "float32",
    FLOAT16: "float32",
    INT8: "float32",
    UINT8: "uint8",
    INT16: "int16",
    UINT16: "uint16",
    INT32: "int32",
    UINT32: "uint32",
    INT64: "int64",
    BOOL: "bool",
}
_RKNN_TYPE = {"float32": FLOAT32, "uint8": UINT8, "int16": INT16, "uint16": UINT16, "int32": INT32,
              "uint32": UINT32, "int64": INT64, "bool": BOOL}


@dataclass(frozen=True)
class InputPlan:
    """One graph input: what the model layer sees (``spec``) and the NPU memory behind it.

    4-D image inputs live in NHWC memory (the zero-copy API takes no NCHW): a caller that writes NHWC
    writes the NPU memory itself; one that writes NCHW (the float preprocessing kernels do) gets a
    host staging buffer that the bridge transposes into the NPU memory before the run.
    """

    index: int
    spec: TensorSpec
    rknn_type: int
    memory: tuple[int, ...]  # dims of the NPU memory: NHWC for images, as reported otherwise
    nchw: tuple[int, ...] | None  # the same tensor as (N, C, H, W) for 4-D image inputs

    def staged(self, shape: tuple[int, ...]) -> bool:
        """Whether a caller buffer of ``shape`` is NCHW (staged); raises BackendError if it fits neither."""
        if shape == self.memory:
            return False
        if self.nchw is None:
            raise BackendError(f"RKNN input '{self.spec.name}' takes shape {self.memory}, not {shape}")
        if shape == self.nchw:
            return True
        n, c, h, w = self.nchw
        if len(shape) == 4 and c not in (shape[1], shape[3]):
            raise BackendError(f"RKNN binary takes {c} channels for input '{self.spec.name}', got shape {shape}")
        raise BackendError(
            f"RKNN input '{self.spec.name}' was compiled for {(n, c, h, w)} (NCHW) or {(n, h, w, c)} (NHWC), "
            f"not {shape}"
        )


def custom_dims(text: str, n_inputs: int) -> list[tuple[int, ...] | None]:
    """Input shapes from the model's custom string (JSON ``{"dims": [...]}``, one list or one per input)."""
    if not text:
        return [None] * n_inputs
    try:
        dims = json.loads(text)["dims"]
        per_input = dims if dims and isinstance(dims[0], list) else [dims]
        parsed = [tuple(int(d) for d in shape) for shape in per_input]
    except (ValueError, KeyError, TypeError, IndexError):
        log.warning("Ignoring unreadable RKNN custom string %r", text[:200])
        return [None] * n_inputs
    return [parsed[i] if i < len(parsed) else None for i in range(n_inputs)]


def plan_input(attr: _rknn.TensorAttr, custom: tuple[int, ...] | None, normalizes: bool) -> InputPlan:
    """Decide the numpy side of one input from its attribute.

    Image inputs (4-D, NCHW or NHWC as reported) are offered as float32 NCHW, or as uint8 NHWC
    when the graph normalizes itself (``normalizes``: the export left a custom string). ``custom``
    (shape from that string) wins when the binary can take it in either layout.
    """
    dims = tuple(attr.dims)
    image = len(dims) == 4 and attr.fmt in (NCHW, NHWC)
    if image and normalizes:
        dtype = "uint8"  # the graph normalizes on the NPU: it takes raw pixels
    elif attr.type in _FEED_DTYPE:
        dtype = _FEED_DTYPE[attr.type]
    else:
        raise ModelLoadError(f"RKNN input '{attr.name}' has element type {attr.type}, which is not supported")
    memory, nchw = dims, None
    if image:
        nchw = dims if attr.fmt == NCHW else (dims[0], dims[3], dims[1], dims[2])
        memory = (nchw[0], nchw[2], nchw[3], nchw[1])
    shape = nchw if nchw is not None and dtype != "uint8" else memory
    planned = InputPlan(attr.index, TensorSpec(attr.name, shape, dtype), _RKNN_TYPE[dtype], memory, nchw)
    if custom is None or custom == shape:
        return planned
    try:
        planned.staged(custom)
    except BackendError:
        log.warning("RKNN custom string gives input '%s' shape %s, which the binary %s cannot take; using %s",
                    attr.name, custom, dims, shape)
        return planned
    return InputPlan(attr.index, TensorSpec(attr.name, custom, dtype), planned.rknn_type, memory, nchw)


def static_shape(spec: TensorSpec) -> tuple[int, ...]:
    """``spec.shape`` as ints (RKNN binaries have static shapes)."""
    return tuple(d for d in spec.shape if isinstance(d, int))


class SlotBuffers:
    """Numpy views of one context's memory (flat inputs, outputs in graph shapes) and its staging."""

    def __init__(self, model: _rknn.Model, slot: int, inputs: Sequence[InputPlan], outputs: Sequence[TensorSpec]):
        self.inputs = [
            np.frombuffer(model.input_buffer(slot, i.index), dtype=i.spec.dtype, count=int(np.prod(i.memory)))
            for i in inputs
        ]
        # NCHW host buffers for callers that write NCHW, made on first use.
        self.staging: dict[int, npt.NDArray[np.generic]] = {}
        self.widened: list[npt.NDArray[np.float32] | None] = []
        self.outputs: list[npt.NDArray[np.generic]] = []
        for index, spec in enumerate(outputs):
            shape = static_shape(spec)
            if model.output_type(index) == FLOAT16:
                # fp16 memory is widened by the bridge into this buffer after every run.
                out = np.empty(shape, dtype=np.float32)
                self.widened.append(out)
                self.outputs.append(out)
            else:
                self.widened.append(None)
                view = np.frombuffer(model.output_buffer(slot, index), dtype=np.float32)
                self.outputs.append(view.reshape(shape))

    def stage(self, plan: InputPlan) -> npt.NDArray[np.generic]:
        """The NCHW staging buffer of ``plan``'s input."""
        buffer = self.staging.get(plan.index)
        if buffer is None:
            assert plan.nchw is not None
            buffer = self.staging[plan.index] = np.empty(plan.nchw, dtype=plan.spec.dtype)
        return buffer
