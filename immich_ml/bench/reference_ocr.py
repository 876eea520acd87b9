"""Reference OCR pipeline: PP-OCRv5 detection + recognition the way Immich v3 (RapidOCR 3.8.1) does it.

Written for this benchmark and the tests from the documented algorithm (immich-v3-delta §2.4-2.6),
not copied, with the libraries upstream uses: Pillow, OpenCV, pyclipper, shapely, ONNX Runtime.

1. Pillow decode, RGB. Side < 32 → no text.
2. Detector input: ``r = min(maxResolution / short side, 1)``, sides ``int(side * r)`` rounded to the
   nearest multiple of 32, Pillow LANCZOS, RGB→BGR, ``(x - 0.5) / 127.5``, NCHW, batch 1.
3. DB post-processing (RapidOCR's DBPostProcess): threshold 0.3, 2×2 dilation, ``cv2.findContours``
   (list, simple chain), at most 1000, ``cv2.minAreaRect`` (short side < 3 dropped), fast/slow box
   score with ``cv2.fillPoly`` + ``cv2.mean``, unclip with shapely area/length and pyclipper's
   round-joined offset, second rectangle (short side < 5 dropped), rounded scaling to the image,
   then corners TL,TR,BR,BL, clip, drop edges <= 3 px, reading order (y, 10 px lines, then x).
4. Crops: ``cv2.getPerspectiveTransform`` + ``cv2.warpPerspective`` (bicubic, border replicate),
   rotated 90° when h/w >= 1.5, BGR; sorted by w/h, batches of 6, width ``int(48 * max(320/48,
   max w/h))``, ``cv2.resize`` to height 48, ``(x/255 - 0.5) / 0.5``, zero right padding.
5. CTC greedy decode with the charset from the model's ``character`` metadata; score = mean
   probability of kept steps, rounded to 5 decimals; texts with score > recognition minScore kept.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from immich_ml.bench.reference import immich_cpu_session, stage

THRESHOLD = 0.3
MAX_CANDIDATES = 1000
UNCLIP_RATIO = 1.6
MIN_SIZE = 3
REC_HEIGHT = 48
REC_MIN_WIDTH = 320
LINE_GAP = 10


def det_size(height: int, width: int, max_resolution: int) -> tuple[int, int]:
    ratio = min(max_resolution / min(height, width), 1.0)
    return (
        max(32, int(round(int(height * ratio) / 32) * 32)),
        max(32, int(round(int(width * ratio) / 32) * 32)),
    )


def det_input(rgb: Any, max_resolution: int) -> tuple[npt.NDArray[np.float32], int, int]:
    """Detector blob (1,3,h,w) from a Pillow RGB image, and the resized (h, w)."""
    from PIL import Image

    h, w = det_size(rgb.height, rgb.width, max_resolution)
    resized = np.asarray(rgb.resize((w, h), Image.Resampling.LANCZOS), dtype=np.float32)[:, :, ::-1]
    blob = ((resized - 0.5) / 127.5).transpose(2, 0, 1)[None]
    return np.ascontiguousarray(blob, dtype=np.float32), h, w


def mini_box(contour: npt.NDArray[Any]) -> tuple[npt.NDArray[np.float32], float]:
    """Minimum-area rectangle's corners in RapidOCR's order and its short side."""
    import cv2

    rect = cv2.minAreaRect(contour)
    points = sorted(cv2.boxPoints(rect).tolist(), key=lambda p: p[0])
    first, fourth = (0, 1) if points[1][1] > points[0][1] else (1, 0)
    second, third = (2, 3) if points[3][1] > points[2][1] else (3, 2)
    box = np.array([points[first], points[second], points[third], points[fourth]], dtype=np.float32)
    return box, float(min(rect[1]))


def polygon_score(prob: npt.NDArray[np.float32], polygon: npt.NDArray[Any]) -> float:
    """Mean of ``prob`` inside ``polygon`` (N,2), as RapidOCR's box_score_fast/slow compute it."""
    import cv2

    h, w = prob.shape
    pts = polygon.astype(np.float64).copy()
    xmin = int(np.clip(np.floor(pts[:, 0].min()), 0, w - 1))
    xmax = int(np.clip(np.ceil(pts[:, 0].max()), 0, w - 1))
    ymin = int(np.clip(np.floor(pts[:, 1].min()), 0, h - 1))
    ymax = int(np.clip(np.ceil(pts[:, 1].max()), 0, h - 1))
    mask = np.zeros((ymax - ymin + 1, xmax - xmin + 1), dtype=np.uint8)
    pts[:, 0] -= xmin
    pts[:, 1] -= ymin
    cv2.fillPoly(mask, [pts.reshape(-1, 2).astype(np.int32)], 1)
    return float(cv2.mean(prob[ymin : ymax + 1, xmin : xmax + 1], mask)[0])


