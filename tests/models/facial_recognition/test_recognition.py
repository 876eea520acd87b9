"""Face recognition: batching in fixed sizes, exact inputs/outputs on tiny graphs, real identities."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import pytest
from model_testing import RecordingSession, with_settings
from graphs import arcface, arcface_reference, face_repo, scrfd, write_repo
from PIL import Image

from immich_ml.backends.base import Target
from immich_ml.config import MaxBatchSize, Settings
from immich_ml.errors import InvalidInput
from immich_ml.models.base import ModelRequest
from immich_ml.models.cache import ModelStore
from immich_ml.models.catalog import resolve
from immich_ml.models.facial_recognition.detection import FaceDetector
from immich_ml.models.facial_recognition.recognition import (
    FaceRecognizer,
    detections_to_json,
    float32_text,
)
from immich_ml.models.manager import ModelManager
from immich_ml.models.timing import Stages
from immich_ml.ops.align import ARCFACE_TEMPLATE
from immich_ml.ops.detect import Detections
from immich_ml.ops.image import decode_image
from immich_ml.schemas import ModelTask, ModelType

FACES_TASK = ModelTask.FACIAL_RECOGNITION
SPEC = resolve("buffalo_l", FACES_TASK, ModelType.RECOGNITION)


def face_landmarks(count: int, size: int = 400) -> npt.NDArray[np.float32]:
    """``count`` faces spread over a ``size`` image: the ArcFace template scaled and shifted."""
    out = np.empty((count, 5, 2), np.float32)
    rng = np.random.default_rng(7)
    for i in range(count):
        scale = rng.uniform(0.6, 1.4)
        offset = rng.uniform(20, size - 180, 2)
        out[i] = ARCFACE_TEMPLATE * scale + offset
    return out


def detections(landmarks: npt.NDArray[np.float32]) -> Detections:
    n = len(landmarks)
    boxes = np.concatenate([landmarks.min(axis=1) - 10.4, landmarks.max(axis=1) + 10.6], axis=1)
    scores = np.linspace(0.95, 0.75, n, dtype=np.float32) if n else np.zeros(0, np.float32)
    return Detections(boxes.astype(np.float32), scores, landmarks)


def textured(size: int = 400) -> npt.NDArray[np.uint8]:
    return np.random.default_rng(3).integers(0, 256, (size, size, 3), dtype=np.uint8)


def recognizer(settings: Settings, graph: onnx.ModelProto, meta: dict[str, object] | None = None) -> FaceRecognizer:
    store = ModelStore(settings)
    root = write_repo(store.root(SPEC), face_repo(scrfd(64), graph))
    if meta is not None:
        (root / "recognition" / "immich_ml.json").write_text(json.dumps(meta))
    model = ModelManager(settings, Target(), store).get(SPEC)
    assert isinstance(model, FaceRecognizer)
    return model


def recognize(model: FaceRecognizer, image: npt.NDArray[np.uint8], found: Detections) -> list[dict[str, object]]:
    result = model.predict(ModelRequest(image=image, upstream=found), Stages())
    assert isinstance(result, list)
    return result


def vectors(faces: list[dict[str, object]]) -> npt.NDArray[np.float32]:
    return np.array([json.loads(str(face["embedding"])) for face in faces], dtype=np.float32)


def test_output_is_immichs_face_list(settings: Settings, recording: list[RecordingSession]) -> None:
    model = recognizer(settings, arcface(dim=512))
    found = detections(face_landmarks(3))
    faces = recognize(model, textured(), found)
    assert len(faces) == 3
    for face, box, score in zip(faces, found.boxes, found.scores, strict=True):
        assert set(face) == {"boundingBox", "embedding", "score"}
        assert face["boundingBox"] == {k: float(np.round(v)) for k, v in zip(("x1", "y1", "x2", "y2"), box)}
        assert all(isinstance(v, float) for v in face["boundingBox"].values())  # type: ignore[union-attr]
        assert face["score"] == float32_text(float(score))
        assert isinstance(face["embedding"], str)
    fed = np.concatenate([r["input.1"] for r in recording[0].recorded])  # runs of 2 + 1
    assert [r["input.1"].shape[0] for r in recording[0].recorded] == [2, 1]
    np.testing.assert_allclose(vectors(faces), arcface_reference(fed), rtol=1e-4, atol=1e-3)
    assert vectors(faces).shape == (3, 512)


def test_embedding_size_is_read_from_the_model(settings: Settings) -> None:
    faces = recognize(recognizer(settings, arcface(dim=128)), textured(), detections(face_landmarks(2)))
    assert vectors(faces).shape == (2, 128)


def test_crops_are_normalized_arcface_style(settings: Settings, recording: list[RecordingSession]) -> None:
    image = np.full((400, 400, 3), 128, np.uint8)
    recognize(recognizer(settings, arcface()), image, detections(face_landmarks(1)))
    fed = recording[0].recorded[0]["input.1"]
    assert fed.shape == (1, 3, 112, 112)
    np.testing.assert_allclose(fed, (128 - 127.5) / 127.5, atol=1e-6)


def test_starter_metadata_sets_the_normalization(settings: Settings, recording: list[RecordingSession]) -> None:
    image = np.full((400, 400, 3), 128, np.uint8)
    model = recognizer(settings, arcface(), meta={"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]})
    recognize(model, image, detections(face_landmarks(1)))
    np.testing.assert_allclose(recording[0].recorded[0]["input.1"], 128.0, atol=1e-4)


@pytest.mark.parametrize("maximum", [1, 3, 16])
def test_results_do_not_depend_on_batching(settings: Settings, maximum: int) -> None:
    image, found = textured(), detections(face_landmarks(11))
    single = recognizer(with_settings(settings, max_batch_size=MaxBatchSize(facial_recognition=1)), arcface())
    batched = recognizer(with_settings(settings, max_batch_size=MaxBatchSize(facial_recognition=maximum)),
                         arcface())
    np.testing.assert_allclose(vectors(recognize(batched, image, found)), vectors(recognize(single, image, found)),
                               rtol=1e-5, atol=1e-4)


def test_only_a_few_shapes_whatever_the_face_count(settings: Settings, recording: list[RecordingSession]) -> None:
    model = recognizer(with_settings(settings, max_batch_size=MaxBatchSize(facial_recognition=8)), arcface())
    image = textured()
    for count in range(1, 24):
        assert len(recognize(model, image, detections(face_landmarks(count)))) == count
    shapes = {r["input.1"].shape[0] for r in recording[0].recorded}
    assert shapes <= {1, 2, 4, 8}


@pytest.mark.parametrize("fixed", [1, 4])
def test_fixed_batch_models(settings: Settings, fixed: int, recording: list[RecordingSession]) -> None:
    model = recognizer(settings, arcface(batch=fixed))
    image, found = textured(), detections(face_landmarks(5))
    faces = recognize(model, image, found)
    assert len(faces) == 5 and model.batch_sizes == (fixed,)
    assert {r["input.1"].shape[0] for r in recording[0].recorded} == {fixed}
    reference = recognize(recognizer(with_settings(settings, cache_folder=settings.cache_folder / "x"), arcface()),
                          image, found)
    np.testing.assert_allclose(vectors(faces), vectors(reference), rtol=1e-5, atol=1e-4)


def test_no_faces_no_run(settings: Settings, recording: list[RecordingSession]) -> None:
    assert recognize(recognizer(settings, arcface()), textured(), detections(face_landmarks(0))) == []


def test_needs_detections(settings: Settings) -> None:
    with pytest.raises(InvalidInput, match="depends on output of detection"):
        recognize(recognizer(settings, arcface()), textured(), None)  # type: ignore[arg-type]


def test_detection_only_answer() -> None:
    found = detections(face_landmarks(2))
    answer = detections_to_json(found)
    assert answer["boxes"] == np.round(found.boxes).tolist()
    assert answer["scores"] == [float32_text(s) for s in found.scores.tolist()]
    assert np.array(answer["landmarks"]).shape == (2, 5, 2)


def test_scores_print_like_immichs_float32() -> None:
    value = float(np.float32(0.8234567))
    assert json.dumps(float32_text(value)) == "0.8234567"


# --- real identities with the starter models (SCRFD + SFace) -------------------------------------


@pytest.fixture(scope="module")
def real_models(starter_cache: Path) -> tuple[FaceDetector, FaceRecognizer]:
    from immich_ml.models.starter import FACE_MODEL

    settings = Settings(cache_folder=starter_cache)
    manager = ModelManager(settings, Target(), ModelStore(settings))
    detector = manager.get(resolve(FACE_MODEL, FACES_TASK, ModelType.DETECTION))
    recog = manager.get(resolve(FACE_MODEL, FACES_TASK, ModelType.RECOGNITION))
    assert isinstance(detector, FaceDetector) and isinstance(recog, FaceRecognizer)
    return detector, recog


def embed_largest(models: tuple[FaceDetector, FaceRecognizer], data: bytes) -> npt.NDArray[np.float32]:
    detector, recog = models
    image = decode_image(data)
    found = detector.predict(ModelRequest(image=image, options={"minScore": 0.5}), Stages())
    faces = recognize(recog, image, found)
    assert faces, "no face found"
    return vectors(faces[:1])[0]


def variants(data: bytes) -> dict[str, bytes]:
    img = Image.open(io.BytesIO(data)).convert("RGB")
    out: dict[str, bytes] = {}
    for name, changed in (
        ("flipped", img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)),
        ("resized", img.resize((256, 256), Image.Resampling.BILINEAR)),
        ("jpeg", img),
    ):
        buffer = io.BytesIO()
        changed.save(buffer, "JPEG", quality=40 if name == "jpeg" else 90)
        out[name] = buffer.getvalue()
    return out


def cosine(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_same_person_and_different_people(
    real_models: tuple[FaceDetector, FaceRecognizer], photos: dict[str, Path]
) -> None:
    astronaut = photos["astronaut"].read_bytes()
    reference = embed_largest(real_models, astronaut)
    assert reference.shape == (128,)  # SFace: size read from the model
    for name, data in variants(astronaut).items():
        assert cosine(reference, embed_largest(real_models, data)) >= 0.8, name
    for other in ("newton", "gauss", "camera"):
        assert cosine(reference, embed_largest(real_models, photos[other].read_bytes())) <= 0.5, other
