"""ONNX Runtime backend: one code path for CPU, CUDA, MIGraphX, OpenVINO and CoreML.

No silent fallback. Sessions are built with ORT's own fallback off (``enable_fallback=0``), and
after construction the provider that really took the graph (``get_providers()[0]``) is compared
with the one asked for: ORT quietly drops a provider that fails to register. When a provider
fails to initialise or to run, the model moves to the next provider of
:func:`providers.provider_chain` with a WARNING naming provider, model and reason, recorded in
``Placement.fallback_reason``; with ``settings.device_strict`` it raises ``BackendUnavailable``.

Zero copy: ``bind`` hands out pooled numpy buffers that are bound with IOBinding
(``bind_cpu_input`` borrows the array), so kernels write straight into the memory ORT reads. On
a GPU provider ORT copies each input to the device once per run; outputs are bound to CPU memory.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from immich_ml.backends import denormals, mapped, oom, ort_options, ortlog, precision, prepare, providers
from immich_ml.backends.base import (
    BoundCall,
    ModelArtifacts,
    Placement,
    SessionMetadata,
    SessionOptions,
    Target,
    TensorSpec,
)
from immich_ml.backends.buffers import BufferPool
from immich_ml.config import Settings
from immich_ml.errors import AcceleratorOutOfMemory, BackendError, BackendUnavailable, ModelLoadError

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
# ORT errors that mean "the caller's data is wrong", not "the device failed": never a fallback.
_CALLER_ERRORS = frozenset({"InvalidArgument", "NoSuchFile", "InvalidProtobuf", "NotImplemented"})


def _spec(node: Any) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else (d if isinstance(d, str) else None) for d in node.shape)
    return TensorSpec(node.name, shape, _ORT_TYPES.get(node.type, node.type))


def brief(text: str, limit: int = 700) -> str:
    """One line for logs and health: whitespace collapsed; a long C++ trace keeps head and tail
    (ORT puts the readable cause at the end, after the function signatures)."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    return flat[: limit // 4] + " ... " + flat[-(limit - limit // 4 - 5) :]


def _strip_ort_prefix(text: str) -> str:
    """``/src/x.cc:12 Get() [ONNXRuntimeError] : 1 : FAIL : cause`` -> ``cause``."""
    return text.rsplit("FAIL : ", 1)[-1].strip()


def _ort_reason(messages: Sequence[str]) -> str:
    """ORT's messages about a dropped provider, most useful first, ORT's error prefixes removed."""
    useful = []
    for message in messages:
        text = _strip_ort_prefix(message)
        if text and text not in useful:
            useful.append(text)
    # A plugin-EP lookup miss is logged for every classic provider in ORT >= 1.31: not a cause.
    causes = [m for m in useful if not m.startswith("No registered plugin EP device")] or useful
    return "; ".join(causes) or "ONNX Runtime dropped it without an error message"


class ProviderFailed(Exception):
    """One provider could not take the model; ``reason`` is for the log and health."""

    def __init__(self, provider: str, reason: str) -> None:
        reason = brief(reason)
        super().__init__(f"{provider}: {reason}")
        self.provider, self.reason = provider, reason


@dataclass(frozen=True)
class _Loaded:
    """An open InferenceSession and the facts about it (immutable; swapped whole on fallback)."""

    session: Any
    index: int  # position in the provider chain
    placement: Placement
    output_names: tuple[str, ...]
    serial: threading.Lock | None  # MIGraphX: serialise runs (first compiles race otherwise)


class _OrtCall:
    def __init__(self, owner: OrtSession, buffers: dict[str, npt.NDArray[np.generic]]) -> None:
        self._owner = owner
        self._buffers = buffers

    @property
    def inputs(self) -> Mapping[str, npt.NDArray[np.generic]]:
        return self._buffers

    def run(self) -> Sequence[npt.NDArray[np.generic]]:
        return self._owner._run_bound(self._buffers)


