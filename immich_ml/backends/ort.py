"""ONNX Runtime backend (CPU for now; accelerator providers are added on top of this file).

Inputs are handed to ORT without copies: ``bind`` returns numpy buffers that are bound with
IOBinding (``bind_cpu_input`` borrows the array), so the compiled kernels write straight into the
memory ORT reads.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import numpy.typing as npt

from immich_ml.backends.base import BoundCall, ModelArtifacts, Placement, SessionOptions, Target, TensorSpec
from immich_ml.config import Settings
from immich_ml.errors import BackendError

log = logging.getLogger(__name__)

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(double)": "float64",
    "tensor(bool)": "bool",
}


def _spec(node: Any) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else (d if isinstance(d, str) else None) for d in node.shape)
    return TensorSpec(node.name, shape, _ORT_TYPES.get(node.type, node.type))


class _OrtCall:
    def __init__(self, session: OrtSession, buffers: dict[str, npt.NDArray[np.generic]]) -> None:
        self._session = session
        self._buffers = buffers

    @property
    def inputs(self) -> Mapping[str, npt.NDArray[np.generic]]:
        return self._buffers

    def run(self) -> Sequence[npt.NDArray[np.generic]]:
        return self._session._run_bound(self._buffers)


class OrtSession:
    """An ``onnxruntime.InferenceSession`` behind the :class:`~immich_ml.backends.base.Session` protocol."""

    def __init__(
        self,
        artifacts: ModelArtifacts,
        settings: Settings,
        target: Target,
        options: SessionOptions,
    ) -> None:
        import onnxruntime as ort

        self._ort = ort
        sess_options = ort.SessionOptions()
        sess_options.enable_cpu_mem_arena = settings.model_arena
        intra = options.intra_op_threads or settings.model_intra_op_threads
        inter = settings.model_inter_op_threads
        # Small per-session pools: concurrency comes from requests, and a 2-core host must not
        # run N requests x cores threads (Immich's CPU floor is inter 1 / intra 2).
        sess_options.intra_op_num_threads = intra if intra > 0 else 2
        sess_options.inter_op_num_threads = inter if inter > 0 else 1
        if inter > 1:
            sess_options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
        sess_options.add_session_config_entry("session.set_denormal_as_zero", "1")
        providers = ["CPUExecutionProvider"]
        try:
            self._session = ort.InferenceSession(
                str(artifacts.onnx), sess_options=sess_options, providers=providers
            )
        except Exception as exc:  # noqa: BLE001 - ORT raises several unrelated types
            raise BackendError(f"ONNX Runtime could not load {artifacts.onnx}: {exc}") from exc
        self._inputs = tuple(_spec(i) for i in self._session.get_inputs())
        self._outputs = tuple(_spec(o) for o in self._session.get_outputs())
        self._output_names = [o.name for o in self._outputs]
        self._placement = Placement(
            backend="onnxruntime",
            provider=self._session.get_providers()[0],
            device="cpu",
            requested=str(target),
        )
        self._closed = threading.Event()

    @property
    def inputs(self) -> Sequence[TensorSpec]:
        return self._inputs

    @property
    def outputs(self) -> Sequence[TensorSpec]:
        return self._outputs

    @property
    def placement(self) -> Placement:
        return self._placement

    @contextmanager
    def bind(self, shapes: Mapping[str, tuple[int, ...]]) -> Iterator[BoundCall]:
        buffers = {
            spec.name: np.empty(shapes[spec.name], dtype=spec.dtype) for spec in self._inputs
        }
        yield _OrtCall(self, buffers)

    def _run_bound(self, buffers: Mapping[str, npt.NDArray[np.generic]]) -> list[npt.NDArray[np.generic]]:
        binding = self._session.io_binding()
        for name, array in buffers.items():
            binding.bind_cpu_input(name, array)
        for name in self._output_names:
            binding.bind_output(name)
        try:
            self._session.run_with_iobinding(binding)
        except Exception as exc:  # noqa: BLE001
            raise BackendError(f"ONNX Runtime failed to run the model: {exc}") from exc
        outputs: list[npt.NDArray[np.generic]] = binding.copy_outputs_to_cpu()
        return outputs

    def run(self, feeds: Mapping[str, npt.NDArray[np.generic]]) -> list[npt.NDArray[np.generic]]:
        try:
            outputs: list[npt.NDArray[np.generic]] = self._session.run(self._output_names, dict(feeds))
        except Exception as exc:  # noqa: BLE001
            raise BackendError(f"ONNX Runtime failed to run the model: {exc}") from exc
        return outputs

    def close(self) -> None:
        self._closed.set()
        del self._session
