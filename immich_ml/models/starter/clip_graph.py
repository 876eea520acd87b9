"""Architecture-faithful OpenAI CLIP towers as ONNX graphs with random weights (no torch needed).

The graphs follow OpenAI's CLIP code path for path: the same layers, shapes, activation
(QuickGELU), pre-norm residual attention blocks, causal text mask, end-token pooling and L2
normalization, with the inputs and outputs of Immich's ONNX exports:

* visual: ``image`` float32 [1,3,S,S] (normalized RGB, NCHW) -> ``embedding`` float32 [1,E]
* textual: ``text`` int32 [1,77] (token ids) -> ``embedding`` float32 [1,E]

The weights are random (a fixed seed, OpenAI's initialization scales), so the embeddings carry no
meaning: they exercise loading, preprocessing, tokenizing and inference code, and each input still
gets its own finite, unit-length embedding. Internally every reshape keeps the batch dimension
symbolic, so a copy with a symbolic input batch runs batches too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17  # first opset with LayerNormalization
IR_VERSION = 8  # loadable by every onnxruntime >= 1.13
LAYER_NORM_EPS = 1e-5
QUICK_GELU_ALPHA = 1.702
NORM_EPS = 1e-12


@dataclass(frozen=True)
class ClipSpec:
    """Sizes of an open_clip ViT CLIP. Heads are ``width // head_width`` as in open_clip configs."""

    embed_dim: int
    image_size: int
    patch_size: int
    vision_width: int
    vision_layers: int
    vision_head_width: int
    context_length: int
    vocab_size: int
    text_width: int
    text_layers: int
    text_heads: int

    @property
    def vision_heads(self) -> int:
        return self.vision_width // self.vision_head_width

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


VIT_B_32 = ClipSpec(
    embed_dim=512, image_size=224, patch_size=32, vision_width=768, vision_layers=12, vision_head_width=64,
    context_length=77, vocab_size=49408, text_width=512, text_layers=12, text_heads=8,
)  # fmt: skip
VIT_TINY = ClipSpec(
    embed_dim=64, image_size=224, patch_size=32, vision_width=64, vision_layers=2, vision_head_width=32,
    context_length=77, vocab_size=49408, text_width=64, text_layers=2, text_heads=2,
)  # fmt: skip


class _Graph:
    """Collects nodes and initializers; draws weights from one seeded generator in a fixed order."""

    def __init__(self, seed: int, stream: int) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._rng = np.random.default_rng([seed, stream])
        self._count = 0

    def tensor(self, name: str, array: npt.NDArray[np.generic]) -> str:
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def normal(self, name: str, shape: tuple[int, ...], std: float) -> str:
        values = self._rng.standard_normal(shape, dtype=np.float32)
        values *= np.float32(std)
        return self.tensor(name, values)

    def fill(self, name: str, shape: tuple[int, ...], value: float) -> str:
        return self.tensor(name, np.full(shape, value, dtype=np.float32))

    def const(self, name: str, values: list[int] | list[float] | float, dtype: type[np.generic]) -> str:
        return self.tensor(name, np.asarray(values, dtype=dtype))

    def op(self, op_type: str, *inputs: str, **attrs: Any) -> str:
        self._count += 1
        out = f"{op_type.lower()}_{self._count}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=f"n{self._count}", **attrs))
        return out

    def layer_norm(self, x: str, prefix: str, width: int) -> str:
        gamma = self.fill(f"{prefix}.weight", (width,), 1.0)
        beta = self.fill(f"{prefix}.bias", (width,), 0.0)
        return self.op("LayerNormalization", x, gamma, beta, axis=-1, epsilon=LAYER_NORM_EPS)

    def linear(self, x: str, prefix: str, fan_in: int, fan_out: int, std: float, bias_std: float) -> str:
        """``x @ W + b`` with W stored [fan_in, fan_out] (PyTorch's weight, transposed)."""
        weight = self.normal(f"{prefix}.weight_t", (fan_in, fan_out), std)
        bias = self.normal(f"{prefix}.bias", (fan_out,), bias_std)
        return self.op("Add", self.op("MatMul", x, weight), bias)


