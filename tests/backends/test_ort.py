"""OrtSession: zero-copy binding, thread safety, close, and explicit (never silent) fallback."""

from __future__ import annotations

import gc
import logging
import threading
import weakref
from dataclasses import replace
from typing import Any

import nets
import numpy as np
import onnxruntime as ort
import pytest

from immich_ml.backends import providers as P
from immich_ml.backends.base import ModelArtifacts, Session, SessionOptions, Target
from immich_ml.backends.ort import OrtSession, _Loaded
from immich_ml.config import Settings
from immich_ml.errors import BackendError, BackendUnavailable

NAME = "input.1"


def reference(artifacts: ModelArtifacts, x: np.ndarray) -> np.ndarray:
    """Plain ``InferenceSession.run`` on the same file: the path OrtSession must agree with."""
    session = ort.InferenceSession(str(artifacts.onnx), providers=["CPUExecutionProvider"])
    out: np.ndarray = session.run(None, {NAME: x})[0]
    return out


def open_cpu(artifacts: ModelArtifacts, **kw: Any) -> OrtSession:
    return OrtSession(artifacts, Settings(), Target("cpu"), SessionOptions(label="tiny-arcface", **kw))


def test_satisfies_protocol_and_reports_cpu(arcface_artifacts: ModelArtifacts) -> None:
    session = open_cpu(arcface_artifacts)
    assert isinstance(session, Session)
    assert [s.name for s in session.inputs] == [NAME]
    assert session.inputs[0].shape == ("batch", 3, 112, 112)
    assert session.placement.provider == P.CPU
    assert session.placement.fallback_reason is None
    session.close()


def test_bound_buffers_are_what_ort_reads(arcface_artifacts: ModelArtifacts, monkeypatch: pytest.MonkeyPatch) -> None:
    session = open_cpu(arcface_artifacts)
    inner = session._state.session
    bound: list[int] = []
    real_io_binding = inner.io_binding

    def spying_io_binding() -> Any:
        binding = real_io_binding()
        real_bind = binding.bind_cpu_input

        def bind_cpu_input(name: str, array: np.ndarray) -> None:
            bound.append(array.ctypes.data)
            real_bind(name, array)

        binding.bind_cpu_input = bind_cpu_input
        return binding

    monkeypatch.setattr(inner, "io_binding", spying_io_binding)
    x = nets.faces(3)
    with session.bind({NAME: (3, 3, 112, 112)}) as call:
        buffer = call.inputs[NAME]
        assert buffer.flags.c_contiguous and buffer.dtype == np.float32
        np.copyto(buffer, x)
        out = call.run()[0]
        pointer = buffer.ctypes.data
    assert bound == [pointer]  # the very memory the caller wrote, no staging copy
    np.testing.assert_allclose(out, reference(arcface_artifacts, x), rtol=1e-5, atol=1e-5)
    # The pool hands the same memory to the next call of that shape (no per-call allocation).
    with session.bind({NAME: (3, 3, 112, 112)}) as call:
        assert call.inputs[NAME].ctypes.data == pointer
    session.close()


def test_run_with_caller_arrays(arcface_artifacts: ModelArtifacts) -> None:
    session = open_cpu(arcface_artifacts)
    x = nets.faces(2)
    np.testing.assert_allclose(session.run({NAME: x})[0], reference(arcface_artifacts, x), rtol=1e-5, atol=1e-5)
    session.close()


def test_concurrent_bind_and_run(arcface_artifacts: ModelArtifacts) -> None:
    session = open_cpu(arcface_artifacts)
    inputs = {n: nets.faces(n, seed=n) for n in (1, 2, 4)}
    expected = {n: reference(arcface_artifacts, x) for n, x in inputs.items()}
    errors: list[str] = []

    def worker(k: int) -> None:
        for i in range(6):
            n = (1, 2, 4)[(k + i) % 3]
            with session.bind({NAME: (n, 3, 112, 112)}) as call:
                np.copyto(call.inputs[NAME], inputs[n])
                got = call.run()[0]
                if not np.allclose(got, expected[n], rtol=1e-4, atol=1e-4):
                    errors.append(f"thread {k} batch {n}: wrong result")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    session.close()


def test_close_releases_the_runtime_session(arcface_artifacts: ModelArtifacts) -> None:
    session = open_cpu(arcface_artifacts)
    ref = weakref.ref(session._state.session)
    placement = session.placement
    session.close()
    session.close()  # idempotent
    gc.collect()
    assert ref() is None
    assert session.placement == placement  # still reportable in health after unloading
    with pytest.raises(BackendError, match="closed"):
        session.run({NAME: nets.faces(1)})


def test_single_bucket_pins_symbolic_batch(arcface_artifacts: ModelArtifacts) -> None:
    session = open_cpu(arcface_artifacts, shapes=({NAME: (4, 3, 112, 112)},))
    # The free-dimension override makes ORT see a static graph.
    assert session.inputs[0].shape == (4, 3, 112, 112)
    x = nets.faces(4)
    np.testing.assert_allclose(session.run({NAME: x})[0], reference(arcface_artifacts, x), rtol=1e-5, atol=1e-5)
    session.close()


