"""The worker's Pipeline: request validation, Immich's response bodies, concurrency, lifecycle."""

from __future__ import annotations

import dataclasses
import io
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from graphs import ClipRepo, Face, arcface, clip_repo, face_repo, scrfd, write_repo
from PIL import Image

import immich_ml.pipeline as pipeline_module
from immich_ml.backends.base import Target
from immich_ml.config import PreloadModels, Settings
from immich_ml.errors import InvalidImage, InvalidInput, UnknownModel
from immich_ml.pipeline import Pipeline
from immich_ml.schemas import Entry, parse_entries

CLIP_NAME, FACE_NAME = "ViT-B-32__openai", "buffalo_l"
FACES = (Face(8, row=10, col=12, score=0.92), Face(16, row=5, col=7, score=0.81),
         Face(32, row=12, col=15, score=0.55, distances=(1.0, 1.0, 1.0, 1.0)))


def entries(raw: dict[str, Any]) -> tuple[Entry, ...]:
    return parse_entries(json.dumps(raw))


VISUAL = entries({"clip": {"visual": {"modelName": CLIP_NAME}}})
TEXTUAL = entries({"clip": {"textual": {"modelName": CLIP_NAME, "options": {"language": "de"}}}})


def face_entries(min_score: float | None = None, *, name: str = FACE_NAME, recognition: bool = True
                 ) -> tuple[Entry, ...]:
    detection: dict[str, Any] = {"modelName": name}
    if min_score is not None:
        detection["options"] = {"minScore": min_score}
    raw: dict[str, Any] = {"detection": detection}
    if recognition:
        raw["recognition"] = {"modelName": name}
    return entries({"facial-recognition": raw})


