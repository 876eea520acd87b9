"""Real models through OpenVINO (CPU device) vs the CPU provider, end to end through ``Pipeline``.

CLIP (tiny and ViT-B-32 non-semantic starters): embedding cosine >= 0.999. Faces (SCRFD + SFace
on astronaut and the Solvay photo): same faces, boxes within 2 px, embeddings cosine >= 0.999.
OCR (PP-OCRv5 mobile starter on rendered text): same texts, scores within 0.01.
Every model must report OpenVINO as its provider, without a fallback.
Run: ``.venv-openvino/bin/python -m pytest -m openvino``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import nets
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from immich_ml.backends import providers as P
from immich_ml.backends.base import Target
from immich_ml.config import Settings
from immich_ml.schemas import Entry, ModelTask, ModelType

pytestmark = [
    pytest.mark.openvino,
    pytest.mark.skipif(
        P.OPENVINO not in ort.get_available_providers(),
        reason="OpenVINOExecutionProvider is not in this ONNX Runtime build; "
        "run scripts/openvino-venv.sh and .venv-openvino/bin/python -m pytest -m openvino",
    ),
]
CLIP_MODELS = ("ViT-tiny__nonsemantic", "ViT-B-32__nonsemantic")
FACES = "scrfd_sface"
OCR_MODEL = "PP-OCRv5_mobile"
OCR_ENTRIES = [
    Entry(OCR_MODEL, ModelTask.OCR, ModelType.DETECTION, {"minScore": 0.5, "maxResolution": 736}),
    Entry(OCR_MODEL, ModelTask.OCR, ModelType.RECOGNITION, {"minScore": 0.8}),
]
FACE_ENTRIES = [
    Entry(FACES, ModelTask.FACIAL_RECOGNITION, ModelType.DETECTION, {"minScore": 0.5}),
    Entry(FACES, ModelTask.FACIAL_RECOGNITION, ModelType.RECOGNITION),
]


def _mirror(src: Path, dst: Path) -> None:
    """Same files (symlinked, read-only use) in a private tree, so EP caches land in ``dst``."""
    for path in src.rglob("*"):
        if path.is_file():
            target = dst / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(path.resolve())


@pytest.fixture(scope="module")
def ov_cache(starter_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The starter models, with SFace's blocked int8 DequantizeLinear folded to float32.

    OpenVINO's ONNX frontend rejects blocked DequantizeLinear ("number of dequantization scale
    elements must match"); Immich's own recognizers are plain float32, which is what this gives.
    """
    cache = tmp_path_factory.mktemp("ov-cache")
    for name in CLIP_MODELS:
        _mirror(starter_cache / "clip" / name, cache / "clip" / name)
    _mirror(starter_cache / "ocr" / OCR_MODEL, cache / "ocr" / OCR_MODEL)
    faces = cache / "facial-recognition" / FACES
    _mirror(starter_cache / "facial-recognition" / FACES, faces)
    recognizer = faces / "recognition" / "model.onnx"
    folded = nets.fold_dequantize(onnx.load(str(recognizer.resolve())))
    recognizer.unlink()
    onnx.save(folded, str(recognizer))
    return cache


@pytest.fixture(scope="module")
def pipelines(ov_cache: Path) -> Iterator[tuple[Any, Any]]:
    from immich_ml.pipeline import Pipeline

    settings = replace(Settings(), cache_folder=ov_cache, model_ttl=0)
    cpu = Pipeline(settings, Target("cpu"))
    ov = Pipeline(settings, Target("openvino", "0"))
    yield cpu, ov
    cpu.close()
    ov.close()


def _vector(text: str) -> np.ndarray:
    return np.asarray(json.loads(text), dtype=np.float32)


def _assert_on_openvino(ov: Any) -> None:
    loaded = [m for m in ov.status() if m["state"] == "loaded"]
    assert loaded
    for model in loaded:
        assert model["provider"] == P.OPENVINO, model
        assert model["device"] == "openvino:CPU" and model["fallback_reason"] is None, model


@pytest.mark.parametrize("name", CLIP_MODELS)
def test_clip_parity(pipelines: tuple[Any, Any], photos: dict[str, Path], name: str) -> None:
    cpu, ov = pipelines
    for photo in ("astronaut", "chelsea"):
        entry = [Entry(name, ModelTask.SEARCH, ModelType.VISUAL)]
        data = photos[photo].read_bytes()
        a = _vector(cpu.predict(entry, image=data)["clip"])
        b = _vector(ov.predict(entry, image=data)["clip"])
        assert nets.cosine_rows(a[None], b[None])[0] >= 0.999, (name, photo)
    entry = [Entry(name, ModelTask.SEARCH, ModelType.TEXTUAL)]
    for text in ("a photo of a cat", "an astronaut in a white suit"):
        a = _vector(cpu.predict(entry, text=text)["clip"])
        b = _vector(ov.predict(entry, text=text)["clip"])
        assert nets.cosine_rows(a[None], b[None])[0] >= 0.999, (name, text)
    _assert_on_openvino(ov)


@pytest.mark.parametrize(("photo", "expected"), [("astronaut", 1), ("solvay", 29)])
def test_face_parity(pipelines: tuple[Any, Any], photos: dict[str, Path], photo: str, expected: int) -> None:
    cpu, ov = pipelines
    data = photos[photo].read_bytes()
    ref = cpu.predict(FACE_ENTRIES, image=data)["facial-recognition"]
    got = ov.predict(FACE_ENTRIES, image=data)["facial-recognition"]
    assert len(ref) == len(got) == expected
    ref_boxes = np.array([[f["boundingBox"][k] for k in ("x1", "y1", "x2", "y2")] for f in ref])
    got_boxes = np.array([[f["boundingBox"][k] for k in ("x1", "y1", "x2", "y2")] for f in got])
    for i, face in enumerate(got):
        j = int(np.argmin(np.abs(ref_boxes - got_boxes[i]).max(axis=1)))  # order may differ on ties
        assert np.abs(ref_boxes[j] - got_boxes[i]).max() <= 2.0, (photo, i, ref_boxes[j], got_boxes[i])
        cos = nets.cosine_rows(_vector(ref[j]["embedding"])[None], _vector(face["embedding"])[None])[0]
        assert cos >= 0.999, (photo, i, cos)
        assert abs(ref[j]["score"] - face["score"]) < 0.01
    _assert_on_openvino(ov)


def test_ocr_parity(pipelines: tuple[Any, Any]) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "models" / "ocr"))
    import render

    cpu, ov = pipelines
    for image, expected in ((render.sign(), [render.SIGN]), (render.lines(), render.LINES)):
        ref = cpu.predict(OCR_ENTRIES, image=image)["ocr"]
        got = ov.predict(OCR_ENTRIES, image=image)["ocr"]
        assert ref["text"] == got["text"] == expected
        np.testing.assert_allclose(got["textScore"], ref["textScore"], atol=0.01)
        np.testing.assert_allclose(got["boxScore"], ref["boxScore"], atol=0.01)
    _assert_on_openvino(ov)
