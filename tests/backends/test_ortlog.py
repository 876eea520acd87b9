"""ORT's own messages reach Python logging and the per-thread capture (the reason for a dropped EP)."""

from __future__ import annotations

import logging
import warnings

import onnxruntime as ort
import pytest

from immich_ml.backends import ortlog, selftest
from immich_ml.backends.ort import _ort_reason, brief

# Lines exactly as onnxruntime-openvino 1.24 writes them to stderr (colour codes included).
OPENVINO_STDERR = (
    "\x1b[1;31m2026-11-24 16:26:42.137089303 [E:onnxruntime:Default, provider_bridge_ort.cc:2310 Create] "
    "/onnxruntime/onnxruntime/core/providers/openvino/openvino_provider_factory.cc:141 std::string "
    "onnxruntime::openvino_ep::ParseDeviceType(std::shared_ptr<OVCore>, const onnxruntime::ProviderOptions&) "
    "[ERROR] [OpenVINO] Device GPU.7 is not available\n\x1b[m\n"
    "\x1b[0;93m2026-11-24 16:26:42.137101261 [W:onnxruntime:Default, onnxruntime_pybind_state.cc:1066 "
    "CreateExecutionProviderFactoryInstance] Failed to create OpenVINOExecutionProvider.\x1b[m\n"
    "an unrelated line\n"
)


def test_stderr_lines_are_parsed() -> None:
    assert ortlog._ort_lines(OPENVINO_STDERR) == [
        "[OpenVINO] Device GPU.7 is not available",
        "Failed to create OpenVINOExecutionProvider.",
    ]


def test_reason_drops_noise_and_prefixes() -> None:
    messages = [
        "No registered plugin EP device found for 'CUDAExecutionProvider' with device_id=0",
        "/src/provider_bridge_ort.cc:2043 Get() [ONNXRuntimeError] : 1 : FAIL : Failed to load library x.so",
    ]
    assert _ort_reason(messages) == "Failed to load library x.so"
    assert _ort_reason([]) == "ONNX Runtime dropped it without an error message"
    assert _ort_reason(messages[:1]).startswith("No registered plugin EP device")


def test_brief_keeps_head_and_tail() -> None:
    text = "start " + "x" * 2000 + " the readable cause"
    short = brief(text, limit=200)
    assert len(short) <= 200 and short.startswith("start") and short.endswith("the readable cause")
    assert brief("a\n  b") == "a b"


@pytest.mark.skipif(not hasattr(ort, "set_default_logger_callback"), reason="this ORT build has no logger callback")
def test_callback_capture_on_this_thread(caplog: pytest.LogCaptureFixture) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with caplog.at_level(logging.WARNING, logger="immich_ml.backends.onnxruntime"):
            with ortlog.capture() as messages:
                ort.InferenceSession(
                    selftest.tiny_model_bytes(),
                    providers=[("CUDAExecutionProvider", {"device_id": "0"}), "CPUExecutionProvider"],
                )
    assert any("CUDAExecutionProvider" in m for m in messages)
    assert any("CUDAExecutionProvider" in r.getMessage() for r in caplog.records)