def _transformer(g: _Graph, x: str, prefix: str, width: int, layers: int, heads: int, mask: str | None) -> str:
    """OpenAI's ``Transformer``: ``layers`` pre-norm residual blocks on x [B, N, width]."""
    head_dim = width // heads
    attn_std = width**-0.5
    proj_std = width**-0.5 * (2 * layers) ** -0.5
    fc_std = (2 * width) ** -0.5
    split = g.const(f"{prefix}.qkv_split", [width] * 3, np.int64)
    to_heads = g.const(f"{prefix}.to_heads", [0, 0, heads, head_dim], np.int64)
    from_heads = g.const(f"{prefix}.from_heads", [0, 0, width], np.int64)
    scale = g.const(f"{prefix}.attn_scale", float(head_dim) ** -0.5, np.float32)
    alpha = g.const(f"{prefix}.quick_gelu_alpha", QUICK_GELU_ALPHA, np.float32)
    for layer in range(layers):
        p = f"{prefix}.resblocks.{layer}"
        # attention: one packed q/k/v projection, heads split from the width axis
        h = g.layer_norm(x, f"{p}.ln_1", width)
        qkv = g.linear(h, f"{p}.attn.in_proj", width, 3 * width, attn_std, 0.0)
        q, k, v = (f"{p}.{n}" for n in "qkv")
        g.nodes.append(helper.make_node("Split", [qkv, split], [q, k, v], name=f"{p}.split", axis=-1))
        q = g.op("Transpose", g.op("Reshape", q, to_heads), perm=[0, 2, 1, 3])  # [B,H,N,D]
        k = g.op("Transpose", g.op("Reshape", k, to_heads), perm=[0, 2, 3, 1])  # [B,H,D,N]
        v = g.op("Transpose", g.op("Reshape", v, to_heads), perm=[0, 2, 1, 3])  # [B,H,N,D]
        scores = g.op("MatMul", g.op("Mul", q, scale), k)  # [B,H,N,N]
        if mask is not None:
            scores = g.op("Add", scores, mask)
        attn = g.op("MatMul", g.op("Softmax", scores, axis=-1), v)
        attn = g.op("Reshape", g.op("Transpose", attn, perm=[0, 2, 1, 3]), from_heads)  # [B,N,W]
        x = g.op("Add", x, g.linear(attn, f"{p}.attn.out_proj", width, width, proj_std, 0.0))
        # MLP with QuickGELU: x * sigmoid(1.702 x)
        h = g.layer_norm(x, f"{p}.ln_2", width)
        f = g.linear(h, f"{p}.mlp.c_fc", width, 4 * width, fc_std, 0.01)
        f = g.op("Mul", f, g.op("Sigmoid", g.op("Mul", f, alpha)))
        x = g.op("Add", x, g.linear(f, f"{p}.mlp.c_proj", 4 * width, width, proj_std, 0.01))
    return x


def _normalize(g: _Graph, x: str) -> str:
    """Rows divided by max(L2 norm, 1e-12), like ``F.normalize(x, dim=-1)``."""
    eps = g.const("normalize_eps", NORM_EPS, np.float32)
    norm = g.op("Max", g.op("ReduceL2", x, axes=[-1], keepdims=1), eps)
    return g.op("Div", x, norm)


def _model(g: _Graph, name: str, inp: onnx.ValueInfoProto, out_name: str, out_dim: int, doc: str) -> onnx.ModelProto:
    last = g.nodes[-1]
    assert list(last.output) == [out_name], "the embedding must come from the last node"
    last.output[0] = "embedding"
    output = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, out_dim])
    graph = helper.make_graph(g.nodes, name, [inp], [output], initializer=g.initializers)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="immich_ml.models.starter",
        doc_string=doc,
    )
    model.ir_version = IR_VERSION
    return model