def unclip(box: npt.NDArray[np.float32]) -> npt.NDArray[Any] | None:
    import pyclipper
    from shapely.geometry import Polygon

    poly = Polygon(box)
    if poly.length == 0:
        return None
    distance = poly.area * UNCLIP_RATIO / poly.length
    offset = pyclipper.PyclipperOffset()
    offset.AddPath(box.tolist(), pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    paths = offset.Execute(distance)
    if len(paths) != 1:
        return None
    return np.array(paths[0], dtype=np.float32).reshape(-1, 1, 2)


def order_corners(pts: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    s = pts.sum(axis=1)
    tl, br = int(np.argmin(s)), int(np.argmax(s))
    rest = np.delete(pts, (tl, br), axis=0)
    diff = np.diff(rest, axis=1).reshape(-1)
    return np.array([pts[tl], rest[int(np.argmin(diff))], pts[br], rest[int(np.argmax(diff))]], dtype=np.float32)


def reading_order(boxes: list[npt.NDArray[np.float32]], scores: list[float]) -> list[int]:
    """Indices in reading order: stable by TL.y, a new line when y jumps >= 10 px, x within a line."""
    by_y = sorted(range(len(boxes)), key=lambda i: float(boxes[i][0][1]))
    lines: list[list[int]] = []
    previous_y: float | None = None
    for i in by_y:
        y = float(boxes[i][0][1])
        if previous_y is None or y - previous_y >= LINE_GAP:
            lines.append([])
        lines[-1].append(i)
        previous_y = y
    return [i for line in lines for i in sorted(line, key=lambda j: float(boxes[j][0][0]))]


def db_postprocess(
    prob: npt.NDArray[np.float32], src_h: int, src_w: int, min_score: float, score_mode: str = "fast"
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Boxes (N,4,2) in source pixels, TL,TR,BR,BL, reading order; scores (N,)."""
    import cv2

    height, width = prob.shape
    mask = cv2.dilate((prob > THRESHOLD).astype(np.uint8), np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(mask * 255, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    boxes: list[npt.NDArray[np.float32]] = []
    scores: list[float] = []
    for contour in contours[:MAX_CANDIDATES]:
        points, short = mini_box(contour)
        if short < MIN_SIZE:
            continue
        shape = contour.reshape(-1, 2) if score_mode == "slow" else points
        score = polygon_score(prob, shape)
        if min_score > score:
            continue
        expanded = unclip(points)
        if expanded is None:
            continue
        box, short = mini_box(expanded)
        if short < MIN_SIZE + 2:
            continue
        box[:, 0] = np.clip(np.round(box[:, 0] / width * src_w), 0, src_w)
        box[:, 1] = np.clip(np.round(box[:, 1] / height * src_h), 0, src_h)
        box = order_corners(box)
        box[:, 0] = np.clip(box[:, 0], 0, src_w - 1)
        box[:, 1] = np.clip(box[:, 1], 0, src_h - 1)
        box = np.trunc(box)
        if int(np.linalg.norm(box[0] - box[1])) <= 3 or int(np.linalg.norm(box[0] - box[3])) <= 3:
            continue
        boxes.append(box)
        scores.append(score)
    order = reading_order(boxes, scores)
    if not order:
        return np.zeros((0, 4, 2), np.float32), np.zeros((0,), np.float32)
    return np.stack([boxes[i] for i in order]), np.array([scores[i] for i in order], dtype=np.float32)


def crop(image_bgr: npt.NDArray[np.uint8], box: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
    import cv2

    w = int(max(np.linalg.norm(box[0] - box[1]), np.linalg.norm(box[2] - box[3])))
    h = int(max(np.linalg.norm(box[0] - box[3]), np.linalg.norm(box[1] - box[2])))
    target = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(box.astype(np.float32), target)
    out = cv2.warpPerspective(image_bgr, matrix, (w, h), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC)
    if out.shape[0] * 1.0 / out.shape[1] >= 1.5:
        out = np.rot90(out)
    return np.asarray(out, dtype=np.uint8)


def rec_input(crops: list[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]:
    """One recognizer batch as RapidOCR builds it."""
    import cv2

    ratio = max([REC_MIN_WIDTH / REC_HEIGHT] + [c.shape[1] / c.shape[0] for c in crops])
    width = int(REC_HEIGHT * ratio)
    batch = np.zeros((len(crops), 3, REC_HEIGHT, width), dtype=np.float32)
    for i, c in enumerate(crops):
        resized_w = min(width, int(math.ceil(REC_HEIGHT * c.shape[1] / c.shape[0])))
        resized = cv2.resize(c, (resized_w, REC_HEIGHT)).astype(np.float32)
        batch[i, :, :, :resized_w] = (resized.transpose(2, 0, 1) / 255 - 0.5) / 0.5
    return batch


def ctc_decode(probs: npt.NDArray[np.float32], charset: list[str]) -> list[tuple[str, float]]:
    indices, best = probs.argmax(axis=2), probs.max(axis=2)
    results = []
    for idx, prob in zip(indices, best, strict=True):
        keep = np.ones(len(idx), dtype=bool)
        keep[1:] = idx[1:] != idx[:-1]
        keep &= idx != 0
        chars = [charset[i] for i in idx[keep]]
        conf = prob[keep]
        results.append(("".join(chars), float(np.mean(conf)) if len(conf) else 0.0))
    return results


class ReferenceOcr:
    """Immich v3's OCR. ``det_dir``/``rec_dir`` are ``<cache>/ocr/<name>/{detection,recognition}``."""

    def __init__(
        self,
        det_dir: Path,
        rec_dir: Path,
        *,
        max_resolution: int = 736,
        det_min_score: float = 0.5,
        rec_min_score: float = 0.8,
        batch: int = 6,
    ) -> None:
        self.max_resolution = max_resolution
        self.det_min_score = det_min_score
        self.rec_min_score = rec_min_score
        self.batch = batch
        self.detector = immich_cpu_session(det_dir / "model.onnx")
        self.recognizer = immich_cpu_session(rec_dir / "model.onnx")
        character = self.recognizer.get_modelmeta().custom_metadata_map["character"]
        self.charset = ["blank", *character.splitlines(), " "]

    def __call__(self, payload: bytes | str, timings: dict[str, float] | None = None) -> dict[str, Any]:
        from PIL import Image

        assert isinstance(payload, bytes)
        with stage(timings, "decode"):
            with Image.open(io.BytesIO(payload)) as opened:
                rgb = opened.convert("RGB")
        boxes, box_scores = self.detect(rgb, timings)
        texts, text_scores = self.recognize(np.asarray(rgb), boxes, timings)
        with stage(timings, "serialize"):
            keep = [i for i, s in enumerate(text_scores) if s > self.rec_min_score]
            scale = np.array([rgb.width, rgb.height], dtype=np.float32)
            normalized = (boxes / scale).reshape(-1, 8).astype(np.float32)
            result = {
                "box": [float(v) for i in keep for v in normalized[i]],
                "boxScore": [float(box_scores[i]) for i in keep],
                "text": [texts[i] for i in keep],
                "textScore": [text_scores[i] for i in keep],
            }
        return {"ocr": result, "imageHeight": rgb.height, "imageWidth": rgb.width}

    def detect(
        self, rgb: Any, timings: dict[str, float] | None = None, score_mode: str = "fast"
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        if rgb.height < 32 or rgb.width < 32:
            return np.zeros((0, 4, 2), np.float32), np.zeros((0,), np.float32)
        with stage(timings, "preprocess"):
            blob, h, w = det_input(rgb, self.max_resolution)
        with stage(timings, "inference"):
            prob = self.detector.run(None, {self.detector.get_inputs()[0].name: blob})[0]
        with stage(timings, "postprocess"):
            return db_postprocess(prob[0, 0], rgb.height, rgb.width, self.det_min_score, score_mode)

    def recognize(
        self, rgb: npt.NDArray[np.uint8], boxes: npt.NDArray[np.float32], timings: dict[str, float] | None = None
    ) -> tuple[list[str], list[float]]:
        count = len(boxes)
        texts, scores = [""] * count, [0.0] * count
        if count == 0:
            return texts, scores
        with stage(timings, "preprocess"):
            bgr = np.ascontiguousarray(rgb[:, :, ::-1])
            crops = [crop(bgr, box) for box in boxes]
            order = np.argsort([c.shape[1] / c.shape[0] for c in crops], kind="stable")
        name = self.recognizer.get_inputs()[0].name
        for start in range(0, count, self.batch):
            indices = order[start : start + self.batch]
            with stage(timings, "preprocess"):
                blob = rec_input([crops[i] for i in indices])
            with stage(timings, "inference"):
                probs = self.recognizer.run(None, {name: blob})[0]
            with stage(timings, "postprocess"):
                for i, (text, score) in zip(indices.tolist(), ctc_decode(probs, self.charset), strict=True):
                    texts[i], scores[i] = text, round(score, 5)
        return texts, scores
