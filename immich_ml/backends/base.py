"""The backend session protocol every runtime implements (ONNX Runtime, ARM NN, RKNN).

A model never sees a concrete runtime. It asks its :class:`Session` for input buffers of a given
shape (``with session.bind({...}) as call``), lets the compiled kernels write straight into them,
and calls ``call.run()``. The buffers are memory the runtime reads directly: numpy arrays bound
through ORT IOBinding on CPU, memory imported by ARM NN, ``rknn_create_mem`` memory on the NPU.
Outputs returned by ``call.run()`` are only valid inside the ``with`` block.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

Dim = int | str | None


@dataclass(frozen=True)
class TensorSpec:
    """A graph input or output: name, shape (``str``/``None`` for symbolic dims), numpy dtype name."""

    name: str
    shape: tuple[Dim, ...]
    dtype: str

    @property
    def is_static(self) -> bool:
        return all(isinstance(d, int) and d > 0 for d in self.shape)


@dataclass(frozen=True)
class Availability:
    """Whether a runtime can be used on this host, and why not (shown in logs and health)."""

    available: bool
    reason: str = ""


@dataclass(frozen=True)
class Target:
    """Where a worker wants its models to run: an accelerator family and a device id.

    ``kind`` is one of ``cpu``, ``cuda``, ``rocm``, ``openvino``, ``coreml``, ``armnn``, ``rknn``.
    """

    kind: str = "cpu"
    device_id: str = "0"

    def __str__(self) -> str:
        return self.kind if self.kind == "cpu" else f"{self.kind}:{self.device_id}"


@dataclass(frozen=True)
class ModelArtifacts:
    """The files a model may be loaded from. Paths may not exist; the backend picks what it can use.

    ``directory`` is ``<cache>/<task>/<name>/<type>``; EP compile caches go below it.
    """

    directory: Path
    onnx: Path
    armnn: Path | None = None
    rknn: Path | None = None


@dataclass(frozen=True)
class SessionOptions:
    """Per-model knobs the model layer passes to the backend."""

    # Fixed input shapes the model will use (buckets); backends that compile per shape prepare these.
    shapes: tuple[Mapping[str, tuple[int, ...]], ...] = ()
    # Threads for this model's intra-op pool; 0 = backend default from settings.
    intra_op_threads: int = 0
    # Human-readable model identity for logs and health (e.g. "clip/ViT-B-32__openai/visual").
    label: str = ""
    # Set for models that run on ONNX Runtime by design on ARM NN / RKNN targets unless an export of
    # them is on disk (OCR, as upstream): why, with "{kind}" for the bridge. Such a model is not a
    # failed placement: DEVICE_STRICT does not refuse it, and health shows this text as the reason.
    onnx_runtime_reason: str = ""


@dataclass(frozen=True)
class Placement:
    """What really runs a model: reported in health and logs, never guessed.

    ``requested`` is what the settings asked for; ``provider`` what actually executes the graph
    (e.g. ``CUDAExecutionProvider``, ``armnn:CpuRef``, ``rknn:RK3588``); ``fallback_reason`` says
    why they differ, if they do.
    """

    backend: str
    provider: str
    device: str
    requested: str
    precision: str = "FP32"
    fallback_reason: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)


class BoundCall(Protocol):
    """One inference call over input buffers the runtime reads directly."""

    @property
    def inputs(self) -> Mapping[str, npt.NDArray[np.generic]]:
        """Writable, C-contiguous buffers, one per graph input, in the shapes asked for."""
        ...

    def run(self) -> Sequence[npt.NDArray[np.generic]]:
        """Run the graph; outputs in graph order, valid until the ``bind`` block exits."""
        ...


class SessionMetadata:
    """What every backend session keeps about its graph: set ``_inputs``, ``_outputs`` and
    ``_placement`` in ``__init__`` (``_placement`` may change later, e.g. after a fallback)."""

    _inputs: tuple[TensorSpec, ...]
    _outputs: tuple[TensorSpec, ...]
    _placement: Placement

    @property
    def inputs(self) -> Sequence[TensorSpec]:
        return self._inputs

    @property
    def outputs(self) -> Sequence[TensorSpec]:
        return self._outputs

    @property
    def placement(self) -> Placement:
        """Where the model really runs (after a fallback: where it moved to)."""
        return self._placement


@runtime_checkable
class Session(Protocol):
    @property
    def inputs(self) -> Sequence[TensorSpec]: ...

    @property
    def outputs(self) -> Sequence[TensorSpec]: ...

    @property
    def placement(self) -> Placement: ...

    def bind(self, shapes: Mapping[str, tuple[int, ...]]) -> AbstractContextManager[BoundCall]:
        """Reserve input buffers (and a runtime context) for one call with these input shapes."""
        ...

    def run(self, feeds: Mapping[str, npt.NDArray[np.generic]]) -> list[npt.NDArray[np.generic]]:
        """Convenience: run with caller arrays (copied into bound buffers where the runtime needs)."""
        ...

    def close(self) -> None:
        """Release runtime memory. The session must not be used afterwards."""
        ...