def build_visual(spec: ClipSpec, seed: int, doc: str = "") -> onnx.ModelProto:
    """The image tower: ``image`` float32 [1,3,S,S] -> ``embedding`` float32 [1,E], unit L2 norm.

    conv patch embedding (no bias) -> class token + positional embedding -> ln_pre -> transformer
    -> ln_post on the class token -> projection -> L2 normalization.
    """
    g = _Graph(seed, stream=1)
    w, tokens = spec.vision_width, spec.grid * spec.grid + 1
    scale = w**-0.5
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, spec.image_size, spec.image_size])
    fan_in = 3 * spec.patch_size * spec.patch_size
    conv = g.normal("visual.conv1.weight", (w, 3, spec.patch_size, spec.patch_size), fan_in**-0.5)
    x = g.op("Conv", "image", conv, kernel_shape=[spec.patch_size] * 2, strides=[spec.patch_size] * 2)
    x = g.op("Reshape", x, g.const("visual.flatten_grid", [0, w, -1], np.int64))
    x = g.op("Transpose", x, perm=[0, 2, 1])  # [B, grid*grid, W]
    # the class token, broadcast over the batch and put in front of the patch tokens
    cls = g.normal("visual.class_embedding", (1, 1, w), scale)
    batch = g.op("Shape", x, start=0, end=1)
    cls = g.op("Expand", cls, g.op("Concat", batch, g.const("visual.cls_tail", [1, w], np.int64), axis=0))
    x = g.op("Concat", cls, x, axis=1)  # [B, tokens, W]
    x = g.op("Add", x, g.normal("visual.positional_embedding", (tokens, w), scale))
    x = g.layer_norm(x, "visual.ln_pre", w)
    x = _transformer(g, x, "visual.transformer", w, spec.vision_layers, spec.vision_heads, None)
    x = g.op("Gather", x, g.const("visual.class_index", 0, np.int64), axis=1)  # [B, W]
    x = g.layer_norm(x, "visual.ln_post", w)
    x = g.op("MatMul", x, g.normal("visual.proj", (w, spec.embed_dim), scale))
    return _model(g, "clip_visual", image, _normalize(g, x), spec.embed_dim, doc)


def build_textual(spec: ClipSpec, seed: int, doc: str = "") -> onnx.ModelProto:
    """The text tower: ``text`` int32 [1,77] -> ``embedding`` float32 [1,E], unit L2 norm.

    token + positional embedding -> causal transformer -> ln_final -> the features at the position
    of the highest token id (the first ``<|endoftext|>``) -> projection -> L2 normalization.
    """
    g = _Graph(seed, stream=2)
    w, n = spec.text_width, spec.context_length
    text = helper.make_tensor_value_info("text", TensorProto.INT32, [1, n])
    x = g.op("Gather", g.normal("token_embedding.weight", (spec.vocab_size, w), 0.02), "text", axis=0)
    x = g.op("Add", x, g.normal("positional_embedding", (n, w), 0.01))
    causal = np.triu(np.full((n, n), -np.inf, dtype=np.float32), k=1)  # position i sees 0..i
    mask = g.tensor("attn_mask", causal)
    x = _transformer(g, x, "transformer", w, spec.text_layers, spec.text_heads, mask)
    x = g.layer_norm(x, "ln_final", w)
    # x[b, argmax(text[b])]: the index broadcast over the width, then GatherElements on the sequence
    eot = g.op("ArgMax", "text", axis=-1, keepdims=0)  # [B] int64
    eot = g.op("Reshape", eot, g.const("eot_index_shape", [-1, 1, 1], np.int64))
    eot = g.op("Expand", eot, g.const("eot_index_width", [1, 1, w], np.int64))  # [B,1,W]
    x = g.op("GatherElements", x, eot, axis=1)
    x = g.op("Squeeze", x, g.const("eot_squeeze_axes", [1], np.int64))  # [B, W]
    x = g.op("MatMul", x, g.normal("text_projection", (w, spec.embed_dim), w**-0.5))
    return _model(g, "clip_textual", text, _normalize(g, x), spec.embed_dim, doc)
