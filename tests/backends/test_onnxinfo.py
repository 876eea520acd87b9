"""Graph inputs read from the protobuf wire format must match what ``onnx.load`` sees."""

from __future__ import annotations

from pathlib import Path

import nets
import onnx
import pytest
from onnx import TensorProto, helper

from immich_ml.backends.onnxinfo import symbolic_input_dims


def via_onnx(path: Path) -> dict[str, list[str | None]]:
    model = onnx.load(str(path))
    return {
        i.name: [d.dim_param if d.HasField("dim_param") else None for d in i.type.tensor_type.shape.dim]
        for i in model.graph.input
    }


def test_matches_onnx_load_on_generated_model(tmp_path: Path) -> None:
    path = nets.arcface_like(tmp_path / "model.onnx", batch="N")
    assert symbolic_input_dims(path) == via_onnx(path) == {"input.1": ["N", None, None, None]}


def test_several_inputs_and_static_dims(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["c"])],
        "g",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", "seq"]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 77]),
        ],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, ["batch", "seq"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="x" * 300)
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    assert symbolic_input_dims(path) == via_onnx(path) == {"a": ["batch", "seq"], "b": [None, None]}


def test_garbage_is_a_value_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"\x3a\xff\xff\xff\x0f")
    with pytest.raises(ValueError):
        symbolic_input_dims(path)
