"""Faces as Immich v3 computes them: the whole product path (Pipeline: decode, compiled letterbox,
SCRFD decode + NMS, alignment, recognizer) against an independent rebuild of v3's steps
(immich_v3_faces.py: Pillow, cv2.resize, numpy, cv2.dnn.NMSBoxes, scikit-image, cv2.warpAffine) on
the real starter models (SCRFD-2.5G + SFace) and real photos. Boxes must agree to 1 px, embeddings
to cosine 0.99 (measured: boxes equal, cosine >= 0.9999; see the module's figures test)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import immich_v3_faces as v3
import numpy as np
import orjson
import pytest

from immich_ml.backends.base import Target
from immich_ml.config import Settings
from immich_ml.pipeline import Pipeline
from immich_ml.schemas import Entry, ModelTask, ModelType

TASK = ModelTask.FACIAL_RECOGNITION


@pytest.fixture(scope="module")
def pipeline(starter_cache: Path) -> Any:
    engine = Pipeline(Settings(cache_folder=starter_cache), Target())
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def model_dirs(starter_cache: Path) -> tuple[Path, Path]:
    from immich_ml.models.starter import FACE_MODEL

    root = starter_cache / "facial-recognition" / FACE_MODEL
    return root / "detection", root / "recognition"


def ours(pipeline: Pipeline, data: bytes, min_score: float = 0.7) -> list[dict[str, Any]]:
    from immich_ml.models.starter import FACE_MODEL

    entries = (
        Entry(FACE_MODEL, TASK, ModelType.DETECTION, {"minScore": min_score}),
        Entry(FACE_MODEL, TASK, ModelType.RECOGNITION),
    )
    faces: list[dict[str, Any]] = pipeline.predict(entries, image=data)[TASK.value]
    return faces


def compare(found: list[dict[str, Any]], expected: list[v3.Face]) -> tuple[float, float]:
    """(largest box coordinate difference in px, smallest embedding cosine), faces paired in order
    (both best score first)."""
    assert len(found) == len(expected)
    box_delta, cosine = 0.0, 1.0
    for face, reference in zip(found, expected):
        box = np.array([face["boundingBox"][k] for k in ("x1", "y1", "x2", "y2")], np.float64)
        box_delta = max(box_delta, float(np.abs(box - reference.box).max()))
        embedding = np.array(orjson.loads(face["embedding"]), np.float64)
        other = reference.embedding.astype(np.float64)
        cosine = min(cosine, float(embedding @ other / np.linalg.norm(embedding) / np.linalg.norm(other)))
    return box_delta, cosine


@pytest.mark.parametrize(("photo", "count"), [("astronaut", 1), ("solvay", 29), ("newton", 1), ("gauss", 1), ("chelsea", 0)])
def test_faces_match_immich_v3(
    pipeline: Pipeline, model_dirs: tuple[Path, Path], photos: dict[str, Path], photo: str, count: int
) -> None:
    data = photos[photo].read_bytes()
    expected = v3.faces(*model_dirs, data)
    found = ours(pipeline, data)
    assert len(expected) == count
    box_delta, cosine = compare(found, expected)
    assert box_delta <= 1.0, f"{photo}: boxes differ by {box_delta} px"
    assert cosine >= 0.99, f"{photo}: embedding cosine {cosine}"


def test_low_min_score_and_a_jpeg_of_an_odd_size(
    pipeline: Pipeline, model_dirs: tuple[Path, Path], photos: dict[str, Path]
) -> None:
    """More candidates through NMS (minScore 0.3), and a letterbox that is neither exact 2x nor
    square (the solvay JPEG cropped to 1999x1361)."""
    import io

    from PIL import Image

    image = Image.open(photos["solvay"]).convert("RGB").crop((301, 207, 2300, 1568))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92)
    data = buffer.getvalue()
    expected = v3.faces(*model_dirs, data, min_score=0.3)
    found = ours(pipeline, data, min_score=0.3)
    assert len(expected) >= 10
    box_delta, cosine = compare(found, expected)
    assert box_delta <= 1.0 and cosine >= 0.99, (box_delta, cosine)
