"""Matrix-throughput floor and FLOP counting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from immich_ml.bench import floor


def test_matmul_floor_is_positive() -> None:
    result = floor.matmul_floor(n=256, repeats=2)
    assert result.gflops > 0 and result.gflops >= result.gflops_median > 0
    assert result.to_json()["n"] == 256


def test_model_gflop_counts_matmul_gemm_and_conv(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "cw"),
        numpy_helper.from_array(rng.standard_normal((8 * 16 * 16, 10)).astype(np.float32), "mw"),
        numpy_helper.from_array(rng.standard_normal((6, 10)).astype(np.float32), "gw"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "cw"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Flatten", ["c"], ["f"]),
        helper.make_node("MatMul", ["f", "mw"], ["m"]),
        helper.make_node("Gemm", ["m", "gw"], ["y"], transB=1),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 6])], inits)
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    conv = 2 * (8 * 16 * 16) * (3 * 3 * 3)
    matmul = 2 * 10 * (8 * 16 * 16)
    gemm = 2 * 6 * 10
    assert floor.model_gflop(path) == pytest.approx((conv + matmul + gemm) / 1e9)


def test_model_gflop_of_an_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"nope")
    assert floor.model_gflop(path) is None
