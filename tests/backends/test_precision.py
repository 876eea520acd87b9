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
    assert session.placement.extra["model"].endswith(".int8.onnx")  # model[.prepared].int8.onnx
    session.close()


def test_broken_source_falls_back_to_fp32_path(tmp_path: Path) -> None:
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(Exception, match="Could not convert"):
        precision.model_for_precision(bad, "FP16")
    assert not (tmp_path / "model.fp16.onnx").exists()


def _starter_copy(starter_cache: Path, tmp_path: Path, relative: str) -> Path:
    src = starter_cache / relative / "model.onnx"
    dst = tmp_path / relative / "model.onnx"
    dst.parent.mkdir(parents=True)
    dst.write_bytes(src.read_bytes())
    return dst


def _photo_batch(photos: dict[str, Path], size: int, names: tuple[str, ...]) -> np.ndarray:
    """Real photos resized with Pillow, float32 RGB 0..255, (N, 3, size, size)."""
    from PIL import Image

    arrays = []
    for name in names:
        with Image.open(photos[name]) as img:
            arrays.append(np.asarray(img.convert("RGB").resize((size, size), Image.BICUBIC), np.float32))
    return np.ascontiguousarray(np.stack(arrays).transpose(0, 3, 1, 2))


NAMES = ("astronaut", "chelsea", "coffee", "camera", "newton", "gauss")


def test_fp16_tiny_clip_visual(starter_cache: Path, photos: dict[str, Path], tmp_path: Path) -> None:
    src = _starter_copy(starter_cache, tmp_path, "clip/ViT-tiny__nonsemantic/visual")
    fp16 = precision.model_for_precision(src, "FP16")
    mean = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)[:, None, None]
    std = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)[:, None, None]
    batch = (_photo_batch(photos, 224, NAMES) / 255.0 - mean) / std
    a = np.concatenate([embed(src, img[None]) for img in batch])
    b = np.concatenate([embed(fp16, img[None]) for img in batch])
    assert nets.cosine_rows(a, b).min() >= 0.99


def test_fp16_tiny_clip_textual(starter_cache: Path, tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    src = _starter_copy(starter_cache, tmp_path, "clip/ViT-tiny__nonsemantic/textual")
    fp16 = precision.model_for_precision(src, "FP16")
    tokenizer = Tokenizer.from_file(str(starter_cache / "clip/ViT-tiny__nonsemantic/textual/tokenizer.json"))
    tokenizer.enable_padding(length=77, pad_id=0)
    tokenizer.enable_truncation(77)
    texts = ["a photo of a cat", "an astronaut", "a cup of coffee on a table", "portrait of a man"]
    rows = []
    for text in texts:
        ids = np.asarray([tokenizer.encode(text).ids], np.int32)
        rows.append((embed(src, ids)[0], embed(fp16, ids)[0]))
    a, b = np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows])
    assert nets.cosine_rows(a, b).min() >= 0.99


def test_fp16_face_recognizer(starter_cache: Path, photos: dict[str, Path], tmp_path: Path) -> None:
    src = _starter_copy(starter_cache, tmp_path, "facial-recognition/scrfd_sface/recognition")
    fp16 = precision.model_for_precision(src, "FP16")
    batch = _photo_batch(photos, 112, NAMES)
    cos = nets.cosine_rows(embed(src, batch), embed(fp16, batch))
    assert cos.min() >= 0.99, cos


def test_int8_tiny_clip_visual(starter_cache: Path, photos: dict[str, Path], tmp_path: Path) -> None:
    src = _starter_copy(starter_cache, tmp_path, "clip/ViT-tiny__nonsemantic/visual")
    int8 = precision.model_for_precision(src, "INT8")
    assert any(n.op_type in ("MatMulInteger", "DynamicQuantizeLinear") for n in onnx.load(str(int8)).graph.node)
    batch = (_photo_batch(photos, 224, NAMES) / 255.0 - 0.45) / 0.27
    a = np.concatenate([embed(src, img[None]) for img in batch])
    b = np.concatenate([embed(int8, img[None]) for img in batch])
    assert nets.cosine_rows(a, b).min() >= 0.99


def test_int8_face_recognizer_folded(starter_cache: Path, photos: dict[str, Path], tmp_path: Path) -> None:
    """INT8 dynamic quantization of the (float32-folded) real recognizer keeps cosine >= 0.99."""
    src = tmp_path / "recognition" / "model.onnx"
    src.parent.mkdir()
    folded = nets.fold_dequantize(onnx.load(str(starter_cache / "facial-recognition/scrfd_sface/recognition/model.onnx")))
    onnx.save(folded, str(src))
    int8 = precision.model_for_precision(src, "INT8")
    batch = _photo_batch(photos, 112, NAMES)
    cos = nets.cosine_rows(embed(src, batch), embed(int8, batch))
    assert cos.min() >= 0.99, cos
