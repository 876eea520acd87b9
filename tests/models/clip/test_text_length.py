"""The variable-length CLIP text graph on the real starter tokenizer and an architecture-faithful
text tower: same embeddings as the padded run, refused where the graph is not causal, cached."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from immich_ml.backends.base import Target
from immich_ml.config import Settings
from immich_ml.models.base import ModelRequest
from immich_ml.models.cache import ModelStore
from immich_ml.models.catalog import resolve
from immich_ml.models.clip import text_length
from immich_ml.models.clip.textual import OpenClipTextual, RecentEmbeddings
from immich_ml.models.clip.tokenizer import ClipTokenizer, TextConfig
from immich_ml.models.manager import ModelManager
from immich_ml.models.starter import TINY_CLIP_MODEL
from immich_ml.models.timing import Stages
from immich_ml.schemas import ModelTask, ModelType

TEXTS = ("receipt", "a dog playing on the beach", "people at a conference, black and white photo",
         " ".join(["word"] * 120))


@pytest.fixture()
def textual(starter_cache: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny starter text tower (derived files land in tmp_path)."""
    source = starter_cache / "clip" / TINY_CLIP_MODEL
    target = tmp_path / "clip" / TINY_CLIP_MODEL
    (target / "textual").mkdir(parents=True)
    shutil.copy(source / "config.json", target / "config.json")
    for name in ("model.onnx", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (source / "textual" / name).exists():
            shutil.copy(source / "textual" / name, target / "textual" / name)
    return target / "textual"


def _tokenizer(textual: Path) -> ClipTokenizer:
    config = TextConfig.from_model_config(json.loads((textual.parent / "config.json").read_text()), TINY_CLIP_MODEL)
    return ClipTokenizer(textual / "tokenizer.json", textual / "tokenizer_config.json", config)


def _encode(tokenizer: ClipTokenizer):  # type: ignore[no-untyped-def]
    return lambda text: tokenizer.encode(text)[0]


def _run(path: Path, ids: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"text": ids.astype(np.int32)[None, :]})[0]).reshape(-1)


def test_buckets() -> None:
    assert text_length.bucket_length(1, 77) == 8
    assert text_length.bucket_length(8, 77) == 8
    assert text_length.bucket_length(9, 77) == 16
    assert text_length.bucket_length(76, 77) == 77
    assert text_length.bucket_length(77, 77) == 77
    assert text_length.buckets(77) == (8, 16, 24, 32, 40, 48, 56, 64, 72, 77)
    assert text_length.buckets(5) == (5,)


def test_short_graph_gives_the_padded_graphs_embeddings(textual: Path) -> None:
    tokenizer = _tokenizer(textual)
    path, reason = text_length.variable_length_graph(
        textual / "model.onnx", "text", np.int32, _encode(tokenizer), tokenizer.context_length)
    assert path == textual / "model.textlen.onnx" and reason == "verified"
    inputs = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert inputs[1].dim_param == "text_length"
    for text in TEXTS:
        ids = tokenizer.encode(text)[0]
        length = text_length.bucket_length(int(np.argmax(ids)) + 1, tokenizer.context_length)
        full = _run(textual / "model.onnx", ids)
        short = _run(path, ids[:length])
        assert np.max(np.abs(full - short)) < 1e-5, text
    assert text_length.bucket_length(int(np.argmax(tokenizer.encode(TEXTS[0])[0])) + 1, 77) == 8


def test_the_verdict_is_cached_and_renewed_when_the_model_changes(textual: Path) -> None:
    tokenizer = _tokenizer(textual)
    args = ("text", np.int32, _encode(tokenizer), tokenizer.context_length)
    path, _ = text_length.variable_length_graph(textual / "model.onnx", *args)
    assert path is not None
    built = path.stat().st_mtime_ns
    calls = []
    counting = lambda text: calls.append(text) or tokenizer.encode(text)[0]  # noqa: E731
    assert text_length.variable_length_graph(textual / "model.onnx", "text", np.int32, counting, 77)[0] == path
    assert not calls and path.stat().st_mtime_ns == built  # no rebuild, no verification
    (textual / "model.onnx").touch()
    assert text_length.variable_length_graph(textual / "model.onnx", "text", np.int32, counting, 77)[0] == path
    assert calls  # verified again


