"""What the benchmark sends: one workload per Immich job (CLIP image, CLIP search text, faces).

A workload is the ``entries`` field Immich's server sends plus the payloads to cycle through, the
model files (for FLOP counts) and a factory for its reference pipeline. ``compare`` checks that our
answer and the reference's describe the same result, so the speed ratio compares equal work.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from immich_ml.bench.inputs import BenchImage
from immich_ml.bench.reference import Reference, ReferenceClipTextual, ReferenceClipVisual
from immich_ml.bench.reference_faces import ReferenceFaces
from immich_ml.bench.reference_ocr import ReferenceOcr
from immich_ml.bench.text_images import TextImage

WORKLOADS = ("clip-visual", "clip-textual", "faces", "ocr")
FACE_MIN_SCORE = 0.7
# Immich v3's default OCR request (server system config defaults).
OCR_OPTIONS = {"detection": {"minScore": 0.5, "maxResolution": 736}, "recognition": {"minScore": 0.8}}


@dataclass(frozen=True)
class Workload:
    """``name`` is one of :data:`WORKLOADS`; ``payloads`` are image bytes or texts, ``labels`` name them."""

    name: str
    model: str
    entries: str
    payloads: tuple[bytes | str, ...]
    labels: tuple[str, ...]
    model_files: tuple[Path, ...]
    model_dir: Path

    @property
    def is_image(self) -> bool:
        return isinstance(self.payloads[0], bytes)

    def reference(self) -> Reference:
        """A fresh reference pipeline on the same model files."""
        if self.name == "clip-visual":
            return ReferenceClipVisual(self.model_dir / "visual")
        if self.name == "clip-textual":
            return ReferenceClipTextual(self.model_dir / "textual")
        if self.name == "ocr":
            detector = self.model_dir.parent / self.model.split("__")[-1] / "detection"
            return ReferenceOcr(detector, self.model_dir / "recognition",
                                max_resolution=int(OCR_OPTIONS["detection"]["maxResolution"]),
                                det_min_score=OCR_OPTIONS["detection"]["minScore"],
                                rec_min_score=OCR_OPTIONS["recognition"]["minScore"])
        return ReferenceFaces(self.model_dir, min_score=FACE_MIN_SCORE)


def build_workloads(
    names: Sequence[str],
    cache_folder: Path,
    *,
    clip_model: str,
    face_model: str,
    images: Sequence[BenchImage],
    texts: Sequence[str],
    ocr_model: str = "PP-OCRv5_mobile",
    text_images: Sequence[TextImage] = (),
) -> list[Workload]:
    """The workloads called ``names`` (in :data:`WORKLOADS` order) on the given inputs."""
    clip_dir = cache_folder / "clip" / clip_model
    face_dir = cache_folder / "facial-recognition" / face_model
    image_payloads = tuple(image.data for image in images)
    image_labels = tuple(image.name for image in images)
    built = []
    for name in WORKLOADS:
        if name not in names:
            continue
        if name == "clip-visual":
            entries: dict[str, Any] = {"clip": {"visual": {"modelName": clip_model}}}
            built.append(Workload(name, clip_model, orjson.dumps(entries).decode(), image_payloads,
                                  image_labels, (clip_dir / "visual" / "model.onnx",), clip_dir))
        elif name == "ocr":
            ocr_dir = cache_folder / "ocr" / ocr_model
            entries = {"ocr": {kind: {"modelName": ocr_model, "options": options}
                               for kind, options in OCR_OPTIONS.items()}}
            detector = cache_folder / "ocr" / ocr_model.split("__")[-1] / "detection" / "model.onnx"
            built.append(Workload(name, ocr_model, orjson.dumps(entries).decode(),
                                  tuple(image.data for image in text_images),
                                  tuple(image.name for image in text_images),
                                  (detector, ocr_dir / "recognition" / "model.onnx"), ocr_dir))
        elif name == "clip-textual":
            entries = {"clip": {"textual": {"modelName": clip_model}}}
            built.append(Workload(name, clip_model, orjson.dumps(entries).decode(), tuple(texts),
                                  tuple(f"text-{i}" for i in range(len(texts))),
                                  (clip_dir / "textual" / "model.onnx",), clip_dir))
        else:
            entries = {
                "facial-recognition": {
                    "detection": {"modelName": face_model, "options": {"minScore": FACE_MIN_SCORE}},
                    "recognition": {"modelName": face_model},
                }
            }
            built.append(Workload(name, face_model, orjson.dumps(entries).decode(), image_payloads,
                                  image_labels,
                                  (face_dir / "detection" / "model.onnx", face_dir / "recognition" / "model.onnx"),
                                  face_dir))
    return built


def _vector(text: str) -> npt.NDArray[np.float64]:
    return np.asarray(orjson.loads(text), dtype=np.float64)


def cosine(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    denominator = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / denominator if denominator > 0 else 0.0


def _iou(a: dict[str, float], b: dict[str, float]) -> float:
    w = min(a["x2"], b["x2"]) - max(a["x1"], b["x1"])
    h = min(a["y2"], b["y2"]) - max(a["y1"], b["y1"])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    area = (a["x2"] - a["x1"]) * (a["y2"] - a["y1"]) + (b["x2"] - b["x1"]) * (b["y2"] - b["y1"])
    return inter / (area - inter)


def match_faces(
    ours: Sequence[dict[str, Any]], theirs: Sequence[dict[str, Any]], min_iou: float = 0.5
) -> list[tuple[int, int, float]]:
    """Greedy one-to-one matching of two face lists by box IoU: ``(i, j, iou)``, best pairs first."""
    pairs = sorted(
        ((_iou(a["boundingBox"], b["boundingBox"]), i, j) for i, a in enumerate(ours) for j, b in enumerate(theirs)),
        reverse=True,
    )
    used_a: set[int] = set()
    used_b: set[int] = set()
    matched = []
    for iou, i, j in pairs:
        if iou < min_iou:
            break
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            matched.append((i, j, iou))
    return matched


@dataclass
class Agreement:
    """How closely two pipelines agree over a set of payloads (embedding cosines, face counts)."""

    min_cosine: float = 1.0
    faces_ours: int = 0
    faces_other: int = 0
    faces_matched: int = 0
    compared: int = 0
    texts_ours: int = 0
    texts_other: int = 0
    texts_same: int = 0
    max_text_score_difference: float = 0.0
    max_box_score_difference: float = 0.0

    def add(self, workload: str, ours: dict[str, Any], other: dict[str, Any]) -> None:
        self.compared += 1
        if workload.startswith("clip"):
            self.min_cosine = min(self.min_cosine, cosine(_vector(ours["clip"]), _vector(other["clip"])))
            return
        if workload == "ocr":
            self._add_ocr(ours["ocr"], other["ocr"])
            return
        a, b = ours["facial-recognition"], other["facial-recognition"]
        self.faces_ours += len(a)
        self.faces_other += len(b)
        for i, j, _ in match_faces(a, b):
            self.faces_matched += 1
            self.min_cosine = min(self.min_cosine, cosine(_vector(a[i]["embedding"]), _vector(b[j]["embedding"])))

    def _add_ocr(self, ours: dict[str, Any], other: dict[str, Any]) -> None:
        """Texts equal (as multisets, so a reading-order difference is not counted as a wrong text);
        score differences between texts that are equal and at the same position."""
        a, b = list(ours["text"]), list(other["text"])
        self.texts_ours += len(a)
        self.texts_other += len(b)
        remaining = list(b)
        for text in a:
            if text in remaining:
                remaining.remove(text)
                self.texts_same += 1
        for i, text in enumerate(a):
            if i < len(b) and b[i] == text:
                self.max_text_score_difference = max(
                    self.max_text_score_difference, abs(ours["textScore"][i] - other["textScore"][i]))
                self.max_box_score_difference = max(
                    self.max_box_score_difference, abs(ours["boxScore"][i] - other["boxScore"][i]))

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"compared": self.compared, "min_cosine": round(self.min_cosine, 6)}
        if self.texts_ours or self.texts_other:
            return {"compared": self.compared, "texts_ours": self.texts_ours, "texts_other": self.texts_other,
                    "texts_same": self.texts_same,
                    "max_text_score_difference": round(self.max_text_score_difference, 5),
                    "max_box_score_difference": round(self.max_box_score_difference, 5)}
        if self.faces_ours or self.faces_other:
            data |= {"faces_ours": self.faces_ours, "faces_other": self.faces_other,
                     "faces_matched": self.faces_matched}
        return data
