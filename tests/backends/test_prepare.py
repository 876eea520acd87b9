"""CPU preparation of model graphs: exact rewrites, cached next to the model, only where they help."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from immich_ml.backends import prepare


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"x": x})[0])


def _prelu_net(path: Path, *, quantized: bool = False, activations_quantized: bool = False) -> Path:
    """x[N,3,16,16] -> Conv 3x3 (8 ch) -> PRelu (slopes in -0.8..1.2) -> Conv 1x1 -> y.

    ``quantized``: the first conv's weights are int8 + DequantizeLinear (per output channel), as
    in SFace's ``int8bq`` file. ``activations_quantized`` adds a QuantizeLinear/DequantizeLinear
    pair on the input (a real QDQ graph, which must be left alone).
    """
    rng = np.random.default_rng(3)
    w1 = rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3
    w2 = rng.standard_normal((4, 8, 1, 1)).astype(np.float32) * 0.3
    slope = np.linspace(-0.8, 1.2, 8, dtype=np.float32).reshape(8, 1, 1)
    inits = [numpy_helper.from_array(w2, "w2"), numpy_helper.from_array(slope, "slope")]
    nodes = []
    src = "x"
    if activations_quantized:
        inits += [numpy_helper.from_array(np.array(0.02, np.float32), "xs"),
                  numpy_helper.from_array(np.array(0, np.uint8), "xz")]
        nodes += [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
                  helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"])]
        src = "xd"
    if quantized:
        scale = np.abs(w1).reshape(8, -1).max(axis=1) / 127
        q = np.round(w1 / scale[:, None, None, None]).astype(np.int8)
        inits += [numpy_helper.from_array(q, "w1q"), numpy_helper.from_array(scale.astype(np.float32), "w1s"),
                  numpy_helper.from_array(np.zeros(8, np.int8), "w1z")]
        nodes.append(helper.make_node("DequantizeLinear", ["w1q", "w1s", "w1z"], ["w1"], axis=0))
    else:
        inits.append(numpy_helper.from_array(w1, "w1"))
    nodes += [
        helper.make_node("Conv", [src, "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("PRelu", ["c1", "slope"], ["p1"]),
        helper.make_node("Conv", ["p1", "w2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "prelu_net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4, 16, 16])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _ops(path: Path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path)).graph.node]


@pytest.fixture
def x() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)


def test_prelu_rewrite_is_exact(tmp_path: Path, x: np.ndarray) -> None:
    source = _prelu_net(tmp_path / "model.onnx")
    prepared = prepare.for_cpu(source)
    assert prepared == prepare.prepared_path(source) and prepared.is_file()
    assert "PRelu" not in _ops(prepared)
    # independent reference: the PRelu formula in numpy on the first conv's output
    model = onnx.load(str(source))
    model.graph.output.append(helper.make_tensor_value_info("c1", TensorProto.FLOAT, None))
    conv_path = tmp_path / "with_c1.onnx"
    onnx.save(model, str(conv_path))
    c1 = np.asarray(ort.InferenceSession(str(conv_path), providers=["CPUExecutionProvider"]).run(["c1"], {"x": x})[0])
    slope = np.linspace(-0.8, 1.2, 8, dtype=np.float32).reshape(1, 8, 1, 1)
    w2 = numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == "w2"))
    expected = np.einsum("nchw,oc->nohw", np.where(c1 > 0, c1, c1 * slope), w2[:, :, 0, 0])
    np.testing.assert_allclose(_run(prepared, x), expected, atol=1e-5)
    np.testing.assert_allclose(_run(prepared, x), _run(source, x), atol=1e-5)


def test_weight_only_int8_is_folded(tmp_path: Path, x: np.ndarray) -> None:
    source = _prelu_net(tmp_path / "model.onnx", quantized=True)
    prepared = prepare.for_cpu(source)
    ops = _ops(prepared)
    assert "DequantizeLinear" not in ops and "PRelu" not in ops
    np.testing.assert_allclose(_run(prepared, x), _run(source, x), atol=1e-5)


def test_quantized_activations_are_not_folded(tmp_path: Path) -> None:
    source = _prelu_net(tmp_path / "model.onnx", quantized=True, activations_quantized=True)
    prepared = prepare.for_cpu(source)
    ops = _ops(prepared)
    assert "QuantizeLinear" in ops and ops.count("DequantizeLinear") == 2  # QDQ graph kept as it is
    assert "PRelu" not in ops


def test_graph_without_rewrites_keeps_the_original(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "plain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [numpy_helper.from_array(rng.standard_normal((4, 2)).astype(np.float32), "w")],
    )
    source = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(source))
    assert prepare.for_cpu(source) == source
    assert not prepare.prepared_path(source).exists()
    assert prepare.for_cpu(source) == source  # answered from the sidecar


def test_cached_until_the_source_changes(tmp_path: Path) -> None:
    source = _prelu_net(tmp_path / "model.onnx")
    prepared = prepare.for_cpu(source)
    first = prepared.stat().st_mtime_ns
    assert prepare.for_cpu(source) == prepared
    assert prepared.stat().st_mtime_ns == first  # not rewritten
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    prepare.for_cpu(source)
    assert prepared.stat().st_mtime_ns != first


def test_unreadable_model_is_left_to_the_runtime(tmp_path: Path) -> None:
    source = tmp_path / "model.onnx"
    source.write_bytes(b"not a model")
    assert prepare.for_cpu(source) == source


def test_real_sface_recognizer(starter_cache: Path, tmp_path: Path) -> None:
    """The starter's SFace (int8 weights, 27 PRelu): folded and rewritten, same embeddings."""
    source = tmp_path / "model.onnx"
    source.write_bytes((starter_cache / "facial-recognition/scrfd_sface/recognition/model.onnx").read_bytes())
    prepared = prepare.for_cpu(source)
    ops = _ops(prepared)
    assert "DequantizeLinear" not in ops and "PRelu" not in ops
    faces = np.random.default_rng(2).uniform(0, 255, (3, 3, 112, 112)).astype(np.float32)
    a = np.asarray(ort.InferenceSession(str(source), providers=["CPUExecutionProvider"]).run(None, {"data": faces})[0])
    b = np.asarray(ort.InferenceSession(str(prepared), providers=["CPUExecutionProvider"]).run(None, {"data": faces})[0])
    np.testing.assert_allclose(b, a, atol=1e-4 * float(np.abs(a).max()))
