"""Tiny ONNX graphs with the real models' input/output names and shapes, shared by everyone's tests.

Each builder returns an ``onnx.ModelProto`` whose numbers are easy to predict from numpy:

* :func:`clip_visual`: ``image`` float32 ``[1,3,S,S]`` (or fused uint8 ``[1,S,S,3]``) →
  ``embedding`` ``[1,D]`` = L2-normalise(flatten(NCHW image) @ W).
* :func:`clip_textual`: ``text`` int32 ``[1,C]`` → ``embedding`` = L2-normalise(ids @ W); with
  ``mclip=True`` inputs ``input_ids`` + ``attention_mask`` and ids * mask.
* :func:`scrfd`: ``input.1`` ``[1,3,H,W]`` → 9 SCRFD heads holding constants you choose
  (:class:`Face`), so expected boxes and landmarks are hand-computable (:func:`expected_face`).
* :func:`arcface`: ``input.1`` ``[batch,3,112,112]`` → ``[batch,D]`` = mean-pool 8×8 → flatten → @ W
  (not normalised, like ArcFace).

Weights come from :func:`weights` (seeded), so tests recompute outputs with numpy.
Also: :func:`tokenizer_json` (a small word-level tokenizer in Hugging Face format) and
:func:`clip_repo` / :func:`face_repo` (whole repositories in Immich's layout, as ``{path: bytes}``)
plus :func:`write_repo`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def weights(rows: int, cols: int, seed: int) -> npt.NDArray[np.float32]:
    """Deterministic float32 ``(rows, cols)`` weights in [-1, 1)."""
    return np.random.default_rng(seed).uniform(-1.0, 1.0, (rows, cols)).astype(np.float32)


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def l2_normalize(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    x64 = x.astype(np.float64)
    return (x64 / np.linalg.norm(x64, axis=-1, keepdims=True)).astype(np.float32)


# --- CLIP ----------------------------------------------------------------------------------------


def clip_visual(
    size: int = 32,
    dim: int = 16,
    *,
    fused: bool = False,
    mean: Sequence[float] = OPENAI_MEAN,
    std: Sequence[float] = OPENAI_STD,
    seed: int = 0,
) -> onnx.ModelProto:
    """CLIP image tower stand-in. Weights: ``weights(3*size*size, dim, seed)``. Fused graphs take
    raw uint8 NHWC pixels and normalise with ``mean``/``std`` (for pixels /255) inside the graph."""
    w = weights(3 * size * size, dim, seed)
    nodes = []
    inits = [numpy_helper.from_array(w, "w")]
    if fused:
        image = helper.make_tensor_value_info("image", TensorProto.UINT8, [1, size, size, 3])
        inits += [
            numpy_helper.from_array(np.array(1 / 255, dtype=np.float32), "inv255"),
            numpy_helper.from_array(np.array(mean, dtype=np.float32), "mean"),
            numpy_helper.from_array(np.array(std, dtype=np.float32), "std"),
        ]
        nodes += [
            helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["f", "inv255"], ["scaled"]),
            helper.make_node("Sub", ["scaled", "mean"], ["centred"]),
            helper.make_node("Div", ["centred", "std"], ["normed"]),
            helper.make_node("Transpose", ["normed"], ["nchw"], perm=[0, 3, 1, 2]),
        ]
        source = "nchw"
    else:
        image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, size, size])
        source = "image"
    nodes += [
        helper.make_node("Flatten", [source], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "w"], ["proj"]),
        helper.make_node("LpNormalization", ["proj"], ["embedding"], axis=1, p=2),
    ]
    out = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, dim])
    return _model(helper.make_graph(nodes, "clip_visual", [image], [out], inits))


def clip_visual_reference(nchw: npt.NDArray[np.float32], size: int = 32, dim: int = 16, seed: int = 0
                          ) -> npt.NDArray[np.float32]:
    """What :func:`clip_visual` outputs for a normalised float32 ``(1,3,S,S)`` input, ``(D,)``."""
    return l2_normalize(nchw.reshape(1, -1) @ weights(3 * size * size, dim, seed))[0]


def clip_textual(
    context: int = 77, dim: int = 16, *, mclip: bool = False, seed: int = 1, dtype: int = TensorProto.INT32
) -> onnx.ModelProto:
    """CLIP text tower stand-in: embedding = L2-normalise(float(ids [* mask]) @ weights(context, dim, seed))."""
    w = weights(context, dim, seed)
    if mclip:
        inputs = [
            helper.make_tensor_value_info("input_ids", dtype, [1, context]),
            helper.make_tensor_value_info("attention_mask", dtype, [1, context]),
        ]
        nodes = [
            helper.make_node("Cast", ["input_ids"], ["ids"], to=TensorProto.FLOAT),
            helper.make_node("Cast", ["attention_mask"], ["mask"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["ids", "mask"], ["masked"]),
        ]
        source = "masked"
    else:
        inputs = [helper.make_tensor_value_info("text", dtype, [1, context])]
        nodes = [helper.make_node("Cast", ["text"], ["ids"], to=TensorProto.FLOAT)]
        source = "ids"
    nodes += [
        helper.make_node("MatMul", [source, "w"], ["proj"]),
        helper.make_node("LpNormalization", ["proj"], ["embedding"], axis=1, p=2),
    ]
    out = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, dim])
    return _model(helper.make_graph(nodes, "clip_textual", inputs, [out], [numpy_helper.from_array(w, "w")]))


def clip_textual_reference(ids: Sequence[int], mask: Sequence[int] | None = None, context: int = 77,
                           dim: int = 16, seed: int = 1) -> npt.NDArray[np.float32]:
    """What :func:`clip_textual` outputs for these token ids (and mask), ``(D,)``."""
    x = np.asarray(ids, dtype=np.float32)
    if mask is not None:
        x = x * np.asarray(mask, dtype=np.float32)
    return l2_normalize(x[None] @ weights(context, dim, seed))[0]


def tokenizer_json(words: Sequence[str], *, start: str = "<|startoftext|>", end: str = "<|endoftext|>",
                   unk: str = "<unk>", extra: Sequence[str] = ()) -> bytes:
    """A word-level Hugging Face tokenizer: lower-cases, splits on whitespace and punctuation, wraps
    every text in ``start … end``. Ids: ``unk`` 0, ``start`` 1, ``end`` 2, ``extra`` next, then words."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel

    vocab: dict[str, int] = {}
    for token in (unk, start, end, *extra, *words):
        vocab.setdefault(token, len(vocab))
    tokenizer = Tokenizer(WordLevel(vocab, unk_token=unk))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{start} $A {end}", special_tokens=[(start, vocab[start]), (end, vocab[end])]
    )
    tokenizer.add_special_tokens([unk, start, end, *extra])
    return tokenizer.to_str().encode()


