"""Settings: Immich's names and defaults, read once; invalid values stop start-up with a clear message."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from immich_ml.config import MaxBatchSize, PreloadModels, Settings, load_settings
from immich_ml.errors import SettingsError


def test_defaults_are_immichs() -> None:
    s = load_settings({})
    assert s == Settings()
    assert s.cache_folder == Path.home() / ".cache" / "immich_ml"
    assert (s.model_ttl, s.model_ttl_poll_s) == (300, 10)
    assert (s.workers, s.worker_timeout, s.http_keepalive_timeout_s) == (1, 300, 2)
    assert s.request_threads == (os.cpu_count() or 4)
    assert (s.model_inter_op_threads, s.model_intra_op_threads) == (0, 0)
    assert s.model_arena is False  # what Immich's images set (they preload mimalloc)
    assert (s.ann, s.ann_fp16_turbo, s.ann_tuning_level) == (True, False, 2)
    assert (s.rknn, s.rknn_threads) == (True, 1)
    assert s.preload == PreloadModels() and s.preload.ocr_max_resolution == 736
    assert s.max_batch_size == MaxBatchSize(facial_recognition=None, ocr=6)
    assert s.ocr_model_url.endswith("RapidAI/RapidOCR/resolve/v3.8.0/onnx/PP-OCRv5") and not s.hf_hub_offline
    assert (s.openvino_precision, s.rocm_precision) == ("FP32", "FP32")
    assert (s.model_organization, s.model_revision) == ("immich-app", "main")
    assert (s.device_ids, s.device_id) == (("0",), "0")
    assert (s.host, s.port, s.log_level) == ("[::]", 3003, "info")
    assert s.log_level_number == logging.INFO
    assert (s.device, s.device_strict, s.model_precision, s.fast_decode) == ("auto", False, "FP32", True)


def test_values_are_read_case_insensitively_with_nested_keys() -> None:
    s = load_settings({
        "machine_learning_cache_folder": "/models",
        "MACHINE_LEARNING_MODEL_TTL": "0",
        "Machine_Learning_Workers": "3",
        "MACHINE_LEARNING_PRELOAD__CLIP__TEXTUAL": "ViT-B-32__openai, XLM-Roberta-Large-Vit-B-32",
        "MACHINE_LEARNING_PRELOAD__FACIAL_RECOGNITION__DETECTION": "buffalo_l",
        "MACHINE_LEARNING_MAX_BATCH_SIZE__FACIAL_RECOGNITION": "8",
        "MACHINE_LEARNING_MAX_BATCH_SIZE__OCR": "2",
        "MACHINE_LEARNING_OCR_MODEL_URL": "http://mirror.local/ppocr",
        "HF_HUB_OFFLINE": "1",
        "MACHINE_LEARNING_OPENVINO_PRECISION": "fp16",
        "MACHINE_LEARNING_DEVICE_IDS": "0,1",
        "MACHINE_LEARNING_MODEL_REVISION": "v2",
        "MACHINE_LEARNING_ANN": "no",
        "MACHINE_LEARNING_FAST_DECODE": "off",
        "IMMICH_HOST": "[::1]",
        "IMMICH_PORT": "3004",
        "IMMICH_LOG_LEVEL": "Verbose",
    })
    assert s.cache_folder == Path("/models") and s.model_ttl == 0 and s.workers == 3
    assert s.preload.clip_textual == ("ViT-B-32__openai", "XLM-Roberta-Large-Vit-B-32")
    assert s.preload.facial_recognition_detection == ("buffalo_l",)
    assert s.preload.clip_visual == () and s.preload.facial_recognition_recognition == ()
    assert s.max_batch_size == MaxBatchSize(facial_recognition=8, ocr=2)
    assert s.ocr_model_url == "http://mirror.local/ppocr" and s.hf_hub_offline
    assert s.openvino_precision == "FP16"
    assert s.device_ids == ("0", "1") and s.device_id == "0"
    assert s.model_revision == "v2" and s.ann is False and s.fast_decode is False
    assert (s.host, s.bind_host, s.port) == ("[::1]", "::1", 3004)
    assert s.log_level == "verbose" and s.log_level_number == logging.DEBUG


def test_negative_ttl_disables_like_immich() -> None:
    assert load_settings({"MACHINE_LEARNING_MODEL_TTL": "-1"}).model_ttl == -1


def test_empty_values_mean_unset() -> None:
    assert load_settings({"MACHINE_LEARNING_MODEL_TTL": "  ", "IMMICH_PORT": ""}) == Settings()


def test_deprecated_preload_keys_fill_both_types(caplog: pytest.LogCaptureFixture) -> None:
    s = load_settings({"MACHINE_LEARNING_PRELOAD__CLIP": "ViT-B-32__openai",
                       "MACHINE_LEARNING_PRELOAD__FACIAL_RECOGNITION": "buffalo_l"})
    assert s.preload.clip_textual == s.preload.clip_visual == ("ViT-B-32__openai",)
    assert s.preload.facial_recognition_detection == s.preload.facial_recognition_recognition == ("buffalo_l",)
    assert "Deprecated setting" in caplog.text


def test_the_device_id_follows_device_ids() -> None:
    assert load_settings({"MACHINE_LEARNING_DEVICE_IDS": "2,3"}).device_id == "2"
    assert load_settings({"MACHINE_LEARNING_DEVICE_IDS": "2,3", "MACHINE_LEARNING_DEVICE_ID": "3"}).device_id == "3"


def test_max_batch_size_none_means_no_limit() -> None:
    s = load_settings({"MACHINE_LEARNING_MAX_BATCH_SIZE__FACIAL_RECOGNITION": "none"})
    assert s.max_batch_size.facial_recognition is None


@pytest.mark.parametrize("variable", ["NO_COLOR", "MACHINE_LEARNING_TEST_FULL"])
def test_immichs_console_and_test_suite_switches_are_accepted_and_ignored(variable: str) -> None:
    # Immich reads them (rich console colours; its own slow tests); nothing here depends on them.
    for value in ("1", "true", "sometimes"):
        assert load_settings({variable: value}) == Settings()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MACHINE_LEARNING_MODEL_TTL", "five minutes"),
        ("MACHINE_LEARNING_WORKERS", "0"),
        ("MACHINE_LEARNING_WORKER_TIMEOUT", "0"),
        ("MACHINE_LEARNING_ANN_TUNING_LEVEL", "4"),
        ("MACHINE_LEARNING_RKNN_THREADS", "0"),
        ("MACHINE_LEARNING_RKNN", "maybe"),
        ("MACHINE_LEARNING_MODEL_ARENA", "2"),
        ("MACHINE_LEARNING_OPENVINO_PRECISION", "FP8"),
        ("MACHINE_LEARNING_ROCM_PRECISION", "int8"),
        ("MACHINE_LEARNING_MODEL_PRECISION", "BF16"),
        ("MACHINE_LEARNING_DEVICE", "tpu"),
        ("MACHINE_LEARNING_DEVICE_IDS", ", ,"),
        ("MACHINE_LEARNING_MAX_BATCH_SIZE__FACIAL_RECOGNITION", "0"),
        ("MACHINE_LEARNING_MAX_BATCH_SIZE__OCR", "-3"),
        ("MACHINE_LEARNING_PRELOAD__OCR__MAX_RESOLUTION", "16"),
        ("MACHINE_LEARNING_PLACEMENT__CLIP__TEXTUAL", "gpu"),
        ("MACHINE_LEARNING_MODEL_INTRA_OP_THREADS", "-1"),
        ("IMMICH_PORT", "70000"),
        ("IMMICH_PORT", "http"),
        ("IMMICH_LOG_LEVEL", "loud"),
    ],
)
def test_invalid_values_are_rejected_by_name(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({variable: value})
    assert info.value.variable == variable and info.value.value == value
    assert variable in info.value.message and repr(value) in info.value.message
    assert "expected" in info.value.message


def test_settings_error_survives_pickling() -> None:
    import pickle

    with pytest.raises(SettingsError) as info:
        load_settings({"IMMICH_PORT": "0"})
    copy = pickle.loads(pickle.dumps(info.value))
    assert (copy.variable, copy.value, copy.message) == (info.value.variable, "0", info.value.message)


def test_batching_warmup_and_oom_settings() -> None:
    from immich_ml.config import load_settings as load

    default = load({})
    assert (default.batch_wait_ms, default.warmup, default.oom_cpu_fallback) == (None, None, True)
    assert default.max_batch_size.clip is None
    custom = load({"MACHINE_LEARNING_BATCH_WAIT_MS": "2.5", "MACHINE_LEARNING_WARMUP": "false",
                   "MACHINE_LEARNING_OOM_CPU_FALLBACK": "no", "MACHINE_LEARNING_MAX_BATCH_SIZE__CLIP": "32"})
    assert (custom.batch_wait_ms, custom.warmup, custom.oom_cpu_fallback) == (2.5, False, False)
    assert custom.max_batch_size.clip == 32 and load({"MACHINE_LEARNING_WARMUP": "auto"}).warmup is None
    with pytest.raises(SettingsError, match="MACHINE_LEARNING_BATCH_WAIT_MS"):
        load({"MACHINE_LEARNING_BATCH_WAIT_MS": "-1"})
