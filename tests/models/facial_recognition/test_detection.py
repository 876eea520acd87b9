"""SCRFD face detection: hand-computed boxes from tiny graphs, per-request minScore, real photos."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import onnx
import pytest
from model_testing import RecordingSession
from graphs import Face, arcface, expected_face, face_repo, scrfd, write_repo

from immich_ml.backends.base import Target
from immich_ml.config import Settings
from immich_ml.errors import InvalidInput, ModelLoadError
from immich_ml.models.base import ModelRequest
from immich_ml.models.cache import ModelStore
from immich_ml.models.catalog import resolve
from immich_ml.models.facial_recognition.detection import FaceDetector, parse_min_score
from immich_ml.models.manager import ModelManager
from immich_ml.models.timing import Stages
from immich_ml.ops.detect import Detections
from immich_ml.schemas import ModelTask, ModelType

SPEC = resolve("buffalo_l", ModelTask.FACIAL_RECOGNITION, ModelType.DETECTION)
FACES = (
    Face(8, row=10, col=12, score=0.92),
    Face(16, row=5, col=7, score=0.81, distances=(1.0, 1.5, 2.0, 2.5), anchor=1),
    Face(32, row=2, col=3, score=0.55, distances=(1.0, 1.0, 1.0, 1.0),
         keypoints=((-0.5, -0.5), (0.5, -0.5), (0, 0), (-0.4, 0.5), (0.4, 0.5))),
)


def detector(settings: Settings, graph: onnx.ModelProto) -> FaceDetector:
    store = ModelStore(settings)
    write_repo(store.root(SPEC), face_repo(graph, arcface()))
    model = ModelManager(settings, Target(), store).get(SPEC)
    assert isinstance(model, FaceDetector)
    return model


def detect(model: FaceDetector, image: npt.NDArray[np.uint8], **options: object) -> Detections:
    result = model.predict(ModelRequest(image=image, options=options), Stages())
    assert isinstance(result, Detections)
    return result


def letterbox_scale(height: int, width: int, model_h: int, model_w: int) -> float:
    """InsightFace's det_scale: the resized height (whole pixels) over the source height."""
    if height / width > model_h / model_w:
        resized_h = model_h
    else:
        resized_h = int(model_w * height / width)
    return resized_h / height


def blank(height: int, width: int) -> npt.NDArray[np.uint8]:
    return np.full((height, width, 3), 90, dtype=np.uint8)


