"""Model lifecycle: one object per model, TTL eviction that frees memory, preload that never expires."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from model_testing import with_settings
from graphs import clip_repo, face_repo, write_repo
from onnx import TensorProto, helper, numpy_helper

from immich_ml.backends import registry
from immich_ml.backends.base import Target
from immich_ml.config import PreloadModels, Settings
from immich_ml.errors import ModelLoadError, UnknownModel
from immich_ml.models import memory
from immich_ml.models.base import InferenceModel, ModelRequest
from immich_ml.models.cache import ModelStore
from immich_ml.models.catalog import ModelSpec, resolve
from immich_ml.models.clip.textual import MClipTextual, OpenClipTextual
from immich_ml.models.ocr.detection import TextDetector
from immich_ml.models.ocr.recognition import TextRecognizer
from immich_ml.models.manager import ModelManager, model_class
from immich_ml.models.timing import Stages
from immich_ml.schemas import ModelTask, ModelType

CLIP, FACES = ModelTask.SEARCH, ModelTask.FACIAL_RECOGNITION
DETECTION = resolve("buffalo_l", FACES, ModelType.DETECTION)
TEXTUAL = resolve("ViT-B-32__openai", CLIP, ModelType.TEXTUAL)


def spy_sessions(monkeypatch: pytest.MonkeyPatch) -> tuple[list[Any], list[Any]]:
    """Record every session opened and every session closed."""
    opened: list[Any] = []
    closed: list[Any] = []
    real = registry.open_session

    def spy(*args: Any, **kwargs: Any) -> Any:
        session = real(*args, **kwargs)
        real_close = session.close

        def close() -> None:
            closed.append(session)
            real_close()

        session.close = close
        opened.append(session)
        return session

    monkeypatch.setattr(registry, "open_session", spy)
    return opened, closed


def make(settings: Settings) -> ModelManager:
    store = ModelStore(settings)
    write_repo(store.root(DETECTION), face_repo())
    write_repo(store.root(TEXTUAL), clip_repo())
    return ModelManager(settings, Target(), store)


def age(model: Any, seconds: float) -> None:
    model._last_used = time.monotonic() - seconds


def test_one_object_per_model(settings: Settings) -> None:
    models = make(settings)
    assert models.get(DETECTION) is models.get(resolve("immich-app/buffalo_l", FACES, ModelType.DETECTION))
    assert models.get(DETECTION) is not models.get(resolve("buffalo_l", FACES, ModelType.RECOGNITION))
    assert not models.get(DETECTION).loaded  # created lazily, loaded on first use


def test_textual_class_follows_the_model_family() -> None:
    assert model_class(TEXTUAL) is OpenClipTextual
    assert model_class(resolve("XLM-Roberta-Large-Vit-B-32", CLIP, ModelType.TEXTUAL)) is MClipTextual
    assert model_class(resolve("PP-OCRv5_mobile", ModelTask.OCR, ModelType.DETECTION)) is TextDetector
    assert model_class(resolve("EN__PP-OCRv5_mobile", ModelTask.OCR, ModelType.RECOGNITION)) is TextRecognizer


def test_ttl_eviction_closes_the_session_and_reloads_on_next_use(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened, closed = spy_sessions(monkeypatch)
    models = make(with_settings(settings, model_ttl=5))
    model = models.get(TEXTUAL)
    request = ModelRequest(text="a photo of a dog")
    first = model.predict(request, Stages())
    assert models.evict_expired() == []  # just used
    age(model, 6)
    assert models.evict_expired() == ["clip/ViT-B-32__openai/textual"]
    assert closed == opened and len(closed) == 1
    assert not model.loaded and model.session is None and model._tokenizer is None
    assert models.status()[0]["state"] == "unloaded"
    assert model.predict(request, Stages()) == first  # reloads transparently
    assert len(opened) == 2


def test_ttl_zero_or_negative_disables_eviction(settings: Settings) -> None:
    for ttl in (0, -1):
        models = make(with_settings(settings, model_ttl=ttl))
        model = models.get(DETECTION)
        model.load()
        age(model, 10_000)
        assert models.evict_expired() == [] and model.loaded
        assert model.status(ttl)["ttl_remaining_s"] is None


def test_a_model_in_use_is_not_evicted(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    models = make(with_settings(settings, model_ttl=1))
    model = models.get(DETECTION)
    model.load()
    model._active = 1
    age(model, 100)
    assert models.evict_expired() == [] and model.loaded
    model._active = 0
    assert models.evict_expired() == ["facial-recognition/buffalo_l/detection"]


def test_preload_in_immich_order_and_never_expires(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    preload = PreloadModels(
        clip_textual=("ViT-B-32__openai",),
        facial_recognition_detection=("buffalo_l",),
        facial_recognition_recognition=("buffalo_l",),
    )
    s = with_settings(settings, model_ttl=1, preload=preload)
    models = make(s)
    models.preload()
    assert [m.spec.label for m in models.models()] == [
        "clip/ViT-B-32__openai/textual",
        "facial-recognition/buffalo_l/detection",
        "facial-recognition/buffalo_l/recognition",
    ]
    loaded = [m for m in models.models() if m.loaded]
    assert len(loaded) == 3
    for model in loaded:
        age(model, 1000)
    assert models.evict_expired() == []
    assert all(m.loaded and m.status(1)["ttl_remaining_s"] is None for m in loaded)


def test_a_failed_preload_is_reported_and_the_rest_still_loads(settings: Settings) -> None:
    # Before: one bad preload name raised out of preload() and the worker never became ready.
    preload = PreloadModels(
        clip_visual=("no-such-model",),
        facial_recognition_detection=("buffalo_l",),
        ocr_detection=("PP-OCRv5_mobile",),
    )
    models = make(with_settings(settings, preload=preload))
    models.preload()
    rows = {(row["type"], row["name"]): row for row in models.status()}
    assert rows[("detection", "buffalo_l")]["state"] == "loaded"
    bad = rows[("visual", "no-such-model")]
    assert bad["state"] == "failed" and bad["preload"] is True
    assert "Unknown model 'no-such-model'" in bad["last_error"]
    assert rows[("detection", "PP-OCRv5_mobile")]["state"] == "failed"


def test_a_preload_that_cannot_load_is_reported_with_its_reason(settings: Settings) -> None:
    def broken(spec: ModelSpec) -> type[InferenceModel]:
        raise ModelLoadError(f"Failed to load model '{spec.name}': truncated protobuf")

    s = with_settings(settings, preload=PreloadModels(clip_textual=("ViT-B-32__openai",)))
    models = ModelManager(s, Target(), ModelStore(s), factory=broken)
    models.preload()
    [row] = models.status()
    assert row["state"] == "failed" and "truncated protobuf" in row["last_error"]


def test_status_is_truthful(settings: Settings) -> None:
    models = make(with_settings(settings, model_ttl=300))
    model = models.get(DETECTION)
    assert model.status(300)["state"] == "unloaded" and model.status(300)["provider"] is None
    model.load()
    status = model.status(300)
    session = model.session
    assert session is not None
    assert status["provider"] == session.placement.provider == "CPUExecutionProvider"
    assert status["backend"] == session.placement.backend
    assert status["device"] == session.placement.device
    assert status["state"] == "loaded" and status["runs"] == 0
    assert 0 < status["ttl_remaining_s"] <= 300 and status["load_time_s"] >= 0
    assert set(status) == {"task", "type", "name", "state", "backend", "provider", "device", "requested",
                           "fallback_reason", "precision", "ttl_remaining_s", "last_error",
                           "load_time_s", "runs", "warmup_s", "batching", "oom"}


def _rss_bytes() -> int:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def _big_text_encoder(context: int = 77) -> onnx.ModelProto:
    """A text tower with 64 MB of weights that every run really uses (nothing to constant-fold)."""
    rng = np.random.default_rng(0)
    w1 = rng.uniform(-1, 1, (context, 4096)).astype(np.float32)
    w2 = np.full((4096, 4096), 1e-3, dtype=np.float32)
    nodes = [
        helper.make_node("Cast", ["text"], ["ids"], to=TensorProto.FLOAT),
        helper.make_node("MatMul", ["ids", "w1"], ["h"]),
        helper.make_node("MatMul", ["h", "w2"], ["proj"]),
        helper.make_node("LpNormalization", ["proj"], ["embedding"], axis=1, p=2),
    ]
    graph = helper.make_graph(
        nodes, "big_text",
        [helper.make_tensor_value_info("text", TensorProto.INT32, [1, context])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, 4096])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs /proc to read resident memory")
def test_eviction_gives_memory_back(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    opened, closed = spy_sessions(monkeypatch)
    s = with_settings(settings, model_ttl=1)
    models = make(s)
    onnx.save(_big_text_encoder(), str(ModelStore(s).root(TEXTUAL) / "textual" / "model.onnx"))
    model = models.get(TEXTUAL)
    memory.release_memory()
    before = _rss_bytes()
    model.predict(ModelRequest(text="a photo of a dog"), Stages())
    loaded = _rss_bytes()
    assert loaded - before > 48 * 2**20, "the test model should occupy at least 48 MB"
    age(model, 10)
    assert models.evict_expired() == ["clip/ViT-B-32__openai/textual"]
    after = _rss_bytes()
    assert closed == opened
    assert loaded - after > 40 * 2**20, f"only {(loaded - after) / 2**20:.1f} MB given back"
