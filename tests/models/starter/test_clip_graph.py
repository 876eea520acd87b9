"""The generated CLIP graphs: Immich's I/O contract, determinism, and a numpy re-computation of CLIP.

The numpy forward pass below is written from the CLIP architecture (pre-norm residual attention
blocks, QuickGELU, class-token / end-token pooling) and reads the graph's weights by name, so a
wrong head split, mask direction, pooling position or normalization in the ONNX graph shows up as
a mismatch.
"""

from __future__ import annotations

import hashlib

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from immich_ml.models.starter.clip_graph import VIT_TINY, ClipSpec, build_textual, build_visual

F32 = npt.NDArray[np.float32]
SEED = 5
SOT, EOT = 49406, 49407


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def visual() -> onnx.ModelProto:
    return build_visual(VIT_TINY, SEED)


@pytest.fixture(scope="module")
def textual() -> onnx.ModelProto:
    return build_textual(VIT_TINY, SEED)


def _weights(model: onnx.ModelProto) -> dict[str, F32]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _tokens(*ids: int, pad: int = EOT) -> npt.NDArray[np.int32]:
    row = np.full((1, 77), pad, dtype=np.int32)
    row[0, : len(ids)] = ids
    return row


# --- an independent CLIP forward pass in numpy ------------------------------------------------


def _layer_norm(x: F32, w: dict[str, F32], prefix: str) -> F32:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    out: F32 = (x - mean) / np.sqrt(var + 1e-5) * w[f"{prefix}.weight"] + w[f"{prefix}.bias"]
    return out


def _block(x: F32, w: dict[str, F32], p: str, heads: int, causal: bool) -> F32:
    n, width = x.shape
    h = _layer_norm(x, w, f"{p}.ln_1")
    qkv = h @ w[f"{p}.attn.in_proj.weight_t"] + w[f"{p}.attn.in_proj.bias"]
    q, k, v = np.split(qkv, 3, axis=-1)
    d = width // heads
    out = np.empty_like(x)
    for head in range(heads):
        cols = slice(head * d, (head + 1) * d)
        scores = (q[:, cols] / np.sqrt(d)) @ k[:, cols].T
        if causal:
            scores = np.where(np.tril(np.ones((n, n), dtype=bool)), scores, -np.inf)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        out[:, cols] = (scores / scores.sum(-1, keepdims=True)) @ v[:, cols]
    x = x + out @ w[f"{p}.attn.out_proj.weight_t"] + w[f"{p}.attn.out_proj.bias"]
    h = _layer_norm(x, w, f"{p}.ln_2")
    f = h @ w[f"{p}.mlp.c_fc.weight_t"] + w[f"{p}.mlp.c_fc.bias"]
    f = f / (1 + np.exp(-1.702 * f))
    result: F32 = x + f @ w[f"{p}.mlp.c_proj.weight_t"] + w[f"{p}.mlp.c_proj.bias"]
    return result


def numpy_visual(image: F32, w: dict[str, F32], spec: ClipSpec) -> F32:
    p, g = spec.patch_size, spec.grid
    # patches in row-major grid order, each flattened channel-first like the conv kernel
    patches = image[0].reshape(3, g, p, g, p).transpose(1, 3, 0, 2, 4).reshape(g * g, -1)
    x = patches @ w["visual.conv1.weight"].reshape(spec.vision_width, -1).T
    x = np.concatenate([w["visual.class_embedding"].reshape(1, -1), x]) + w["visual.positional_embedding"]
    x = _layer_norm(x, w, "visual.ln_pre")
    for layer in range(spec.vision_layers):
        x = _block(x, w, f"visual.transformer.resblocks.{layer}", spec.vision_heads, causal=False)
    y = _layer_norm(x[0], w, "visual.ln_post") @ w["visual.proj"]
    return y / np.linalg.norm(y)


def numpy_textual(tokens: npt.NDArray[np.int32], w: dict[str, F32], spec: ClipSpec) -> F32:
    x = w["token_embedding.weight"][tokens[0]] + w["positional_embedding"]
    for layer in range(spec.text_layers):
        x = _block(x, w, f"transformer.resblocks.{layer}", spec.text_heads, causal=True)
    x = _layer_norm(x, w, "ln_final")
    y: F32 = x[int(np.argmax(tokens[0]))] @ w["text_projection"]
    return y / np.linalg.norm(y)