def test_missing_provider_falls_back_loudly(
    arcface_artifacts: ModelArtifacts, caplog: pytest.LogCaptureFixture
) -> None:
    """A real failure: this ORT build has no CUDA provider. The model moves to CPU, and says so."""
    assert P.CUDA not in ort.get_available_providers()
    caplog.set_level(logging.INFO)
    cuda_only = replace(Settings(), device="cuda")  # chain [CUDA, CPU] whatever else is installed
    session = OrtSession(arcface_artifacts, cuda_only, Target("cuda", "1"), SessionOptions(label="face/recog"))
    placement = session.placement
    assert placement.provider == P.CPU
    assert placement.requested == "cuda:1"
    assert placement.fallback_reason is not None
    assert "CUDAExecutionProvider" in placement.fallback_reason and "immich-ml[cuda]" in placement.fallback_reason
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        "CUDAExecutionProvider" in r.getMessage() and "face/recog" in r.getMessage() and "not in this ONNX Runtime build" in r.getMessage()
        for r in warnings
    )
    session.close()


def test_strict_mode_raises_instead_of_falling_back(arcface_artifacts: ModelArtifacts) -> None:
    settings = replace(Settings(), device="cuda", device_strict=True)
    with pytest.raises(BackendUnavailable, match="CUDAExecutionProvider.*STRICT"):
        OrtSession(arcface_artifacts, settings, Target("cuda", "0"), SessionOptions(label="face/recog"))


class _FailingRun:
    """Wraps a real session; ``run_with_iobinding`` fails like an EP failure at run time."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def io_binding(self) -> Any:
        return self._inner.io_binding()

    def run_with_iobinding(self, binding: Any) -> None:
        raise RuntimeError("CUDA failure 35: driver version is insufficient")


def _pretend_on_cuda(session: OrtSession) -> None:
    state = session._state
    session._chain = [P.CUDA, P.CPU]
    session._state = _Loaded(
        _FailingRun(state.session), 0, replace(state.placement, provider=P.CUDA), state.output_names, None
    )
    session._placement = session._state.placement


def test_run_time_provider_failure_moves_model(
    arcface_artifacts: ModelArtifacts, caplog: pytest.LogCaptureFixture
) -> None:
    session = open_cpu(arcface_artifacts)
    _pretend_on_cuda(session)
    x = nets.faces(2)
    with caplog.at_level(logging.WARNING):
        out = session.run({NAME: x})[0]
    np.testing.assert_allclose(out, reference(arcface_artifacts, x), rtol=1e-5, atol=1e-5)
    assert session.placement.provider == P.CPU
    assert "driver version is insufficient" in (session.placement.fallback_reason or "")
    assert session.placement.extra["fallbacks"] == "1"
    assert any("tiny-arcface" in r.getMessage() and P.CUDA in r.getMessage() for r in caplog.records)
    session.close()


def test_run_time_failure_in_strict_mode_raises(arcface_artifacts: ModelArtifacts) -> None:
    session = OrtSession(
        arcface_artifacts, replace(Settings(), device_strict=True), Target("cpu"), SessionOptions(label="m")
    )
    session._target = Target("cuda", "0")
    _pretend_on_cuda(session)
    with pytest.raises(BackendUnavailable, match="driver version is insufficient"):
        session.run({NAME: nets.faces(1)})


def test_caller_errors_are_not_fallbacks(arcface_artifacts: ModelArtifacts) -> None:
    session = open_cpu(arcface_artifacts)
    with pytest.raises(BackendError):
        session.run({NAME: np.zeros((1, 3, 64, 64), np.float32)})
    assert session.placement.fallback_reason is None
    session.close()


@pytest.mark.parametrize("kind", ["cuda", "rocm", "openvino", "coreml"])
def test_listed_provider_runs_or_says_why(
    kind: str, arcface_artifacts: ModelArtifacts, caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever this ORT build lists, a session on it either really runs there or falls back with
    a WARNING and a reason: never silently. (onnxruntime-gpu without CUDA libraries, or
    onnxruntime-migraphx without ROCm, takes the second branch.)"""
    wanted = [p for p in P.KIND_PROVIDERS[kind] if p in ort.get_available_providers()]
    if not wanted:
        pytest.skip(f"this ONNX Runtime build lists no provider for {kind}")
    settings = replace(Settings(), device=kind)
    with caplog.at_level(logging.WARNING):
        session = OrtSession(arcface_artifacts, settings, Target(kind, "0"), SessionOptions(label="probe"))
    placement = session.placement
    x = nets.faces(2)
    np.testing.assert_allclose(session.run({NAME: x})[0], reference(arcface_artifacts, x), rtol=1e-3, atol=1e-3)
    if placement.provider == wanted[0]:
        assert placement.fallback_reason is None
    else:
        assert placement.provider == P.CPU
        assert placement.fallback_reason and wanted[0] in placement.fallback_reason
        assert any(r.levelno == logging.WARNING and wanted[0] in r.getMessage() for r in caplog.records)
    session.close()