@pytest.mark.parametrize(("height", "width"), [(640, 640), (400, 1280), (1000, 500), (200, 300)])
def test_boxes_are_in_source_pixels_after_letterbox(settings: Settings, height: int, width: int) -> None:
    model = detector(settings, scrfd(640, FACES))
    found = detect(model, blank(height, width), minScore=0.5)
    scale = letterbox_scale(height, width, 640, 640)
    assert len(found) == 3
    assert found.scores.tolist() == pytest.approx([0.92, 0.81, 0.55])  # sorted by score
    for i, face in enumerate(FACES):
        box, kps = expected_face(face, scale)
        np.testing.assert_allclose(found.boxes[i], box, rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(found.landmarks[i], kps, rtol=1e-4, atol=1e-3)


def test_min_score_is_per_request(settings: Settings) -> None:
    model = detector(settings, scrfd(640, FACES))
    image = blank(480, 640)
    assert len(detect(model, image)) == 2  # default 0.7
    assert len(detect(model, image, minScore=0.9)) == 1
    assert len(detect(model, image, minScore=0.5)) == 3
    assert len(detect(model, image, minScore=0.95)) == 0
    assert len(detect(model, image)) == 2  # nothing was remembered


@pytest.mark.parametrize("value", ["0.5", None, float("nan"), -0.1, 1.5, True, [0.5]])
def test_invalid_min_score(value: object) -> None:
    with pytest.raises(InvalidInput, match="minScore"):
        parse_min_score({"minScore": value})


def test_input_is_letterboxed_and_normalized(settings: Settings, recording: list[RecordingSession]) -> None:
    model = detector(settings, scrfd(640, FACES))
    detect(model, blank(320, 640))
    fed = recording[0].recorded[0]["input.1"]
    assert fed.shape == (1, 3, 640, 640) and fed.dtype == np.float32
    np.testing.assert_allclose(fed[0, :, :320, :], (90 - 127.5) / 128, atol=1e-6)
    np.testing.assert_allclose(fed[0, :, 320:, :], -127.5 / 128, atol=1e-6)  # black padding, normalized


def test_input_size_is_read_from_the_model(settings: Settings) -> None:
    faces = [Face(8, row=3, col=5, score=0.9), Face(32, row=1, col=2, score=0.8)]
    model = detector(settings, scrfd((256, 320), faces))
    found = detect(model, blank(500, 1000))
    assert model.input_size == (256, 320)
    scale = letterbox_scale(500, 1000, 256, 320)
    for i, face in enumerate(faces):
        np.testing.assert_allclose(found.boxes[i], expected_face(face, scale)[0], rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize(("batch_axis", "named"), [(False, True), (True, False), (False, False)])
def test_output_layouts(settings: Settings, batch_axis: bool, named: bool) -> None:
    model = detector(settings, scrfd(320, FACES[:2], batch_axis=batch_axis, named=named))
    found = detect(model, blank(320, 320), minScore=0.5)
    for i, face in enumerate(FACES[:2]):
        np.testing.assert_allclose(found.boxes[i], expected_face(face)[0], atol=1e-3)


def test_named_outputs_in_any_order(settings: Settings) -> None:
    graph = scrfd(320, FACES[:2])
    outputs = list(graph.graph.output)
    del graph.graph.output[:]
    graph.graph.output.extend(reversed(outputs))
    found = detect(detector(settings, graph), blank(320, 320), minScore=0.5)
    np.testing.assert_allclose(found.boxes[0], expected_face(FACES[0])[0], atol=1e-3)


def test_a_detector_needs_landmarks(settings: Settings) -> None:
    graph = scrfd(320, FACES[:1])
    kept = [o for o in graph.graph.output if not o.name.startswith("kps")]
    del graph.graph.output[:]
    graph.graph.output.extend(kept)
    with pytest.raises(ModelLoadError, match="SCRFD"):
        detector(settings, graph).load()


# --- the real starter detector (SCRFD 2.5G) ------------------------------------------------------------


@pytest.fixture(scope="module")
def real_detector(starter_cache: object, tmp_path_factory: pytest.TempPathFactory) -> FaceDetector:
    from immich_ml.models.starter import FACE_MODEL

    settings = Settings(cache_folder=starter_cache)  # type: ignore[arg-type]
    spec = resolve(FACE_MODEL, ModelTask.FACIAL_RECOGNITION, ModelType.DETECTION)
    model = ModelManager(settings, Target(), ModelStore(settings)).get(spec)
    assert isinstance(model, FaceDetector)
    return model


def load_rgb(path: object) -> npt.NDArray[np.uint8]:
    from immich_ml.ops.image import decode_image

    with open(path, "rb") as handle:  # type: ignore[call-overload]
        return decode_image(handle.read())


def test_astronaut_has_one_face(real_detector: FaceDetector, photos: dict[str, object]) -> None:
    found = detect(real_detector, load_rgb(photos["astronaut"]))
    assert len(found) == 1
    x1, y1, x2, y2 = found.boxes[0]
    assert 160 <= x1 <= 200 and 240 <= x2 <= 290 and 40 <= y1 <= 75 and 160 <= y2 <= 200
    for x, y in found.landmarks[0]:
        assert x1 <= x <= x2 and y1 <= y <= y2
    left_eye, right_eye, nose, left_mouth, right_mouth = found.landmarks[0]
    assert left_eye[0] < right_eye[0] and left_mouth[0] < right_mouth[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(left_mouth[1], right_mouth[1])
    assert found.scores[0] > 0.7


@pytest.mark.parametrize("photo", ["chelsea", "coffee"])
def test_no_faces_on_cat_and_coffee(real_detector: FaceDetector, photos: dict[str, object], photo: str) -> None:
    assert len(detect(real_detector, load_rgb(photos[photo]))) == 0


def test_solvay_group_photo(real_detector: FaceDetector, photos: dict[str, object]) -> None:
    found = detect(real_detector, load_rgb(photos["solvay"]))
    assert len(found) >= 25
    assert np.all(np.diff(found.scores) <= 0)
