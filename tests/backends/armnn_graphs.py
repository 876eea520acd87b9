"""Test networks for the ARM NN bridge, written from the same weights in two formats.

``write_tflite`` emits a TensorFlow Lite flatbuffer by hand (field slots from TFLite's public
``schema.fbs``) because ARM NN reads TFLite and its own ``.armnn`` format but Debian's build has
no ONNX parser; ``make_onnx`` builds the equivalent ONNX graph with ``onnx.helper`` for ONNX
Runtime, the independent reference.

The graph is a tiny CLIP-like image tower, NHWC as TFLite graphs are::

    image (1,H,W,3) -> conv 3x3/2 SAME + bias + ReLU -> features (1,H/2,W/2,C)
                    -> mean over H,W -> fully connected -> L2 normalize -> embedding (1,D)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from immich_ml.backends.base import ModelArtifacts, Target
from immich_ml.config import Settings

# TFLite schema enums (schema.fbs): BuiltinOperator, BuiltinOptions union index, TensorType.
_CONV_2D, _FULLY_CONNECTED, _L2_NORMALIZATION, _MEAN = 3, 9, 11, 40
_OPT_CONV2D, _OPT_FULLY_CONNECTED, _OPT_L2NORM, _OPT_REDUCER = 1, 8, 12, 27
_FLOAT32, _INT32 = 0, 2
_PADDING_SAME, _RELU, _NO_ACTIVATION = 0, 1, 0


@dataclass(frozen=True)
class TinyTower:
    """Weights of the test graph. conv_w is OHWI (TFLite layout), fc_w is (out, in)."""

    height: int
    width: int
    conv_w: npt.NDArray[np.float32]
    conv_b: npt.NDArray[np.float32]
    fc_w: npt.NDArray[np.float32]
    fc_b: npt.NDArray[np.float32]

    @property
    def channels(self) -> int:
        return int(self.conv_w.shape[0])

    @property
    def dim(self) -> int:
        return int(self.fc_w.shape[0])

    @property
    def feature_shape(self) -> tuple[int, int, int, int]:
        return (1, -(-self.height // 2), -(-self.width // 2), self.channels)


def random_tower(seed: int = 0, height: int = 16, width: int = 16, channels: int = 8, dim: int = 16) -> TinyTower:
    rng = np.random.default_rng(seed)
    return TinyTower(
        height=height,
        width=width,
        conv_w=rng.normal(0, 0.5, (channels, 3, 3, 3)).astype(np.float32),
        conv_b=rng.normal(0, 0.1, (channels,)).astype(np.float32),
        fc_w=rng.normal(0, 0.5, (dim, channels)).astype(np.float32),
        fc_b=rng.normal(0, 0.1, (dim,)).astype(np.float32),
    )


class _Writer:
    """Minimal flatbuffer table writer over flatbuffers.Builder."""

    def __init__(self) -> None:
        self.b = flatbuffers.Builder(4096)
        # Write every field given, even when it equals the schema default: explicit is clearer.
        self.b.ForceDefaults(True)

    def ints(self, values: list[int] | npt.NDArray[np.int32]) -> int:
        return int(self.b.CreateNumpyVector(np.asarray(values, dtype=np.int32)))

    def offsets(self, items: list[int]) -> int:
        self.b.StartVector(4, len(items), 4)
        for item in reversed(items):
            self.b.PrependUOffsetTRelative(item)
        return int(self.b.EndVector())

    def data(self, payload: bytes) -> int:
        # Buffer.data is declared force_align: 16.
        self.b.StartVector(1, len(payload), 16)
        self.b.head -= len(payload)
        self.b.Bytes[self.b.head : self.b.head + len(payload)] = payload
        return int(self.b.EndVector())

    def table(self, fields: list[tuple[int, str, int]], n_slots: int) -> int:
        """fields: (slot, kind, value); kind is 'off', 'i32', 'u32', 'u8', 'i8' or 'bool'."""
        prepend = {
            "i32": self.b.PrependInt32Slot,
            "u32": self.b.PrependUint32Slot,
            "u8": self.b.PrependUint8Slot,
            "i8": self.b.PrependInt8Slot,
            "bool": self.b.PrependBoolSlot,
        }
        self.b.StartObject(n_slots)
        for slot, kind, value in fields:
            if kind == "off":
                self.b.PrependUOffsetTRelativeSlot(slot, value, 0)
            else:
                prepend[kind](slot, value, 0)
        return int(self.b.EndObject())


def write_tflite(tower: TinyTower, path: Path, outputs: tuple[str, ...] = ("embedding", "features")) -> Path:
    """Write the test graph as a .tflite file with input ``image`` and the named outputs."""
    w = _Writer()
    fh, fw = tower.feature_shape[1:3]
    c, d = tower.channels, tower.dim
    # (name, shape, type, constant payload or None)
    tensors: list[tuple[str, list[int], int, bytes | None]] = [
        ("image", [1, tower.height, tower.width, 3], _FLOAT32, None),
        ("conv_w", list(tower.conv_w.shape), _FLOAT32, tower.conv_w.tobytes()),
        ("conv_b", [c], _FLOAT32, tower.conv_b.tobytes()),
        ("features", [1, fh, fw, c], _FLOAT32, None),
        ("mean_axes", [2], _INT32, np.array([1, 2], np.int32).tobytes()),
        ("pooled", [1, c], _FLOAT32, None),
        ("fc_w", [d, c], _FLOAT32, tower.fc_w.tobytes()),
        ("fc_b", [d], _FLOAT32, tower.fc_b.tobytes()),
        ("logits", [1, d], _FLOAT32, None),
        ("embedding", [1, d], _FLOAT32, None),
    ]
    buffers = [w.table([], 1)]  # buffer 0: the empty sentinel every non-constant tensor uses
    tensor_tables = []
    for name, shape, ttype, payload in tensors:
        buffer_index = 0
        if payload is not None:
            buffers.append(w.table([(0, "off", w.data(payload))], 1))
            buffer_index = len(buffers) - 1
        name_off = w.b.CreateString(name)
        shape_off = w.ints(shape)
        tensor_tables.append(
            w.table([(0, "off", shape_off), (1, "i8", ttype), (2, "u32", buffer_index), (3, "off", name_off)], 6)
        )
    conv_opts = w.table([(0, "i8", _PADDING_SAME), (1, "i32", 2), (2, "i32", 2), (3, "i8", _RELU)], 6)
    mean_opts = w.table([(0, "bool", 0)], 1)
    fc_opts = w.table([(0, "i8", _NO_ACTIVATION)], 3)
    l2_opts = w.table([(0, "i8", _NO_ACTIVATION)], 1)
    # (opcode index, inputs, outputs, options type, options)
    ops = [
        (0, [0, 1, 2], [3], _OPT_CONV2D, conv_opts),
        (1, [3, 4], [5], _OPT_REDUCER, mean_opts),
        (2, [5, 6, 7], [8], _OPT_FULLY_CONNECTED, fc_opts),
        (3, [8], [9], _OPT_L2NORM, l2_opts),
    ]
    op_tables = []
    for opcode, ins, outs, opt_type, opts in ops:
        ins_off, outs_off = w.ints(ins), w.ints(outs)
        op_tables.append(
            w.table(
                [(0, "u32", opcode), (1, "off", ins_off), (2, "off", outs_off), (3, "u8", opt_type), (4, "off", opts)],
                9,
            )
        )
    codes = [w.table([(0, "i8", code), (2, "i32", 1)], 3) for code in (_CONV_2D, _MEAN, _FULLY_CONNECTED, _L2_NORMALIZATION)]
    tensors_vec = w.offsets(tensor_tables)
    index = {name: i for i, (name, *_rest) in enumerate(tensors)}
    inputs_vec, outputs_vec = w.ints([0]), w.ints([index[name] for name in outputs])
    ops_vec = w.offsets(op_tables)
    sg_name = w.b.CreateString("main")
    subgraph = w.table(
        [(0, "off", tensors_vec), (1, "off", inputs_vec), (2, "off", outputs_vec), (3, "off", ops_vec), (4, "off", sg_name)],
        5,
    )
    codes_vec, subgraphs_vec, buffers_vec = w.offsets(codes), w.offsets([subgraph]), w.offsets(buffers)
    description = w.b.CreateString("immich_ml ARM NN test tower")
    model = w.table(
        [(0, "u32", 3), (1, "off", codes_vec), (2, "off", subgraphs_vec), (3, "off", description), (4, "off", buffers_vec)],
        7,
    )
    w.b.Finish(model, file_identifier=b"TFL3")
    path.write_bytes(bytes(w.b.Output()))
    return path


def make_onnx(tower: TinyTower, path: Path) -> Path:
    """The same graph in ONNX (NHWC input and features, as in the TFLite graph)."""
    c, d = tower.channels, tower.dim
    fh, fw = tower.feature_shape[1:3]
    # TFLite SAME with stride 2 pads the end first: total = max((out-1)*2 + 3 - in, 0).
    pad_h = max((fh - 1) * 2 + 3 - tower.height, 0)
    pad_w = max((fw - 1) * 2 + 3 - tower.width, 0)
    pads = [pad_h // 2, pad_w // 2, pad_h - pad_h // 2, pad_w - pad_w // 2]
    inits = [
        numpy_helper.from_array(tower.conv_w.transpose(0, 3, 1, 2).copy(), "conv_w"),  # OHWI -> OIHW
        numpy_helper.from_array(tower.conv_b, "conv_b"),
        numpy_helper.from_array(tower.fc_w, "fc_w"),
        numpy_helper.from_array(tower.fc_b, "fc_b"),
        numpy_helper.from_array(np.array([2, 3], np.int64), "axes"),
    ]
    nodes = [
        helper.make_node("Transpose", ["image"], ["image_nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["image_nchw", "conv_w", "conv_b"], ["conv"], strides=[2, 2], pads=pads, kernel_shape=[3, 3]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("Transpose", ["relu"], ["features"], perm=[0, 2, 3, 1]),
        helper.make_node("ReduceMean", ["relu", "axes"], ["pooled"], keepdims=0),
        helper.make_node("Gemm", ["pooled", "fc_w", "fc_b"], ["logits"], transB=1),
        helper.make_node("LpNormalization", ["logits"], ["embedding"], axis=-1, p=2),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_tower",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, tower.height, tower.width, 3])],
        [
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, d]),
            helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, fh, fw, c]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


# --- sessions over these graphs (shared by the ARM NN test modules) ------------------------------

TARGET = Target("armnn")


def settings_for(tmp_path: Path, **changes: Any) -> Settings:
    """Settings forcing ARM NN (CpuRef here) with the model cache under tmp_path."""
    fields: dict[str, Any] = {"cache_folder": tmp_path / "cache", "device": "armnn", **changes}
    return dataclasses.replace(Settings(), **fields)


def model_dir(tmp_path: Path, name: str = "tiny", kind: str = "visual") -> Path:
    """``<cache>/clip/<name>/<kind>``, Immich's layout."""
    directory = tmp_path / "cache" / "clip" / name / kind
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def artifacts(directory: Path, model: Path | None) -> ModelArtifacts:
    return ModelArtifacts(directory=directory, onnx=directory / "model.onnx", armnn=model)


def armnn_model(tmp_path: Path, tower: TinyTower, outputs: tuple[str, ...] = ("embedding",)) -> Path:
    """tower → .tflite → (bridge serializer) → <cache>/clip/tiny/visual/model.armnn, plus model.onnx."""
    from immich_ml.backends import armnn

    bridge, reason = armnn._bridge()  # loads the bridge in this process (once)
    if bridge is None:
        raise RuntimeError(reason)
    directory = model_dir(tmp_path)
    tflite = write_tflite(tower, tmp_path / f"tower-{tower.height}x{tower.width}.tflite", outputs)
    make_onnx(tower, directory / "model.onnx")
    bridge.convert(str(tflite), str(directory / "model.armnn"))
    return directory / "model.armnn"


def reference(onnx_path: Path, image: npt.NDArray[np.float32]) -> dict[str, npt.NDArray[np.float32]]:
    """ONNX Runtime (CPU) outputs by name for one NHWC image batch."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {"image": image})))


def image(tower: TinyTower, seed: int = 1, batch: int = 1) -> npt.NDArray[np.float32]:
    """Random NHWC float32 input in [-1, 1)."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (batch, tower.height, tower.width, 3)).astype(np.float32)