class OrtSession(SessionMetadata):
    """An ``onnxruntime.InferenceSession`` behind the :class:`~immich_ml.backends.base.Session` protocol.

    Thread-safe: ``bind``/``run`` may be called from many threads; a fallback swaps the inner
    session atomically and in-flight calls finish on the session they started with.
    """

    def __init__(
        self,
        artifacts: ModelArtifacts,
        settings: Settings,
        target: Target,
        options: SessionOptions,
        *,
        fallback_reason: str | None = None,
        requested: str | None = None,
    ) -> None:
        providers.log_available_providers()
        self._artifacts = artifacts
        self._settings = settings
        self._target = target
        self._requested = requested or str(target)
        self._options = options
        self._label = options.label or str(artifacts.onnx)
        self._chain = providers.provider_chain(settings, target)
        self._symbolic = ort_options.read_symbolic(artifacts.onnx)
        self._lock = threading.Lock()
        self._pool = BufferPool()
        self._closed = False
        self._fallbacks = 0
        self._shrink_arena = False
        self._state = self._open_from(0, fallback_reason)
        self._placement = self._state.placement
        self._inputs = tuple(_spec(i) for i in self._state.session.get_inputs())
        self._outputs = tuple(_spec(o) for o in self._state.session.get_outputs())

    # --- the Session protocol: bind, run, close --------------------------------------------------

    @contextmanager
    def bind(self, shapes: Mapping[str, tuple[int, ...]]) -> Iterator[BoundCall]:
        """Pooled input buffers of these shapes (C-contiguous, graph dtypes) for one call."""
        specs = {spec.name: spec.dtype for spec in self._inputs}
        missing = set(specs) - set(shapes)
        if missing:
            raise BackendError(f"{self._label}: no shape given for inputs {sorted(missing)}; this is a bug")
        key, buffers = self._pool.acquire({n: (tuple(shapes[n]), specs[n]) for n in specs})
        try:
            yield _OrtCall(self, buffers)
        finally:
            self._pool.release(key, buffers)

    def run(self, feeds: Mapping[str, npt.NDArray[np.generic]]) -> list[npt.NDArray[np.generic]]:
        """Run with caller arrays (bound directly when C-contiguous with the graph dtype)."""
        specs = {spec.name: spec.dtype for spec in self._inputs}
        arrays = {
            name: np.ascontiguousarray(feeds[name], dtype=specs.get(name, feeds[name].dtype))
            for name in feeds
        }
        return self._run_bound(arrays)

    def free_memory(self) -> None:
        """After an out-of-memory run: drop idle pooled buffers and let the next run give the
        device arena's unused chunks back (ORT's ``memory.enable_memory_arena_shrinkage``)."""
        self._pool.clear()
        self._shrink_arena = True

    def close(self) -> None:
        """Drop the InferenceSession (runtime memory goes with its last in-flight call)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            state = self._state
            del self._state
        self._pool.clear()
        del state

    # --- running --------------------------------------------------------------------------------

    def _current(self) -> _Loaded:
        with self._lock:
            if self._closed:
                raise BackendError(f"{self._label}: session is closed; this is a bug")
            return self._state

    def _run_bound(self, buffers: Mapping[str, npt.NDArray[np.generic]]) -> list[npt.NDArray[np.generic]]:
        while True:
            state = self._current()
            try:
                return self._run_once(state, buffers)
            except ProviderFailed as failure:
                self._fall_back(state, failure)

    def _run_once(
        self, state: _Loaded, buffers: Mapping[str, npt.NDArray[np.generic]]
    ) -> list[npt.NDArray[np.generic]]:
        session = state.session
        binding = session.io_binding()
        for name, array in buffers.items():
            binding.bind_cpu_input(name, array)
        for name in state.output_names:
            # Outputs land in CPU memory on every provider (one device-to-host copy on GPUs).
            binding.bind_output(name, "cpu")
        run_options = self._run_options(state)
        extra = (run_options,) if run_options is not None else ()
        try:
            with denormals.flushed():  # ORT's own option misses the calling thread (see denormals)
                if state.serial is not None:
                    with state.serial:
                        session.run_with_iobinding(binding, *extra)
                else:
                    session.run_with_iobinding(binding, *extra)
        except Exception as exc:  # noqa: BLE001 - ORT raises several unrelated types
            provider = state.placement.provider
            text = f"{type(exc).__name__}: {_strip_ort_prefix(str(exc))}"
            if provider != providers.CPU and oom.is_out_of_memory(str(exc)):
                # Transient: the model layer retries smaller or on the CPU; the provider stays.
                raise AcceleratorOutOfMemory(f"{provider} ran out of memory running {self._label}: {brief(text)}") from exc
            if type(exc).__name__ in _CALLER_ERRORS or provider == providers.CPU:
                raise BackendError(f"ONNX Runtime failed to run {self._label} on {provider}: {exc}") from exc
            raise ProviderFailed(provider, f"run failed: {text}") from exc
        # .numpy() views keep their OrtValue alive (capsule base), so no copy is needed.
        return [value.numpy() for value in binding.get_outputs()]

    def _run_options(self, state: _Loaded) -> Any:
        """``None``, or once after :meth:`free_memory` run options that shrink the device arena."""
        if not self._shrink_arena:
            return None
        self._shrink_arena = False
        device = state.placement.device
        if not device.startswith(("cuda:", "rocm:")):
            return None
        import onnxruntime as ort

        options = ort.RunOptions()
        options.add_run_config_entry("memory.enable_memory_arena_shrinkage", f"gpu:{device.split(':', 1)[1]}")
        return options

    def _fall_back(self, failed: _Loaded, failure: ProviderFailed) -> None:
        with self._lock:
            if self._closed:
                raise BackendError(f"{self._label}: session is closed; this is a bug")
            if self._state is not failed:
                return  # another thread already moved the model on
            self._fallbacks += 1
            self._state = self._open_from(failed.index + 1, self._failure_text(failure), failure)
            self._placement = self._state.placement

    # --- opening --------------------------------------------------------------------------------

    def _failure_text(self, failure: ProviderFailed) -> str:
        return f"{failure.provider} failed for {self._label}: {failure.reason}"

    def _open_from(
        self, start: int, reason: str | None, first_failure: ProviderFailed | None = None
    ) -> _Loaded:
        """Open on the first provider of ``chain[start:]`` that works; explicit about every skip."""
        failure = first_failure
        for index in range(start, len(self._chain)):
            provider = self._chain[index]
            if failure is not None:
                self._refuse_or_warn(failure, provider)
            try:
                return self._open(provider, index, reason)
            except ProviderFailed as exc:
                failure = exc
                reason = self._failure_text(exc)
        assert failure is not None
        raise BackendUnavailable(
            f"No execution provider could load {self._label}: {self._failure_text(failure)}"
        )

    def _refuse_or_warn(self, failure: ProviderFailed, next_provider: str) -> None:
        if self._settings.device_strict and self._target.kind != "cpu":
            raise BackendUnavailable(
                f"{self._failure_text(failure)}. MACHINE_LEARNING_DEVICE_STRICT is set, so the model "
                f"is not moved to {next_provider}."
            )
        log.warning("%s; moving %s to %s", self._failure_text(failure), self._label, next_provider)

    def _open(self, provider: str, index: int, reason: str | None) -> _Loaded:
        import onnxruntime as ort

        if provider not in providers.available_providers():
            raise ProviderFailed(provider, providers.missing_provider_reason(provider))
        opts = providers.provider_options(
            provider, self._settings, self._target, self._artifacts.directory, shapes=self._options.shapes
        )
        if provider == providers.OPENVINO:
            self._check_openvino_device(opts)
        wanted = precision.effective_precision(self._settings, provider, opts)
        path, prec = self._model_path(wanted, provider)
        so = ort_options.session_options(self._settings, provider, self._options, self._symbolic)
        # On the CPU the weights are memory-mapped instead of copied (bit-identical graph; less
        # memory, faster loads: backends/mapped.py).
        load_path = mapped.for_loading(path) if provider == providers.CPU else path
        requested: list[Any] = [(provider, opts)]
        if provider == providers.TENSORRT and providers.CUDA in providers.available_providers():
            # Subgraphs TensorRT cannot build run on CUDA, as NVIDIA documents for this EP.
            cuda = providers.provider_options(providers.CUDA, self._settings, self._target, self._artifacts.directory)
            requested.append((providers.CUDA, cuda))
        if provider != providers.CPU:
            # Nodes the accelerator cannot run are placed on CPU by ORT's partitioner; that is
            # normal graph partitioning, not a fallback of the whole model.
            requested.append(providers.CPU)
        # Only accelerators can be dropped silently; CPU sessions skip the capture.
        capture: AbstractContextManager[list[str]] = (
            ortlog.capture() if provider != providers.CPU else nullcontext([])
        )
        with capture as messages:
            try:
                session = ort.InferenceSession(
                    str(load_path), sess_options=so, providers=requested, enable_fallback=0
                )
            except Exception as exc:  # noqa: BLE001
                if load_path != path and "External data" in str(exc):
                    # Some ORT builds (seen: onnxruntime-openvino 1.24) reject a side data file next
                    # to the graph ("escapes model directory"): load the weights in memory instead.
                    log.warning("%s: memory-mapped weights refused by this ONNX Runtime (%s); loading "
                                "them in memory", self._label, _strip_ort_prefix(str(exc)))
                    load_path = path
                    session = ort.InferenceSession(
                        str(load_path), sess_options=so, providers=requested, enable_fallback=0
                    )
                elif provider == providers.CPU:
                    raise ModelLoadError(f"ONNX Runtime could not load {path}: {exc}") from exc
                else:
                    raise ProviderFailed(provider, f"{type(exc).__name__}: {_strip_ort_prefix(str(exc))}") from exc
        session.disable_fallback()
        actual = session.get_providers()[0]
        if actual != provider:
            detail = _ort_reason(messages)
            del session
            raise ProviderFailed(provider, f"not registered by ONNX Runtime ({detail})")
        placement = Placement(
            backend="onnxruntime",
            provider=actual,
            device=providers.device_label(actual, opts),
            requested=self._requested,
            precision=self._settings.tensorrt_precision if actual == providers.TENSORRT else prec,
            fallback_reason=reason,
            extra={"chain": ",".join(self._chain), "model": path.name, "fallbacks": str(self._fallbacks),
                   "weights": "memory-mapped" if load_path != path else "in memory"},
        )
        log.info(
            "Loaded %s on %s (%s, %s)%s",
            self._label,
            actual,
            placement.device,
            prec,
            f" instead of {self._chain[0]}" if index else "",
        )
        serial = threading.Lock() if actual == providers.MIGRAPHX else None
        names = tuple(o.name for o in session.get_outputs())
        return _Loaded(session, index, placement, names, serial)

    def _check_openvino_device(self, opts: Mapping[str, str]) -> None:
        device = opts.get("device_type", "CPU")
        seen = providers.openvino_devices()
        if seen and device not in seen and not (device == "GPU.0" and "GPU" in seen):
            raise ProviderFailed(
                providers.OPENVINO, f"OpenVINO device {device} is not available (OpenVINO sees: {', '.join(seen)})"
            )

    def _model_path(self, wanted: str, provider: str) -> tuple[Path, str]:
        source = self._artifacts.onnx
        # OpenVINO too: its ONNX frontend rejects blocked DequantizeLinear weights (the starter
        # SFace), which the prepared copy has folded into plain float initializers.
        if provider in (providers.CPU, providers.OPENVINO):
            try:
                source = prepare.for_cpu(source)
            except ModelLoadError as exc:
                log.warning("%s: %s; running the original graph", self._label, exc)
        try:
            path, prec = precision.model_for_precision(source, wanted), wanted
        except ModelLoadError as exc:
            log.warning("%s: %s; running it at FP32", self._label, exc)
            path, prec = source, precision.FP32
        return path, prec
