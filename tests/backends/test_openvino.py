"""OpenVINO for real (its CPU device), from the OpenVINO venv: parity with the CPU provider and a
forced provider failure that must be loud. Run: ``.venv-openvino/bin/python -m pytest -m openvino``."""

from __future__ import annotations

import logging
from dataclasses import replace

import nets
import numpy as np
import onnxruntime as ort
import pytest

from immich_ml.backends import providers as P
from immich_ml.backends import registry
from immich_ml.backends.base import ModelArtifacts, SessionOptions, Target
from immich_ml.backends.ort import OrtSession
from immich_ml.config import Settings
from immich_ml.errors import BackendUnavailable

pytestmark = [
    pytest.mark.openvino,
    pytest.mark.skipif(
        P.OPENVINO not in ort.get_available_providers(),
        reason="OpenVINOExecutionProvider is not in this ONNX Runtime build; "
        "run scripts/openvino-venv.sh and .venv-openvino/bin/python -m pytest -m openvino",
    ),
]
NAME = "input.1"
BUCKETS = tuple({NAME: (b, 3, 112, 112)} for b in (1, 2, 4, 8))


def _run(session: OrtSession, x: np.ndarray) -> np.ndarray:
    with session.bind({NAME: x.shape}) as call:
        np.copyto(call.inputs[NAME], x)
        return np.array(call.run()[0])


def test_openvino_cpu_parity_with_cpu_provider(fresh_arcface: ModelArtifacts) -> None:
    cpu = OrtSession(fresh_arcface, Settings(), Target("cpu"), SessionOptions(shapes=BUCKETS))
    ov = OrtSession(fresh_arcface, Settings(), Target("openvino", "0"), SessionOptions(shapes=BUCKETS))
    assert ov.placement.provider == P.OPENVINO
    assert ov.placement.device == "openvino:CPU"
    assert ov.placement.fallback_reason is None
    assert (fresh_arcface.directory / "openvino").is_dir()  # compile cache next to the model
    for n in (1, 3, 8):
        x = nets.faces(n, seed=n)
        cos = nets.cosine_rows(_run(cpu, x), _run(ov, x))
        assert cos.min() >= 0.999, (n, cos)
    cpu.close()
    ov.close()


def test_openvino_self_test() -> None:
    placement = registry.self_test(Settings(), Target("openvino", "0"))
    assert placement.provider == P.OPENVINO and placement.fallback_reason is None


def test_detects_openvino_target() -> None:
    assert registry.detect_target_kind(Settings()) == "openvino"


def test_missing_openvino_device_is_refused_before_ort(
    fresh_arcface: ModelArtifacts, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """OpenVINO reports a GPU (so GPU.<id> is chosen) but not device 7: a worker slot's wrong id."""
    monkeypatch.setattr(P, "openvino_devices", lambda: ["CPU", "GPU.0"])
    with caplog.at_level(logging.WARNING):
        session = OrtSession(fresh_arcface, Settings(), Target("openvino", "7"), SessionOptions(label="face/recog"))
    assert session.placement.provider == P.CPU
    assert "OpenVINO device GPU.7 is not available (OpenVINO sees: CPU, GPU.0)" in (
        session.placement.fallback_reason or ""
    )
    assert any("face/recog" in r.getMessage() and "GPU.7" in r.getMessage() for r in caplog.records)
    session.close()


def test_real_openvino_failure_is_never_silent(
    fresh_arcface: ModelArtifacts, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """ORT itself is asked for GPU.7, which does not exist: it drops the provider and would go on
    on CPU without a word. The session notices, warns, and records ORT's own reason."""
    real_devices = P.openvino_devices()
    monkeypatch.setattr(P, "openvino_devices", lambda: [*real_devices, "GPU.7"])
    with caplog.at_level(logging.WARNING):
        session = OrtSession(fresh_arcface, Settings(), Target("openvino", "7"), SessionOptions(label="face/recog"))
    placement = session.placement
    assert placement.provider == P.CPU and placement.requested == "openvino:7"
    reason = placement.fallback_reason or ""
    assert "OpenVINOExecutionProvider failed for face/recog" in reason
    assert "not registered by ONNX Runtime" in reason
    assert "GPU.7" in reason  # ORT's own message, captured
    assert any(r.levelno == logging.WARNING and "moving face/recog to CPUExecutionProvider" in r.getMessage()
               for r in caplog.records)
    x = nets.faces(2)
    assert _run(session, x).shape == (2, 512)  # and it still serves
    session.close()
    strict = replace(Settings(), device_strict=True)
    with pytest.raises(BackendUnavailable, match="GPU.7"):
        OrtSession(fresh_arcface, strict, Target("openvino", "7"), SessionOptions(label="face/recog"))


def test_openvino_fp16_precision_setting_on_cpu_device(fresh_arcface: ModelArtifacts) -> None:
    """OPENVINO_PRECISION=FP16 is a GPU setting: OpenVINO's CPU device rejects it, which would make
    ORT drop the provider. On the CPU device the session must stay on OpenVINO at FP32."""
    settings = replace(Settings(), openvino_precision="FP16")
    session = OrtSession(fresh_arcface, settings, Target("openvino", "0"), SessionOptions())
    cpu = OrtSession(fresh_arcface, Settings(), Target("cpu"), SessionOptions())
    assert session.placement.provider == P.OPENVINO
    x = nets.faces(2)
    assert nets.cosine_rows(_run(cpu, x), _run(session, x)).min() >= 0.99
    session.close()
    cpu.close()