# --- tests ------------------------------------------------------------------------------------


def test_io_matches_immich_exports(visual: onnx.ModelProto, textual: onnx.ModelProto) -> None:
    v, t = _session(visual), _session(textual)
    assert [(i.name, i.shape, i.type) for i in v.get_inputs()] == [("image", [1, 3, 224, 224], "tensor(float)")]
    assert [(o.name, o.shape) for o in v.get_outputs()] == [("embedding", [1, VIT_TINY.embed_dim])]
    assert [(i.name, i.shape, i.type) for i in t.get_inputs()] == [("text", [1, 77], "tensor(int32)")]
    assert [(o.name, o.shape) for o in t.get_outputs()] == [("embedding", [1, VIT_TINY.embed_dim])]
    onnx.checker.check_model(visual, full_check=True)
    onnx.checker.check_model(textual, full_check=True)


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    def digest(model: onnx.ModelProto) -> str:
        return hashlib.sha256(model.SerializeToString()).hexdigest()

    assert digest(build_visual(VIT_TINY, SEED)) == digest(build_visual(VIT_TINY, SEED))
    assert digest(build_textual(VIT_TINY, SEED)) == digest(build_textual(VIT_TINY, SEED))
    assert digest(build_visual(VIT_TINY, SEED + 1)) != digest(build_visual(VIT_TINY, SEED))
    assert digest(build_textual(VIT_TINY, SEED + 1)) != digest(build_textual(VIT_TINY, SEED))


def test_visual_matches_numpy_clip(visual: onnx.ModelProto) -> None:
    rng = np.random.default_rng(0)
    session, weights = _session(visual), _weights(visual)
    for _ in range(3):
        image = rng.standard_normal((1, 3, 224, 224)).astype(np.float32)
        got = session.run(None, {"image": image})[0][0]
        np.testing.assert_allclose(got, numpy_visual(image, weights, VIT_TINY), atol=2e-5)


def test_textual_matches_numpy_clip(textual: onnx.ModelProto) -> None:
    rng = np.random.default_rng(1)
    session, weights = _session(textual), _weights(textual)
    for length in (0, 5, 40, 75):
        tokens = _tokens(SOT, *rng.integers(0, 49406, length).tolist(), EOT)
        got = session.run(None, {"text": tokens})[0][0]
        np.testing.assert_allclose(got, numpy_textual(tokens, weights, VIT_TINY), atol=2e-5)


def test_embeddings_are_unit_length_and_depend_on_the_input(
    visual: onnx.ModelProto, textual: onnx.ModelProto
) -> None:
    rng = np.random.default_rng(2)
    v = _session(visual)
    images = [rng.uniform(-2, 2, (1, 3, 224, 224)).astype(np.float32) for _ in range(3)]
    images.append(np.zeros((1, 3, 224, 224), np.float32))
    emb = np.concatenate([v.run(None, {"image": i})[0] for i in images])
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert np.all(np.isfinite(emb))
    cosine = emb @ emb.T
    assert np.all(cosine[~np.eye(4, dtype=bool)] < 0.999)

    t = _session(textual)
    texts = [_tokens(SOT, 320, 1125, 539, 320, 2368, EOT), _tokens(SOT, 320, 1125, 539, 320, 1929, EOT)]
    temb = np.concatenate([t.run(None, {"text": x})[0] for x in texts])
    np.testing.assert_allclose(np.linalg.norm(temb, axis=1), 1.0, atol=1e-5)
    assert float(temb[0] @ temb[1]) < 0.999


def test_text_features_come_from_the_end_token(textual: onnx.ModelProto) -> None:
    t = _session(textual)
    base = _tokens(SOT, 320, 1125, 539, EOT)
    reference = t.run(None, {"text": base})[0]
    # open_clip pads with 0, Immich with <|endoftext|>; junk after the end token is invisible too
    for variant in (_tokens(SOT, 320, 1125, 539, EOT, pad=0), _tokens(SOT, 320, 1125, 539, EOT, 5, 6, 7, pad=9)):
        np.testing.assert_array_equal(t.run(None, {"text": variant})[0], reference)
    # ...while any token before it changes the result
    changed = t.run(None, {"text": _tokens(SOT, 320, 1125, 540, EOT)})[0]
    assert np.abs(changed - reference).max() > 1e-3
