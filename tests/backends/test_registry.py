"""Registry: target detection, formats to fetch, bridge fallback, worker self-test."""

from __future__ import annotations

import logging
import sys
import types
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from immich_ml.backends import providers as P
from immich_ml.backends import registry, selftest
from immich_ml.backends.base import Availability, ModelArtifacts, Placement, SessionOptions, Target
from immich_ml.config import Settings
from immich_ml.errors import BackendError, BackendUnavailable
from immich_ml.schemas import ModelFormat


@pytest.fixture
def no_bridges(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ARM NN / RKNN modules may not exist yet; an ImportError must read as 'unavailable'."""
    for kind in registry.BRIDGES:
        monkeypatch.setitem(sys.modules, f"immich_ml.backends.{kind}", None)


def _fake_bridge(monkeypatch: pytest.MonkeyPatch, kind: str, available: bool) -> types.ModuleType:
    module = types.ModuleType(f"immich_ml.backends.{kind}")
    module.probe = lambda settings: Availability(available, "" if available else "no NPU")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return module


def test_detect_best_installed(no_bridges: None) -> None:
    best = P.supported_available()[0]
    assert registry.detect_target_kind(Settings()) == P.PROVIDER_KIND[best]


def test_detect_follows_provider_order(monkeypatch: pytest.MonkeyPatch, no_bridges: None) -> None:
    monkeypatch.setattr(ort, "get_available_providers", lambda: [P.CPU, P.OPENVINO, P.MIGRAPHX])
    assert registry.detect_target_kind(Settings()) == "rocm"
    monkeypatch.setattr(ort, "get_available_providers", lambda: [P.OPENVINO, P.CPU])
    assert registry.detect_target_kind(Settings()) == "openvino"


def test_detect_prefers_available_bridge(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_bridge(monkeypatch, "rknn", available=False)
    _fake_bridge(monkeypatch, "armnn", available=True)
    assert registry.detect_target_kind(Settings()) == "armnn"
    # MACHINE_LEARNING_ANN=false switches it off like in Immich.
    assert registry.detect_target_kind(replace(Settings(), ann=False)) not in ("armnn", "rknn")


def test_detect_requested_but_missing(no_bridges: None, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert registry.detect_target_kind(replace(Settings(), device="cuda")) == "cuda"
    assert any("MACHINE_LEARNING_DEVICE=cuda" in r.getMessage() for r in caplog.records)
    with pytest.raises(BackendUnavailable, match="immich-ml\\[cuda\\]"):
        registry.detect_target_kind(replace(Settings(), device="cuda", device_strict=True))
    with pytest.raises(BackendUnavailable, match="not part of this installation"):
        registry.detect_target_kind(replace(Settings(), device="rknn", device_strict=True))


def test_detect_refuses_two_ort_flavours(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(P, "installed_ort_distributions", lambda: ["onnxruntime", "onnxruntime-openvino"])
    with pytest.raises(BackendUnavailable, match="onnxruntime-openvino"):
        registry.detect_target_kind(Settings())


def test_preferred_formats() -> None:
    s = Settings()
    assert registry.preferred_formats(s, Target("rknn")) == (ModelFormat.RKNN, ModelFormat.ONNX)
    assert registry.preferred_formats(s, Target("armnn")) == (ModelFormat.ARMNN, ModelFormat.ONNX)
    for kind in ("cpu", "cuda", "rocm", "openvino", "coreml"):
        assert registry.preferred_formats(s, Target(kind)) == (ModelFormat.ONNX,)


def test_bridge_without_export_falls_back_to_ort(
    monkeypatch: pytest.MonkeyPatch, arcface_artifacts: ModelArtifacts, caplog: pytest.LogCaptureFixture
) -> None:
    _fake_bridge(monkeypatch, "rknn", available=True)
    with caplog.at_level(logging.WARNING):
        session = registry.open_session(arcface_artifacts, Settings(), Target("rknn", "0"), SessionOptions(label="m"))
    assert session.placement.provider == P.CPU
    assert session.placement.requested == "rknn:0"
    assert "no rknn export" in (session.placement.fallback_reason or "")
    assert any("rknn failed for m" in r.getMessage() for r in caplog.records)
    session.close()
    with pytest.raises(BackendUnavailable, match="no rknn export"):
        registry.open_session(
            arcface_artifacts, replace(Settings(), device_strict=True), Target("rknn"), SessionOptions(label="m")
        )


def test_bridge_session_is_used_when_export_exists(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    module = _fake_bridge(monkeypatch, "armnn", available=True)
    opened: list[Target] = []

    class ArmnnSession:
        def __init__(self, artifacts: ModelArtifacts, settings: Settings, target: Target, options: SessionOptions) -> None:
            opened.append(target)

    module.ArmnnSession = ArmnnSession  # type: ignore[attr-defined]
    armnn_file = tmp_path / "model.armnn"
    armnn_file.write_bytes(b"x")
    artifacts = ModelArtifacts(directory=tmp_path, onnx=tmp_path / "model.onnx", armnn=armnn_file)
    session = registry.open_session(artifacts, Settings(), Target("armnn", "0"), SessionOptions())
    assert isinstance(session, ArmnnSession) and opened == [Target("armnn", "0")]


def test_self_test_on_cpu() -> None:
    placement = registry.self_test(Settings(), Target("cpu"))
    assert isinstance(placement, Placement)
    assert placement.provider == P.CPU and placement.fallback_reason is None


def test_self_test_shows_failed_device(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        placement = registry.self_test(replace(Settings(), device="cuda"), Target("cuda", "0"))
    assert placement.provider == P.CPU and placement.requested == "cuda:0"
    assert "CUDAExecutionProvider" in (placement.fallback_reason or "")
    assert any("CUDAExecutionProvider failed for self-test" in r.getMessage() for r in caplog.records)
    with pytest.raises(BackendUnavailable):
        registry.self_test(replace(Settings(), device_strict=True), Target("cuda", "0"))


def test_self_test_bridge_unavailable(no_bridges: None) -> None:
    placement = registry.self_test(Settings(), Target("armnn", "0"))
    assert placement.provider == P.CPU and "armnn" in (placement.fallback_reason or "")


def test_self_test_reference_is_independent() -> None:
    """The numpy Conv agrees with ORT's Conv on the same graph (and would catch a wrong one)."""
    session = ort.InferenceSession(selftest.tiny_model_bytes(), providers=["CPUExecutionProvider"])
    x, _, _ = selftest._weights()
    got = session.run(None, {"x": x})[0]
    expected = selftest.reference_output()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert np.abs(expected).max() > 0.5  # not a degenerate all-zero output


def test_self_test_catches_wrong_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(selftest, "reference_output", lambda: np.zeros((1, 8, 16, 16), np.float32))
    with pytest.raises(BackendError, match="wrong results"):
        registry.self_test(Settings(), Target("cpu"))
