"""The TensorRT provider option (MACHINE_LEARNING_DEVICE=tensorrt): chain, options, engine cache
next to the model, and the no-silent-fallback rules on a build without TensorRT (this one)."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import nets
import onnxruntime as ort
import pytest

from immich_ml.backends import providers as P
from immich_ml.backends import registry
from immich_ml.backends.base import ModelArtifacts, SessionOptions, Target
from immich_ml.backends.ort import OrtSession
from immich_ml.config import Settings, load_settings
from immich_ml.errors import BackendUnavailable


def test_settings_accept_tensorrt_and_its_precision() -> None:
    settings = load_settings({"MACHINE_LEARNING_DEVICE": "tensorrt", "MACHINE_LEARNING_TENSORRT_PRECISION": "int8"})
    assert (settings.device, settings.tensorrt_precision) == ("tensorrt", "INT8")
    assert Settings().tensorrt_precision == "FP16"


def test_chain_is_tensorrt_then_cuda_then_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    listed = [P.TENSORRT, P.CUDA, P.CPU]
    monkeypatch.setattr(ort, "get_available_providers", lambda: list(listed))
    settings = Settings(device="tensorrt")
    assert P.provider_chain(settings, Target("tensorrt", "1")) == [P.TENSORRT, P.CUDA, P.CPU]
    # auto never picks TensorRT (engine builds take minutes; it is opt-in)
    assert registry.detect_target_kind(Settings()) == "cuda"
    assert registry.probe("tensorrt", settings).available
    listed.remove(P.TENSORRT)
    assert not registry.probe("tensorrt", settings).available  # CUDA alone is not TensorRT


def test_options_persist_engines_next_to_the_model_with_bucket_profiles(tmp_path: Path) -> None:
    buckets = [{"image": (b, 3, 224, 224)} for b in (1, 2, 4, 8)]
    options = P.provider_options(P.TENSORRT, Settings(), Target("tensorrt", "1"), tmp_path, shapes=buckets)
    cache = tmp_path / "tensorrt"
    assert cache.is_dir()
    assert options["device_id"] == "1"
    assert options["trt_engine_cache_enable"] == "True" and options["trt_engine_cache_path"] == str(cache)
    assert options["trt_timing_cache_path"] == str(cache)
    assert (options["trt_fp16_enable"], options["trt_int8_enable"]) == ("True", "False")
    assert options["trt_profile_min_shapes"] == "image:1x3x224x224"
    assert options["trt_profile_max_shapes"] == options["trt_profile_opt_shapes"] == "image:8x3x224x224"
    fp32 = P.provider_options(P.TENSORRT, Settings(tensorrt_precision="FP32"), Target("tensorrt"), tmp_path)
    assert fp32["trt_fp16_enable"] == "False" and "trt_profile_min_shapes" not in fp32
    again = P.provider_options(P.TENSORRT, Settings(), Target("tensorrt", "1"), tmp_path, shapes=buckets)
    assert again == options  # a restart or a TTL reload points TensorRT at the same engines


def test_missing_tensorrt_falls_back_loudly_or_fails_in_strict_mode(
    arcface_artifacts: ModelArtifacts, caplog: pytest.LogCaptureFixture
) -> None:
    if P.TENSORRT in ort.get_available_providers():
        pytest.skip("this ONNX Runtime build has TensorRT (tests/gpu covers it)")
    settings = Settings(device="tensorrt")
    with caplog.at_level(logging.WARNING):
        session = OrtSession(arcface_artifacts, settings, Target("tensorrt", "0"), SessionOptions(label="m"))
    assert session.placement.provider == P.CPU and session.placement.requested == "tensorrt:0"
    assert P.TENSORRT in (session.placement.fallback_reason or "")
    assert any(P.TENSORRT in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert session.run({"input.1": nets.faces(1)})[0].shape[0] == 1
    session.close()
    with pytest.raises(BackendUnavailable, match="DEVICE_STRICT"):
        OrtSession(arcface_artifacts, replace(settings, device_strict=True), Target("tensorrt", "0"),
                   SessionOptions(label="m"))
