"""The Immich-style reference pipelines: their pieces against independent implementations, and
their answers against the engine's on the real starter models."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from immich_ml.bench.reference import ReferenceClipTextual, ReferenceClipVisual
from immich_ml.bench.reference_faces import ARCFACE_TEMPLATE, ReferenceFaces, nms, umeyama
from immich_ml.bench.workloads import match_faces
from immich_ml.models.starter import FACE_MODEL, TINY_CLIP_MODEL


def test_umeyama_matches_scikit_image() -> None:
    from skimage.transform import SimilarityTransform

    rng = np.random.default_rng(1)
    for _ in range(20):
        src = ARCFACE_TEMPLATE * rng.uniform(0.5, 4) + rng.uniform(-50, 300, 2) + rng.normal(0, 2, (5, 2))
        expected = SimilarityTransform.from_estimate(src, ARCFACE_TEMPLATE).params[:2]
        np.testing.assert_allclose(umeyama(src, ARCFACE_TEMPLATE), expected, atol=1e-9)


def test_nms_keeps_the_best_of_each_cluster() -> None:
    dets = np.array([
        [10, 10, 50, 50, 0.9],
        [12, 12, 52, 52, 0.8],  # IoU with the first ~0.83: suppressed
        [100, 100, 140, 140, 0.7],
        [60, 10, 100, 50, 0.95],  # touches nothing
    ], dtype=np.float32)
    assert nms(dets, 0.4) == [3, 0, 2]


def test_nms_inclusive_areas() -> None:
    # Two 10x10 boxes (11x11 with +1 areas) overlapping by 5 columns: IoU = 66 / (121+121-66) = 0.375.
    dets = np.array([[0, 0, 10, 10, 0.9], [5, 0, 15, 10, 0.8]], dtype=np.float32)
    assert nms(dets, 0.4) == [0, 1]
    assert nms(dets, 0.37) == [0]


def test_clip_reference_preprocessing_against_numpy(starter_cache: Path) -> None:
    ref = ReferenceClipVisual(starter_cache / "clip" / TINY_CLIP_MODEL / "visual")
    pixels = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    batch = ref.preprocess(buffer.getvalue())
    assert batch.shape == (1, 3, ref.size, ref.size) and batch.dtype == np.float32
    # independent: Pillow resize of the array, centre crop by slicing, normalise in float64
    s = ref.size
    resized = np.asarray(Image.fromarray(pixels).resize((int(400 / 300 * s), s), Image.Resampling.BICUBIC))
    left = int(resized.shape[1] / 2 - s / 2)
    crop = resized[:, left:left + s].astype(np.float64) / 255
    expected = ((crop - ref.mean) / ref.std).transpose(2, 0, 1)
    np.testing.assert_allclose(batch[0], expected, atol=1e-5)


def test_text_reference_tokenizes_to_the_context_length(starter_cache: Path) -> None:
    ref = ReferenceClipTextual(starter_cache / "clip" / TINY_CLIP_MODEL / "textual")
    timings: dict[str, float] = {}
    answer = ref("a  dog\ton the beach", timings)
    assert answer["clip"].startswith("[") and timings["inference"] > 0
    assert len(ref.tokenizer.encode("a dog").ids) == 77


@pytest.fixture(scope="module")
def faces_reference(starter_cache: Path) -> ReferenceFaces:
    return ReferenceFaces(starter_cache / "facial-recognition" / FACE_MODEL)


def test_face_reference_finds_the_solvay_faces(faces_reference: ReferenceFaces, photos: dict[str, Path]) -> None:
    data = photos["solvay"].read_bytes()
    timings: dict[str, float] = {}
    answer = faces_reference(data, timings)
    faces = answer["facial-recognition"]
    assert len(faces) >= 25  # 29 people, a few partly hidden
    assert [f["score"] for f in faces] == sorted((f["score"] for f in faces), reverse=True)
    assert all(f["score"] >= 0.7 for f in faces)
    with Image.open(photos["solvay"]) as img:
        assert (answer["imageWidth"], answer["imageHeight"]) == img.size
    assert set(timings) == {"decode", "preprocess", "inference", "postprocess", "serialize"}


def test_face_reference_agrees_with_the_engine(faces_reference: ReferenceFaces, photos: dict[str, Path],
                                               starter_cache: Path) -> None:
    import orjson

    from immich_ml.backends.base import Target
    from immich_ml.config import Settings
    from immich_ml.pipeline import Pipeline
    from immich_ml.schemas import parse_entries

    entries = parse_entries(orjson.dumps({"facial-recognition": {
        "detection": {"modelName": FACE_MODEL, "options": {"minScore": 0.7}},
        "recognition": {"modelName": FACE_MODEL}}}))
    pipeline = Pipeline(Settings(cache_folder=starter_cache, model_ttl=0), Target("cpu"))
    try:
        for name in ("astronaut", "solvay"):
            data = photos[name].read_bytes()
            ours = pipeline.predict(entries, image=data)["facial-recognition"]
            theirs = faces_reference(data)["facial-recognition"]
            pairs = match_faces(ours, theirs)
            assert len(pairs) >= 0.9 * max(len(ours), len(theirs)) and len(ours) > 0
            for i, j, _ in pairs:
                a = np.asarray(orjson.loads(ours[i]["embedding"]))
                b = np.asarray(orjson.loads(theirs[j]["embedding"]))
                assert a @ b / np.linalg.norm(a) / np.linalg.norm(b) > 0.95
    finally:
        pipeline.close()
