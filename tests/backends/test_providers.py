"""Provider order, options and the one-ORT-flavour rule (contract §5.1)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import onnxruntime as ort
import pytest

from immich_ml.backends import providers as P
from immich_ml.backends.base import Target
from immich_ml.config import Settings, load_settings
from immich_ml.errors import BackendUnavailable

EVERYTHING = [
    "TensorrtExecutionProvider",
    P.CUDA,
    P.MIGRAPHX,
    P.OPENVINO,
    P.COREML,
    "AzureExecutionProvider",
    P.CPU,
]


@pytest.fixture
def offered(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    current: list[str] = list(EVERYTHING)
    monkeypatch.setattr(ort, "get_available_providers", lambda: list(current))
    return current


def test_supported_order_ignores_unsupported(offered: list[str]) -> None:
    offered.reverse()  # ORT's own order must not matter
    assert P.supported_available() == [P.CUDA, P.MIGRAPHX, P.OPENVINO, P.COREML, P.CPU]


def test_chain_auto_tries_lower_accelerators_then_cpu(offered: list[str]) -> None:
    settings = Settings()
    assert P.provider_chain(settings, Target("cuda", "1")) == [P.CUDA, P.MIGRAPHX, P.OPENVINO, P.COREML, P.CPU]
    assert P.provider_chain(settings, Target("openvino", "0")) == [P.OPENVINO, P.COREML, P.CPU]
    assert P.provider_chain(settings, Target("cpu", "0")) == [P.CPU]


def test_chain_restricted_by_device_setting(offered: list[str]) -> None:
    settings = replace(Settings(), device="cuda")
    assert P.provider_chain(settings, Target("cuda", "0")) == [P.CUDA, P.CPU]


def test_chain_keeps_missing_requested_provider_first(offered: list[str]) -> None:
    offered[:] = [P.CPU]
    # Listed anyway so the session reports why it could not be used.
    assert P.provider_chain(Settings(), Target("rocm", "0")) == [P.MIGRAPHX, P.CPU]


def test_rocm_prefers_migraphx_over_legacy_rocm(offered: list[str]) -> None:
    offered[:] = [P.ROCM, P.MIGRAPHX, P.CPU]
    assert P.provider_chain(Settings(), Target("rocm", "0"))[:2] == [P.MIGRAPHX, P.ROCM]


def test_cuda_options(tmp_path: Path) -> None:
    opts = P.provider_options(P.CUDA, Settings(), Target("cuda", "3"), tmp_path)
    assert opts == {"arena_extend_strategy": "kSameAsRequested", "device_id": "3"}
    assert P.provider_options(P.CPU, Settings(), Target("cpu"), tmp_path) == {
        "arena_extend_strategy": "kSameAsRequested"
    }


@pytest.mark.parametrize(("precision", "flag"), [("FP32", "0"), ("FP16", "1")])
def test_migraphx_options(tmp_path: Path, precision: str, flag: str) -> None:
    settings = load_settings({"MACHINE_LEARNING_ROCM_PRECISION": precision.lower()})
    model_dir = tmp_path / "clip" / "ViT-B-32__openai" / "visual"
    opts = P.provider_options(P.MIGRAPHX, settings, Target("rocm", "1"), model_dir)
    assert opts["device_id"] == "1"
    assert opts["migraphx_fp16_enable"] == flag
    assert Path(opts["migraphx_model_cache_dir"]) == model_dir / "migraphx"
    # MIGraphX crashes when the cache directory does not exist: it must be created first.
    assert (model_dir / "migraphx").is_dir()


def test_openvino_options_gpu_and_cpu(tmp_path: Path) -> None:
    settings = load_settings({"MACHINE_LEARNING_OPENVINO_PRECISION": "FP16"})
    gpu = P.provider_options(
        P.OPENVINO, settings, Target("openvino", "1"), tmp_path, openvino_device_list=["CPU", "GPU.0", "GPU.1"]
    )
    assert gpu == {"device_type": "GPU.1", "precision": "FP16", "cache_dir": str(tmp_path / "openvino")}
    assert (tmp_path / "openvino").is_dir()
    cpu = P.provider_options(P.OPENVINO, settings, Target("openvino", "1"), tmp_path, openvino_device_list=["CPU"])
    assert cpu["device_type"] == "CPU"
    assert cpu["precision"] == "FP32"  # OpenVINO's CPU device rejects FP16 (and ORT drops the EP)


def test_coreml_options(tmp_path: Path) -> None:
    opts = P.provider_options(P.COREML, Settings(), Target("coreml"), tmp_path)
    assert opts["ModelFormat"] == "MLProgram"
    assert opts["MLComputeUnits"] == "ALL"
    assert opts["ModelCacheDirectory"] == str(tmp_path / "coreml")


def test_device_labels_and_gpu_flags() -> None:
    assert P.device_label(P.CUDA, {"device_id": "2"}) == "cuda:2"
    assert P.device_label(P.MIGRAPHX, {"device_id": "0"}) == "rocm:0"
    assert P.device_label(P.OPENVINO, {"device_type": "GPU.1"}) == "openvino:GPU.1"
    assert P.device_label(P.CPU, {}) == "cpu"
    assert P.uses_gpu(P.OPENVINO, {"device_type": "GPU.0"})
    assert not P.uses_gpu(P.OPENVINO, {"device_type": "CPU"})
    assert P.uses_gpu(P.CUDA, {}) and not P.uses_gpu(P.CPU, {})


def test_one_flavour_passes_and_two_fail_with_fix() -> None:
    assert P.check_single_flavour(["onnxruntime-gpu"]) == "onnxruntime-gpu"
    assert P.check_single_flavour([]) is None
    with pytest.raises(BackendUnavailable) as info:
        P.check_single_flavour(["onnxruntime", "onnxruntime-gpu"])
    message = info.value.message
    assert "onnxruntime, onnxruntime-gpu" in message
    assert "pip uninstall -y onnxruntime onnxruntime-gpu" in message
    assert "immich-ml[cuda]" in message


def test_installed_flavours_reads_real_metadata() -> None:
    found = P.installed_ort_distributions()
    # This venv has exactly one flavour, and it is the one that provides the imported module.
    assert len(found) == 1
    assert P.check_single_flavour() == found[0]


def test_missing_provider_reason_names_build_and_fix(offered: list[str]) -> None:
    offered[:] = [P.CPU]
    reason = P.missing_provider_reason(P.CUDA)
    assert ort.__version__ in reason and "immich-ml[cuda]" in reason


def test_available_providers_line_logged_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(P, "_logged", False)
    with caplog.at_level("INFO", logger="immich_ml.backends.providers"):
        P.log_available_providers()
        P.log_available_providers()
    lines = [r for r in caplog.records if r.getMessage().startswith("Available ORT providers: [")]
    assert len(lines) == 1 and lines[0].levelname == "INFO"
    assert "CPUExecutionProvider" in lines[0].getMessage()
