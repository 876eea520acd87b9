"""CUDA against CPU on the real starter models: same embeddings (cosine ≥ 0.999), same boxes
(≤ 1 px), every model on CUDAExecutionProvider (strict: a fallback fails the test)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gpu_testing import assert_all_on_cuda, cosine, engine, entries

from immich_ml.models import starter

PHOTOS = ("astronaut", "chelsea", "solvay", "newton")


def faces() -> object:
    return entries({"facial-recognition": {"detection": {"modelName": starter.FACE_MODEL, "options": {"minScore": 0.5}},
                                           "recognition": {"modelName": starter.FACE_MODEL}}})


@pytest.mark.parametrize("wait_ms", [0.0, 5.0])
def test_clip_image_and_text_match_the_cpu(gpu_cache: Path, photos: dict[str, Path], wait_ms: float) -> None:
    visual = entries({"clip": {"visual": {"modelName": starter.CLIP_MODEL}}})
    textual = entries({"clip": {"textual": {"modelName": starter.CLIP_MODEL}}})
    texts = ["a photo of a cat", "an astronaut", "a group of scientists"]
    with engine(gpu_cache, "cpu", batch_wait_ms=0.0) as cpu:
        want_images = [cpu.predict(visual, image=photos[p].read_bytes())["clip"] for p in PHOTOS]
        want_texts = [cpu.predict(textual, text=t)["clip"] for t in texts]
    with engine(gpu_cache, "cuda", batch_wait_ms=wait_ms) as gpu:
        got_images = [gpu.predict(visual, image=photos[p].read_bytes())["clip"] for p in PHOTOS]
        got_texts = [gpu.predict(textual, text=t)["clip"] for t in texts]
        assert_all_on_cuda(gpu)
    assert all(cosine(a, b) >= 0.999 for a, b in zip(want_images, got_images, strict=True))
    assert all(cosine(a, b) >= 0.999 for a, b in zip(want_texts, got_texts, strict=True))


def test_faces_match_the_cpu(gpu_cache: Path, photos: dict[str, Path]) -> None:
    with engine(gpu_cache, "cpu") as cpu:
        want = [cpu.predict(faces(), image=photos[p].read_bytes())["facial-recognition"] for p in PHOTOS]
    with engine(gpu_cache, "cuda") as gpu:
        got = [gpu.predict(faces(), image=photos[p].read_bytes())["facial-recognition"] for p in PHOTOS]
        assert_all_on_cuda(gpu)
    for a, b in zip(want, got, strict=True):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert all(abs(x["boundingBox"][k] - y["boundingBox"][k]) <= 1 for k in ("x1", "y1", "x2", "y2"))
            assert cosine(x["embedding"], y["embedding"]) >= 0.999


def test_ocr_matches_the_cpu(gpu_cache: Path, photos: dict[str, Path]) -> None:
    pytest.importorskip("immich_ml.models.ocr", reason="OCR models are not part of this build yet")
    model = getattr(starter, "OCR_MODEL", None)
    if model is None:
        pytest.skip("no starter OCR model in this build")
    request = entries({"ocr": {"detection": {"modelName": model}, "recognition": {"modelName": model}}})
    with engine(gpu_cache, "cpu") as cpu:
        want = [cpu.predict(request, image=photos[p].read_bytes())["ocr"] for p in PHOTOS]
    with engine(gpu_cache, "cuda") as gpu:
        got = [gpu.predict(request, image=photos[p].read_bytes())["ocr"] for p in PHOTOS]
        assert_all_on_cuda(gpu)
    for a, b in zip(want, got, strict=True):
        assert a["text"] == b["text"], json.dumps([a["text"], b["text"]])
        assert max((abs(p - q) for p, q in zip(a["box"], b["box"], strict=True)), default=0) <= 1