# --- faces ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Face:
    """One SCRFD anchor set to fire: grid cell (row, col) at ``stride``, anchor index, its score,
    box distances (left, top, right, bottom) and 5 keypoint offsets (x, y), all in stride units."""

    stride: int
    row: int
    col: int
    score: float
    distances: tuple[float, float, float, float] = (2.0, 2.0, 2.0, 2.0)
    keypoints: tuple[tuple[float, float], ...] = ((-1, -1), (1, -1), (0, 0), (-1, 1), (1, 1))
    anchor: int = 0


def expected_face(face: Face, scale: float = 1.0) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(box xyxy, landmarks (5,2)) in source pixels that a correct decoder finds for ``face``, when
    the image was letterboxed with ``scale`` = model pixels per source pixel."""
    cx, cy, s = face.col * face.stride, face.row * face.stride, face.stride
    d = face.distances
    box = np.array([cx - d[0] * s, cy - d[1] * s, cx + d[2] * s, cy + d[3] * s], dtype=np.float64)
    kps = np.array([[cx + kx * s, cy + ky * s] for kx, ky in face.keypoints], dtype=np.float64)
    return box / scale, kps / scale


def scrfd(
    size: int | tuple[int, int] = 640,
    faces: Sequence[Face] = (),
    *,
    strides: Sequence[int] = (8, 16, 32),
    anchors: int = 2,
    batch_axis: bool = True,
    named: bool = True,
    input_name: str = "input.1",
) -> onnx.ModelProto:
    """SCRFD-shaped detector whose 9 heads hold constants (plus 0 × the input mean, so the input is
    used). Outputs in InsightFace order: score_8/16/32, bbox_8/16/32, kps_8/16/32; each ``[1,N,C]``
    (``batch_axis``) or ``[N,C]``. ``named=False`` gives them opaque names (positional decoding)."""
    height, width = (size, size) if isinstance(size, int) else size
    heads: dict[str, list[npt.NDArray[np.float32]]] = {"score": [], "bbox": [], "kps": []}
    for stride in strides:
        count = (height // stride) * (width // stride) * anchors
        score = np.zeros((count, 1), np.float32)
        bbox = np.ones((count, 4), np.float32)
        kps = np.zeros((count, 10), np.float32)
        for face in faces:
            if face.stride != stride:
                continue
            index = (face.row * (width // stride) + face.col) * anchors + face.anchor
            score[index, 0] = face.score
            bbox[index] = face.distances
            kps[index] = np.asarray(face.keypoints, dtype=np.float32).reshape(-1)
        heads["score"].append(score)
        heads["bbox"].append(bbox)
        heads["kps"].append(kps)
    nodes = [
        helper.make_node("ReduceMean", [input_name], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
    ]
    inits = [numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero")]
    outputs = []
    for kind in ("score", "bbox", "kps"):
        for i, (stride, value) in enumerate(zip(strides, heads[kind], strict=True)):
            value = value[None] if batch_axis else value
            name = f"{kind}_{stride}" if named else f"{440 + len(outputs)}"
            inits.append(numpy_helper.from_array(value, f"const_{kind}_{i}"))
            nodes.append(helper.make_node("Add", [f"const_{kind}_{i}", "nothing"], [name]))
            outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(value.shape)))
    image = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [1, 3, height, width])
    return _model(helper.make_graph(nodes, "scrfd", [image], outputs, inits))


def arcface(
    dim: int = 512, *, batch: int | str = "batch", input_name: str = "input.1", seed: int = 2,
    output_name: str = "output",
) -> onnx.ModelProto:
    """ArcFace-shaped recognizer: ``[batch,3,112,112]`` → mean-pool 8×8 → flatten (588) → @
    ``weights(588, dim, seed)`` → ``[batch, dim]``. Deterministic, input-dependent, not normalised."""
    w = weights(3 * 14 * 14, dim, seed)
    nodes = [
        helper.make_node("AveragePool", [input_name], ["pooled"], kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "w"], [output_name]),
    ]
    image = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [batch, 3, 112, 112])
    out = helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [batch, dim])
    return _model(helper.make_graph(nodes, "arcface", [image], [out], [numpy_helper.from_array(w, "w")]))


def arcface_reference(crops_nchw: npt.NDArray[np.float32], dim: int = 512, seed: int = 2
                      ) -> npt.NDArray[np.float32]:
    """What :func:`arcface` outputs for normalised ``(B,3,112,112)`` crops, ``(B, dim)``."""
    b = crops_nchw.shape[0]
    pooled = crops_nchw.reshape(b, 3, 14, 8, 14, 8).mean(axis=(3, 5))
    return (pooled.reshape(b, -1) @ weights(3 * 14 * 14, dim, seed)).astype(np.float32)


# --- repositories in Immich's layout -------------------------------------------------------------


@dataclass(frozen=True)
class ClipRepo:
    """Options for :func:`clip_repo`."""

    size: int = 32
    dim: int = 16
    context: int = 77
    mclip: bool = False
    fused: bool = False
    resize_mode: str | None = "shortest"
    interpolation: str = "bicubic"
    mean: Sequence[float] = OPENAI_MEAN
    std: Sequence[float] = OPENAI_STD
    words: Sequence[str] = ("a", "photo", "of", "dog", "cat", "forest", "the", "hund", "wald")
    pad_token: str = "<|endoftext|>"
    canonicalize: bool = False
    extra_config: Mapping[str, object] = field(default_factory=dict)


def clip_repo(options: ClipRepo = ClipRepo()) -> dict[str, bytes]:
    """Every file of an Immich CLIP repository: config.json, visual/*, textual/*."""
    text_cfg: dict[str, object] = {"context_length": options.context, "vocab_size": 1000, "width": 8}
    if options.canonicalize:
        text_cfg["tokenizer_kwargs"] = {"clean": "canonicalize"}
    config = {"embed_dim": options.dim, "vision_cfg": {"image_size": options.size}, "text_cfg": text_cfg,
              **options.extra_config}
    preprocess: dict[str, object] = {"size": [options.size, options.size], "mode": "RGB",
                                     "mean": list(options.mean), "std": list(options.std),
                                     "interpolation": options.interpolation, "fill_color": 0}
    if options.resize_mode is not None:
        preprocess["resize_mode"] = options.resize_mode
    visual = clip_visual(options.size, options.dim, fused=options.fused, mean=options.mean, std=options.std)
    textual = clip_textual(options.context, options.dim, mclip=options.mclip)
    extra = (options.pad_token,) if options.pad_token not in ("<|endoftext|>", "<unk>") else ()
    return {
        "config.json": json.dumps(config).encode(),
        "visual/model.onnx": visual.SerializeToString(),
        "visual/preprocess_cfg.json": json.dumps(preprocess).encode(),
        "textual/model.onnx": textual.SerializeToString(),
        "textual/tokenizer.json": tokenizer_json(options.words, extra=extra),
        "textual/tokenizer_config.json": json.dumps({"pad_token": options.pad_token}).encode(),
    }


def face_repo(detector: onnx.ModelProto | None = None, recognizer: onnx.ModelProto | None = None
              ) -> dict[str, bytes]:
    """An Immich face repository: detection/model.onnx and recognition/model.onnx."""
    return {
        "detection/model.onnx": (detector or scrfd()).SerializeToString(),
        "recognition/model.onnx": (recognizer or arcface()).SerializeToString(),
    }


def write_repo(root: Path, files: Mapping[str, bytes]) -> Path:
    """Write ``files`` (paths relative to ``root``) and return ``root``."""
    for relative, data in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root
