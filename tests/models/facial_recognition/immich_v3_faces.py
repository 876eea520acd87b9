"""Immich v3's face pipeline, rebuilt for the tests from its documented steps (reference
immich-v3-delta.md §4) with Pillow, OpenCV, numpy, scikit-image and ONNX Runtime only — no immich_ml
code, so that it can judge ours:

1. decode with Pillow, RGB;
2. letterbox: the long side fills 640, the other is truncated, ``cv2.resize`` (INTER_LINEAR, no
   antialiasing) into the top-left of a zero 640×640 canvas; scale = new height / height;
   ``(x - 127.5) / 128``, NCHW;
3. SCRFD decode (anchor centres from ``np.mgrid``, distances and offsets times the stride), keep
   scores >= minScore, boxes and landmarks divided by the scale, ``cv2.dnn.NMSBoxes`` 0.4 on
   (x, y, w, h), boxes rounded;
4. per face: least-squares similarity onto the ArcFace template (scikit-image's Umeyama),
   ``cv2.warpAffine`` bilinear to 112×112, the recognizer's normalization, one run for all faces.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from PIL import Image
from skimage.transform import SimilarityTransform

SIZE = 640
STRIDES = (8, 16, 32)
ANCHORS = 2
NMS_THRESHOLD = 0.4
ARCFACE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)


@dataclass(frozen=True)
class Face:
    box: npt.NDArray[np.float32]  # (4,) rounded x1, y1, x2, y2
    score: float
    embedding: npt.NDArray[np.float32]


def decode(data: bytes) -> npt.NDArray[np.uint8]:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.uint8)


def letterbox(image: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.float32], float]:
    height, width = image.shape[:2]
    ratio = height / width
    if ratio > 1:
        new_h, new_w = SIZE, int(SIZE / ratio)
    else:
        new_w, new_h = SIZE, int(SIZE * ratio)
    canvas = np.zeros((SIZE, SIZE, 3), np.uint8)
    canvas[:new_h, :new_w] = cv2.resize(image, (new_w, new_h))
    blob = ((canvas.astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1)[None]
    return np.ascontiguousarray(blob), new_h / height


def detect(
    session: ort.InferenceSession, image: npt.NDArray[np.uint8], min_score: float
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """(boxes rounded (N, 4), scores (N,), landmarks (N, 5, 2)), best score first."""
    blob, scale = letterbox(image)
    names = [o.name for o in session.get_outputs()]
    out = dict(zip(names, session.run(None, {session.get_inputs()[0].name: blob}), strict=True))
    scores, boxes, kps = [], [], []
    for stride in STRIDES:
        ys, xs = np.mgrid[: SIZE // stride, : SIZE // stride]
        centres = np.repeat(np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float32) * stride, ANCHORS, axis=0)
        distance = out[f"bbox_{stride}"].reshape(-1, 4) * stride
        offsets = out[f"kps_{stride}"].reshape(-1, 10) * stride
        scores.append(out[f"score_{stride}"].reshape(-1))
        boxes.append(np.concatenate([centres - distance[:, :2], centres + distance[:, 2:]], axis=1))
        kps.append(np.tile(centres, 5) + offsets)
    score = np.concatenate(scores)
    keep = score >= min_score
    score = score[keep]
    box = np.concatenate(boxes)[keep] / scale
    landmarks = np.concatenate(kps)[keep] / scale
    xywh = np.column_stack([box[:, 0], box[:, 1], box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]])
    kept = np.asarray(cv2.dnn.NMSBoxes(xywh.tolist(), score.tolist(), 0.0, NMS_THRESHOLD), dtype=np.intp).reshape(-1)
    return box[kept].round(), score[kept], landmarks[kept].reshape(-1, 5, 2)


def normalization(model_dir: Path) -> tuple[float, float]:
    """The recognizer's (mean, std): the starter says so in immich_ml.json, ArcFace's otherwise."""
    path = model_dir / "immich_ml.json"
    if not path.is_file():
        return 127.5, 127.5
    data = json.loads(path.read_text())
    return float(np.ravel(data["mean"])[0]), float(np.ravel(data["std"])[0])


def align(image: npt.NDArray[np.uint8], landmarks: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
    transform = SimilarityTransform.from_estimate(landmarks, ARCFACE)
    return cv2.warpAffine(image, transform.params[:2], (112, 112))


@lru_cache(maxsize=4)
def session(model_dir: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])


def faces(detector: Path, recognizer: Path, data: bytes, min_score: float = 0.7) -> list[Face]:
    """Every face of the image as Immich v3 answers it (the models' ``model.onnx``, CPU)."""
    det, rec = session(detector), session(recognizer)
    image = decode(data)
    boxes, scores, landmarks = detect(det, image, min_score)
    if len(boxes) == 0:
        return []
    mean, std = normalization(recognizer)
    crops = np.stack([align(image, kps) for kps in landmarks]).astype(np.float32)
    batch = np.ascontiguousarray(((crops - mean) / std).transpose(0, 3, 1, 2))
    embeddings = rec.run(None, {rec.get_inputs()[0].name: batch})[0]
    return [Face(b, float(s), e) for b, s, e in zip(boxes, scores, embeddings, strict=True)]


def _figures() -> None:
    """Box and embedding differences between the installed immich_ml and this rebuild of v3, per
    photo. Run: python tests/models/facial_recognition/immich_v3_faces.py [--cache .cache/models]"""
    import argparse

    import orjson

    from immich_ml.backends.base import Target
    from immich_ml.config import Settings
    from immich_ml.models import starter
    from immich_ml.pipeline import Pipeline
    from immich_ml.schemas import Entry, ModelTask, ModelType

    parser = argparse.ArgumentParser(description=_figures.__doc__)
    parser.add_argument("--cache", type=Path, default=Path(__file__).resolve().parents[3] / ".cache" / "models")
    args = parser.parse_args()
    starter.install(args.cache)
    photos = starter.photos(args.cache)
    root = args.cache / "facial-recognition" / starter.FACE_MODEL
    engine = Pipeline(Settings(cache_folder=args.cache), Target())
    task = ModelTask.FACIAL_RECOGNITION
    print(f"{'photo':<10} {'minScore':>8} {'faces ours/v3':>13} {'max |box|':>10} {'mean |box|':>10} {'min cos':>9} {'mean cos':>9}")
    for name in ("astronaut", "newton", "gauss", "solvay"):
        data = photos[name].read_bytes()
        for min_score in (0.7, 0.3):
            entries = (
                Entry(starter.FACE_MODEL, task, ModelType.DETECTION, {"minScore": min_score}),
                Entry(starter.FACE_MODEL, task, ModelType.RECOGNITION),
            )
            found = engine.predict(entries, image=data)[task.value]
            expected = faces(root / "detection", root / "recognition", data, min_score)
            deltas, cosines = [], []
            for reference in expected:  # pair each v3 face with our nearest box
                boxes = np.array([[f["boundingBox"][k] for k in ("x1", "y1", "x2", "y2")] for f in found], np.float64)
                if not len(boxes):
                    break
                i = int(np.abs(boxes - reference.box).max(axis=1).argmin())
                deltas.append(float(np.abs(boxes[i] - reference.box).max()))
                ours = np.array(orjson.loads(found[i]["embedding"]), np.float64)
                theirs = reference.embedding.astype(np.float64)
                cosines.append(float(ours @ theirs / np.linalg.norm(ours) / np.linalg.norm(theirs)))
            print(
                f"{name:<10} {min_score:>8} {len(found):>6}/{len(expected):<6} {max(deltas, default=0):>10.0f} "
                f"{np.mean(deltas) if deltas else 0:>10.3f} {min(cosines, default=1):>9.6f} {np.mean(cosines) if cosines else 1:>9.6f}"
            )
    engine.close()


if __name__ == "__main__":
    _figures()