def test_a_graph_without_a_causal_mask_keeps_the_full_context(textual: Path) -> None:
    model = onnx.load(str(textual / "model.onnx"))
    for tensor in model.graph.initializer:
        if tensor.name == "attn_mask":  # bidirectional attention: padding changes the answer
            tensor.CopyFrom(numpy_helper.from_array(np.zeros((77, 77), np.float32), "attn_mask"))
    onnx.save(model, str(textual / "model.onnx"))
    tokenizer = _tokenizer(textual)
    path, reason = text_length.variable_length_graph(
        textual / "model.onnx", "text", np.int32, _encode(tokenizer), 77)
    assert path is None and "causal mask" in reason
    assert json.loads((textual / "model.textlen.json").read_text())["usable"] is False


def test_verification_refuses_a_graph_that_answers_differently(textual: Path, tmp_path: Path) -> None:
    tokenizer = _tokenizer(textual)
    model = text_length.rewrite(onnx.load(str(textual / "model.onnx")), "text", 77)
    for tensor in model.graph.initializer:
        if tensor.name == "positional_embedding":
            # (noise: a constant shift would be removed by the first LayerNorm)
            values = numpy_helper.to_array(tensor) + np.random.default_rng(0).normal(0, 0.05, (77, 64))
            tensor.CopyFrom(numpy_helper.from_array(values.astype(np.float32), tensor.name))
    onnx.save(model, str(tmp_path / "wrong.onnx"))
    verdict = text_length.verify(textual / "model.onnx", tmp_path / "wrong.onnx", "text", np.int32,
                                 _encode(tokenizer), 77)
    assert not verdict.usable and "differs" in verdict.reason


def test_rewrite_refuses_other_shapes(textual: Path) -> None:
    model = onnx.load(str(textual / "model.onnx"))
    with pytest.raises(text_length.NotApplicable, match="no input"):
        text_length.rewrite(model, "input_ids", 77)
    with pytest.raises(text_length.NotApplicable, match="not \\[batch, 64\\]"):
        text_length.rewrite(model, "text", 64)


def _model(settings: Settings, cache: Path) -> OpenClipTextual:
    spec = resolve(TINY_CLIP_MODEL, ModelTask.SEARCH, ModelType.TEXTUAL)
    model = ModelManager(settings, Target(), ModelStore(settings)).get(spec)
    assert isinstance(model, OpenClipTextual)
    return model


def _embed(model: OpenClipTextual, text: str, timings: dict[str, float] | None = None) -> np.ndarray:
    answer = model.predict(ModelRequest(text=text), Stages(timings))
    return np.array(json.loads(answer), dtype=np.float64)


def test_the_model_runs_short_queries_short_with_the_same_answers(textual: Path) -> None:
    cache = textual.parents[2]
    base = Settings(cache_folder=cache, text_cache_size=0)
    padded, short = _model(replace(base, text_variable_length=False), cache), _model(base, cache)
    for text in TEXTS:
        a, b = _embed(padded, text), _embed(short, text)
        assert float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) > 0.99999
    assert padded.session is not None and short.session is not None
    assert padded.session.placement.extra["model"] == "model.onnx"
    assert short.session.placement.extra["model"] == "model.textlen.onnx"


def test_recent_queries_are_answered_without_a_run(textual: Path) -> None:
    model = _model(Settings(cache_folder=textual.parents[2], text_cache_size=2), textual.parents[2])
    first: dict[str, float] = {}
    vector = _embed(model, "a dog", first)
    again: dict[str, float] = {}
    assert np.array_equal(_embed(model, "a dog", again), vector)
    assert "inference" in first and "inference" not in again
    model.unload(force=True)  # a reload starts empty
    reloaded: dict[str, float] = {}
    assert np.array_equal(_embed(model, "a dog", reloaded), vector) and "inference" in reloaded


def test_recent_embeddings_are_bounded_and_least_recently_used() -> None:
    recent = RecentEmbeddings(2)
    recent.put(("a", None), "[1]")
    recent.put(("b", None), "[2]")
    assert recent.get(("a", None)) == "[1]"  # "b" is now the oldest
    recent.put(("c", "de"), "[3]")
    assert recent.get(("b", None)) is None and len(recent) == 2
    assert recent.get(("c", "de")) == "[3]" and recent.get(("c", None)) is None
    off = RecentEmbeddings(0)
    off.put(("a", None), "[1]")
    assert off.get(("a", None)) is None and len(off) == 0


def test_a_reloaded_model_reuses_its_parsed_tokenizer(textual: Path) -> None:
    first, second = _tokenizer(textual), _tokenizer(textual)
    assert first._tokenizer is second._tokenizer  # parsed once
    assert np.array_equal(first.encode("a dog")[0], second.encode("a dog")[0])
    (textual / "tokenizer.json").touch()
    assert _tokenizer(textual)._tokenizer is not first._tokenizer  # a changed file is parsed again