def jpeg(width: int, height: int, quality: int = 90) -> bytes:
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([(x * 7) % 256, (y * 3) % 256, ((x + y) // 4) % 256], axis=-1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    cache = tmp_path / "cache"
    write_repo(cache / "clip" / CLIP_NAME, clip_repo(ClipRepo(size=32)))
    write_repo(cache / "facial-recognition" / FACE_NAME, face_repo(scrfd(640, FACES), arcface(dim=64)))
    return Settings(cache_folder=cache)


@pytest.fixture
def pipeline(settings: Settings) -> Any:
    engine = Pipeline(settings, Target())
    yield engine
    engine.close()


# --- validation -------------------------------------------------------------------------------------


def test_recognition_needs_detection(pipeline: Pipeline) -> None:
    raw = {"facial-recognition": {"recognition": {"modelName": FACE_NAME}}}
    with pytest.raises(InvalidInput) as info:
        pipeline.predict(entries(raw), image=jpeg(64, 64))
    assert info.value.message.startswith("Task facial-recognition of type recognition depends on output of detection")
    assert info.value.status == 400


@pytest.mark.parametrize(
    ("request_entries", "image", "text"),
    [(VISUAL, None, "a dog"), (VISUAL, None, None), (TEXTUAL, b"\xff\xd8", None), (TEXTUAL, None, None)],
)
def test_payload_must_match_the_entries(pipeline: Pipeline, request_entries: tuple[Entry, ...],
                                        image: bytes | None, text: str | None) -> None:
    with pytest.raises(InvalidInput) as info:
        pipeline.predict(request_entries, image=image, text=text)
    assert info.value.message == "Either image or text must be provided"


def test_unknown_model_is_a_client_error(pipeline: Pipeline) -> None:
    with pytest.raises(UnknownModel) as info:
        pipeline.predict(entries({"clip": {"visual": {"modelName": "ViT-B-99__nope"}}}), image=jpeg(8, 8))
    assert info.value.status == 400


@pytest.mark.parametrize("data", [b"", b"not an image", jpeg(64, 64)[:200]])
def test_bad_image_bytes(pipeline: Pipeline, data: bytes) -> None:
    with pytest.raises(InvalidImage):
        pipeline.predict(VISUAL, image=data)


# --- responses --------------------------------------------------------------------------------------


def test_clip_image_response(pipeline: Pipeline) -> None:
    timings: dict[str, float] = {}
    response = pipeline.predict(VISUAL, image=jpeg(120, 80), timings=timings)
    assert set(response) == {"clip", "imageHeight", "imageWidth"}
    assert (response["imageHeight"], response["imageWidth"]) == (80, 120)
    vector = json.loads(response["clip"])
    assert len(vector) == 16 and abs(float(np.linalg.norm(vector)) - 1) < 1e-5
    assert set(timings) == {"decode", "preprocess", "inference", "postprocess", "serialize"}
    assert all(v >= 0 for v in timings.values())


def test_clip_text_response(pipeline: Pipeline) -> None:
    response = pipeline.predict(TEXTUAL, text="a photo of a dog")
    assert set(response) == {"clip"}
    assert len(json.loads(response["clip"])) == 16


def test_image_wins_over_text_for_image_models(pipeline: Pipeline) -> None:
    assert "imageWidth" in pipeline.predict(VISUAL, image=jpeg(40, 40), text="ignored")


def test_face_response(pipeline: Pipeline) -> None:
    response = pipeline.predict(face_entries(0.5), image=jpeg(400, 300))
    assert (response["imageHeight"], response["imageWidth"]) == (300, 400)
    faces = response["facial-recognition"]
    assert [face["score"] for face in faces] == sorted((f.score for f in FACES), reverse=True)
    for face in faces:
        box = face["boundingBox"]
        assert all(float(v).is_integer() for v in box.values())
        assert len(json.loads(face["embedding"])) == 64
    # JSON-ready as it is: what the server sends is exactly this.
    assert json.loads(orjson.dumps(response)) == response


def test_detection_only_response(pipeline: Pipeline) -> None:
    response = pipeline.predict(face_entries(0.5, recognition=False), image=jpeg(640, 640))
    answer = response["facial-recognition"]
    assert set(answer) == {"boxes", "scores", "landmarks"}
    assert len(answer["boxes"]) == 3 and np.array(answer["landmarks"]).shape == (3, 5, 2)
    assert answer["boxes"][0] == [80.0, 64.0, 112.0, 96.0]


def test_no_faces(pipeline: Pipeline) -> None:
    response = pipeline.predict(face_entries(0.99), image=jpeg(100, 100))
    assert response["facial-recognition"] == [] and response["imageWidth"] == 100


def test_independent_entries_in_one_request(pipeline: Pipeline) -> None:
    raw = {"clip": {"visual": {"modelName": CLIP_NAME}},
           "facial-recognition": {"detection": {"modelName": FACE_NAME}, "recognition": {"modelName": FACE_NAME}}}
    response = pipeline.predict(entries(raw), image=jpeg(200, 100))
    assert set(response) == {"clip", "facial-recognition", "imageHeight", "imageWidth"}
    assert len(response["facial-recognition"]) == 2


def test_min_score_from_concurrent_requests_never_mixes(pipeline: Pipeline) -> None:
    image = jpeg(320, 320)
    thresholds = [0.5, 0.7, 0.9, 0.95] * 4
    expected = {0.5: 3, 0.7: 2, 0.9: 1, 0.95: 0}
    barrier = threading.Barrier(len(thresholds))
    results: dict[int, int] = {}
    errors: list[BaseException] = []

    def worker(index: int, min_score: float) -> None:
        barrier.wait()
        try:
            for _ in range(3):
                faces = pipeline.predict(face_entries(min_score), image=image)["facial-recognition"]
                assert len(faces) == expected[min_score]
            results[index] = len(faces)
        except BaseException as exc:  # noqa: BLE001 - collected and re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i, t)) for i, t in enumerate(thresholds)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert results == {i: expected[t] for i, t in enumerate(thresholds)}


# --- decoding --------------------------------------------------------------------------------------


def spy_decode(monkeypatch: pytest.MonkeyPatch) -> list[int | None]:
    seen: list[int | None] = []
    real = pipeline_module.decode_image

    def decode(data: bytes, **kwargs: Any) -> Any:
        seen.append(kwargs.get("min_side"))
        return real(data, **kwargs)

    monkeypatch.setattr(pipeline_module, "decode_image", decode)
    return seen


def test_fast_decode_for_clip_keeps_the_submitted_size(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = spy_decode(monkeypatch)
    response = pipeline.predict(VISUAL, image=jpeg(1600, 1200))
    assert seen == [48]  # 1.5x the 32-px model input (clip.visual.decode_min_side)
    assert (response["imageWidth"], response["imageHeight"]) == (1600, 1200)


def test_faces_decode_at_full_resolution(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = spy_decode(monkeypatch)
    pipeline.predict(face_entries(), image=jpeg(800, 600))
    assert seen == [None]


def test_fast_decode_can_be_disabled(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = spy_decode(monkeypatch)
    engine = Pipeline(dataclasses.replace(settings, fast_decode=False), Target())
    engine.predict(VISUAL, image=jpeg(800, 600))
    assert seen == [None]


# --- lifecycle ---------------------------------------------------------------------------------------


def test_status_self_test_evict_close(settings: Settings) -> None:
    engine = Pipeline(dataclasses.replace(settings, model_ttl=1), Target())
    assert engine.status() == []
    engine.self_test()
    engine.predict(TEXTUAL, text="dog")
    (status,) = engine.status()
    assert (status["task"], status["type"], status["name"], status["state"]) == ("clip", "textual", CLIP_NAME,
                                                                                 "loaded")
    assert status["provider"] == "CPUExecutionProvider" and status["runs"] == 1
    for model in engine.manager.models():
        model._last_used -= 5
    assert engine.evict_expired() == ["clip/ViT-B-32__openai/textual"]
    assert engine.status()[0]["state"] == "unloaded"
    engine.predict(TEXTUAL, text="dog")
    assert engine.status()[0]["state"] == "loaded"
    engine.close()


def test_preload(settings: Settings) -> None:
    preload = PreloadModels(clip_textual=(CLIP_NAME,), facial_recognition_detection=(FACE_NAME,))
    engine = Pipeline(dataclasses.replace(settings, preload=preload, model_ttl=1), Target())
    engine.preload()
    assert [(s["type"], s["state"], s["ttl_remaining_s"]) for s in engine.status()] == [
        ("textual", "loaded", None), ("detection", "loaded", None)]
    for model in engine.manager.models():
        model._last_used -= 100
    assert engine.evict_expired() == []
    engine.close()


# --- the starter models, end to end ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def starter_pipeline(starter_cache: Path) -> Any:
    engine = Pipeline(Settings(cache_folder=starter_cache), Target())
    yield engine
    engine.close()


def test_starter_faces_end_to_end(starter_pipeline: Pipeline, photos: dict[str, Path]) -> None:
    from immich_ml.models.starter import FACE_MODEL

    response = starter_pipeline.predict(face_entries(0.7, name=FACE_MODEL), image=photos["astronaut"].read_bytes())
    assert (response["imageHeight"], response["imageWidth"]) == (512, 512)
    (face,) = response["facial-recognition"]
    box = face["boundingBox"]
    assert 170 <= box["x1"] <= 200 and 250 <= box["x2"] <= 290 and 45 <= box["y1"] <= 70 and 165 <= box["y2"] <= 190
    assert len(json.loads(face["embedding"])) == 128 and face["score"] > 0.7


def test_starter_clip_end_to_end(starter_pipeline: Pipeline, photos: dict[str, Path]) -> None:
    from immich_ml.models.starter import TINY_CLIP_MODEL

    image = starter_pipeline.predict(entries({"clip": {"visual": {"modelName": TINY_CLIP_MODEL}}}),
                                     image=photos["chelsea"].read_bytes())
    text = starter_pipeline.predict(entries({"clip": {"textual": {"modelName": TINY_CLIP_MODEL}}}),
                                    text="a photo of a cat")
    a, b = np.array(json.loads(image["clip"])), np.array(json.loads(text["clip"]))
    assert a.shape == b.shape and abs(np.linalg.norm(a) - 1) < 1e-4 and abs(np.linalg.norm(b) - 1) < 1e-4
