"""Small but non-trivial ONNX graphs for backend tests and the memory benchmark.

Built with ``onnx.helper`` and seeded random weights: the shapes and names follow the real
models (ArcFace ``[batch,3,112,112] -> [batch,512]``), so providers see realistic activations.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _conv_block(nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto], rng: np.random.Generator,
                name: str, src: str, cin: int, cout: int, stride: int) -> str:
    w = rng.standard_normal((cout, cin, 3, 3)).astype(np.float32) * np.float32(np.sqrt(2.0 / (cin * 9)))
    b = rng.uniform(-0.05, 0.05, cout).astype(np.float32)
    slope = np.full((cout, 1, 1), 0.25, np.float32)
    inits += [numpy_helper.from_array(w, f"{name}_w"), numpy_helper.from_array(b, f"{name}_b"),
              numpy_helper.from_array(slope, f"{name}_slope")]
    nodes.append(helper.make_node("Conv", [src, f"{name}_w", f"{name}_b"], [f"{name}_c"],
                                  pads=[1, 1, 1, 1], strides=[stride, stride]))
    nodes.append(helper.make_node("PRelu", [f"{name}_c", f"{name}_slope"], [f"{name}_out"]))
    return f"{name}_out"


def arcface_like(path: Path, *, batch: str | int = "batch", width: int = 32, embed: int = 512,
                 input_name: str = "input.1", output_name: str = "683", seed: int = 0) -> Path:
    """ArcFace-shaped recognizer: float32 ``[batch,3,112,112]`` -> ``[batch,embed]``.

    Four stride-2 conv+PReLU stages (112 -> 7), flatten, Gemm. ``width`` scales the channels; at 32
    one face's activations are ~1.6 MB, so batch-size-driven memory growth is visible.
    """
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    x = input_name
    channels = [3, width, width * 2, width * 4, width * 4]
    for i in range(4):
        x = _conv_block(nodes, inits, rng, f"s{i}", x, channels[i], channels[i + 1], 2)
    flat = channels[-1] * 7 * 7
    fc = (rng.standard_normal((embed, flat)) / np.sqrt(flat)).astype(np.float32)
    inits.append(numpy_helper.from_array(fc, "fc_w"))
    inits.append(numpy_helper.from_array(np.zeros(embed, np.float32), "fc_b"))
    nodes.append(helper.make_node("Flatten", [x], ["flat"], axis=1))
    nodes.append(helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], [output_name], transB=1))
    graph = helper.make_graph(
        nodes, "arcface_like",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [batch, 3, 112, 112])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [batch, embed])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def faces(n: int, seed: int = 1) -> np.ndarray:
    """``n`` smooth pseudo-face inputs, float32 (n,3,112,112) in [-1,1] (like (px-127.5)/127.5)."""
    rng = np.random.default_rng(seed)
    low = rng.uniform(-1, 1, (n, 3, 14, 14)).astype(np.float32)
    return np.ascontiguousarray(np.repeat(np.repeat(low, 8, axis=2), 8, axis=3))


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two (n, d) arrays, computed in float64."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return (a64 * b64).sum(1) / (np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1))


def fold_dequantize(model: onnx.ModelProto) -> onnx.ModelProto:
    """Replace every DequantizeLinear over initializers with its float32 result (numpy).

    Follows the ONNX definition: ``y = (x - zero_point) * scale``; per-tensor (scalar scale),
    per-axis (``axis``), or blocked (``block_size``: each scale covers that many elements along
    ``axis``). OpenVINO's ONNX frontend rejects blocked DequantizeLinear (the starter SFace has 29),
    so the OpenVINO parity tests fold them the way offline-models.md describes.
    """
    folded = onnx.ModelProto()
    folded.CopyFrom(model)
    graph = folded.graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    keep_nodes = []
    new_inits: dict[str, np.ndarray] = {}
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or not all(i in inits for i in node.input if i):
            keep_nodes.append(node)
            continue
        attrs = {a.name: a.i for a in node.attribute}
        x = inits[node.input[0]].astype(np.float64)
        scale = inits[node.input[1]].astype(np.float64)
        zero = inits[node.input[2]].astype(np.float64) if len(node.input) > 2 and node.input[2] else np.zeros_like(scale)
        axis = attrs.get("axis", 1) % max(x.ndim, 1)
        block = attrs.get("block_size", 0)
        if scale.ndim == 0 or scale.size == 1:
            y = (x - zero.reshape(())) * scale.reshape(())
        else:
            if block:
                scale = np.repeat(scale, block, axis=axis).take(range(x.shape[axis]), axis=axis)
                zero = np.repeat(zero, block, axis=axis).take(range(x.shape[axis]), axis=axis)
            else:
                shape = [1] * x.ndim
                shape[axis] = -1
                scale, zero = scale.reshape(shape), zero.reshape(shape)
            y = (x - zero) * scale
        new_inits[node.output[0]] = y.astype(np.float32)
    used = {i for n in keep_nodes for i in n.input} | {o.name for o in graph.output}
    survivors = [t for t in graph.initializer if t.name in used]
    del graph.node[:]
    graph.node.extend(keep_nodes)
    del graph.initializer[:]
    graph.initializer.extend(survivors)
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in new_inits.items())
    return folded
