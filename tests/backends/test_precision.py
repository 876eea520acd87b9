"""FP16 / INT8 model variants: converted once, cached next to the model, accurate enough."""

from __future__ import annotations

import os
import threading
from dataclasses import replace
from pathlib import Path

import nets
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from immich_ml.backends import precision
from immich_ml.backends import providers as P
from immich_ml.backends.base import ModelArtifacts, SessionOptions, Target
from immich_ml.backends.ort import OrtSession
from immich_ml.config import Settings


def embed(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    out: np.ndarray = session.run(None, {name: x})[0]
    return out


def test_effective_precision_only_where_supported() -> None:
    fp16 = replace(Settings(), model_precision="FP16")
    int8 = replace(Settings(), model_precision="INT8")
    assert precision.effective_precision(fp16, P.CUDA, {}) == "FP16"
    assert precision.effective_precision(fp16, P.OPENVINO, {"device_type": "GPU.0"}) == "FP16"
    assert precision.effective_precision(fp16, P.OPENVINO, {"device_type": "CPU"}) == "FP32"
    assert precision.effective_precision(fp16, P.CPU, {}) == "FP32"
    assert precision.effective_precision(int8, P.CPU, {}) == "INT8"
    assert precision.effective_precision(int8, P.CUDA, {}) == "FP32"
    assert precision.effective_precision(Settings(), P.CUDA, {}) == "FP32"


def test_fp16_conversion_is_cached_and_accurate(fresh_arcface: ModelArtifacts) -> None:
    src = fresh_arcface.onnx
    path = precision.model_for_precision(src, "FP16")
    assert path == src.with_name("model.fp16.onnx") and path.is_file()
    model = onnx.load(str(path))
    # Weights are float16, graph I/O stays float32 (bound buffers and postprocessing unchanged).
    assert {t.data_type for t in model.graph.initializer} >= {onnx.TensorProto.FLOAT16}
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert path.stat().st_size < src.stat().st_size * 0.6
    # Run the fp16 graph on the CPU provider: an honest check of the converted graph.
    x = nets.faces(8)
    cos = nets.cosine_rows(embed(src, x), embed(path, x))
    assert cos.min() >= 0.99, cos
    # Reused, not rewritten; no temporary files left behind.
    mtime = path.stat().st_mtime_ns
    assert precision.model_for_precision(src, "FP16") == path
    assert path.stat().st_mtime_ns == mtime
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_stale_variant_is_rebuilt(fresh_arcface: ModelArtifacts) -> None:
    src = fresh_arcface.onnx
    path = precision.model_for_precision(src, "FP16")
    old = path.stat().st_mtime_ns
    os.utime(path, ns=(old - 10**10, old - 10**10))  # older than its source now
    precision.model_for_precision(src, "FP16")
    assert path.stat().st_mtime_ns > old - 10**10


def test_concurrent_conversions_write_once(fresh_arcface: ModelArtifacts) -> None:
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(precision.model_for_precision(fresh_arcface.onnx, "FP16")))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1
    onnx.checker.check_model(str(results[0]))


def test_int8_dynamic_quantization_accuracy(fresh_arcface: ModelArtifacts) -> None:
    path = precision.model_for_precision(fresh_arcface.onnx, "INT8")
    assert path.name == "model.int8.onnx"
    x = nets.faces(8)
    cos = nets.cosine_rows(embed(fresh_arcface.onnx, x), embed(path, x))
    assert cos.min() >= 0.99, cos


def test_session_reports_precision(fresh_arcface: ModelArtifacts) -> None:
    session = OrtSession(fresh_arcface, replace(Settings(), model_precision="INT8"), Target("cpu"), SessionOptions())
    assert session.placement.precision == "INT8"
    assert session.placement.extra["model"] == "model.int8.onnx"
    session.close()


def test_broken_source_falls_back_to_fp32_path(tmp_path: Path) -> None:
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(Exception, match="Could not convert"):
        precision.model_for_precision(bad, "FP16")
    assert not (tmp_path / "model.fp16.onnx").exists()
