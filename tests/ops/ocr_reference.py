"""Independent OCR references for the compiled kernels in immich_ml.ops.ocr: each step written the
way RapidOCR 3.x / Immich v3 run it, with Pillow, OpenCV, pyclipper, shapely and numpy (test-only
dependencies). Shared by tests/ops/test_ocr_*.py and benchmarks/bench_ocr.py."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pyclipper
from numpy.typing import NDArray
from PIL import Image
from shapely.geometry import Polygon


def det_input(image: NDArray[np.uint8], resized_h: int, resized_w: int) -> NDArray[np.float32]:
    """Immich v3 TextDetector._transform: (1, 3, h, w) float32."""
    resized = Image.fromarray(image).resize((resized_w, resized_h), resample=Image.Resampling.LANCZOS)
    bgr = cv2.cvtColor(np.array(resized, dtype=np.float32), cv2.COLOR_RGB2BGR)
    bgr -= np.array([0.5, 0.5, 0.5], dtype=np.float32)
    bgr *= np.float32(1.0) / (np.array([0.5, 0.5, 0.5], dtype=np.float32) * 255.0)
    return np.transpose(bgr, (2, 0, 1))[None]


def _mini_box(contour: NDArray) -> tuple[NDArray[np.float32], float]:
    rect = cv2.minAreaRect(contour)
    points = sorted(list(cv2.boxPoints(rect)), key=lambda p: p[0])
    i1, i4 = (0, 1) if points[1][1] > points[0][1] else (1, 0)
    i2, i3 = (2, 3) if points[3][1] > points[2][1] else (3, 2)
    return np.array([points[i1], points[i2], points[i3], points[i4]]), min(rect[1])


def snap(values: NDArray[np.float32]) -> NDArray[np.float32]:
    """Min-area-rect corners within 1e-3 of a whole number, snapped to it before truncation (the
    kernel does the same: that float noise differs between OpenCV versions)."""
    rounded = np.round(values)
    return np.where(np.abs(values - rounded) < 1e-3, rounded, values).astype(np.float32)


def _score_fast(prob: NDArray[np.float32], quad: NDArray[np.float32]) -> float:
    h, w = prob.shape
    box = quad.copy()
    xmin = np.clip(np.floor(box[:, 0].min()).astype(np.int32), 0, w - 1)
    xmax = np.clip(np.ceil(box[:, 0].max()).astype(np.int32), 0, w - 1)
    ymin = np.clip(np.floor(box[:, 1].min()).astype(np.int32), 0, h - 1)
    ymax = np.clip(np.ceil(box[:, 1].max()).astype(np.int32), 0, h - 1)
    mask = np.zeros((ymax - ymin + 1, xmax - xmin + 1), dtype=np.uint8)
    box[:, 0] -= xmin
    box[:, 1] -= ymin
    cv2.fillPoly(mask, snap(box).reshape(1, -1, 2).astype(np.int32), 1)
    return float(cv2.mean(prob[ymin : ymax + 1, xmin : xmax + 1], mask)[0])


def _score_slow(prob: NDArray[np.float32], contour: NDArray) -> float:
    h, w = prob.shape
    c = contour.reshape(-1, 2).copy()
    xmin, xmax = np.clip(c[:, 0].min(), 0, w - 1), np.clip(c[:, 0].max(), 0, w - 1)
    ymin, ymax = np.clip(c[:, 1].min(), 0, h - 1), np.clip(c[:, 1].max(), 0, h - 1)
    mask = np.zeros((ymax - ymin + 1, xmax - xmin + 1), dtype=np.uint8)
    c[:, 0] -= xmin
    c[:, 1] -= ymin
    cv2.fillPoly(mask, c.reshape(1, -1, 2).astype(np.int32), 1)
    return float(cv2.mean(prob[ymin : ymax + 1, xmin : xmax + 1], mask)[0])


def _unclip(box: NDArray[np.float32], ratio: float) -> NDArray:
    poly = Polygon(box)
    distance = poly.area * ratio / poly.length
    offset = pyclipper.PyclipperOffset()
    offset.AddPath(snap(box), pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    return np.array(offset.Execute(distance)).reshape((-1, 1, 2))


def _order(pts: NDArray) -> NDArray[np.float32]:
    x_sorted = pts[np.argsort(pts[:, 0], kind="stable"), :]
    left = x_sorted[:2][np.argsort(x_sorted[:2, 1], kind="stable")]
    right = x_sorted[2:][np.argsort(x_sorted[2:, 1], kind="stable")]
    return np.array([left[0], right[0], right[1], left[1]], dtype=np.float32)


def _reading_order(boxes: NDArray[np.float32], scores: NDArray[np.float32]):
    if len(boxes) == 0:
        return boxes, scores
    y_order = np.argsort(boxes[:, 0, 1], kind="stable")
    sorted_y = boxes[y_order, 0, 1]
    line_ids = np.empty(len(boxes), dtype=np.int32)
    line_ids[0] = 0
    np.cumsum(np.abs(np.diff(sorted_y)) >= 10, out=line_ids[1:])
    key = line_ids * 1e6 + boxes[y_order, 0, 0]
    final = y_order[np.argsort(key, kind="stable")]
    return boxes[final], scores[final]


def db_boxes(
    prob: NDArray[np.float32], src_h: int, src_w: int, *, min_score: float = 0.5,
    score_mode: str = "fast", threshold: float = 0.3, max_candidates: int = 1000,
    unclip_ratio: float = 1.6,
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """RapidOCR DBPostProcess(use_dilation=True) + filter_det_res + Immich's sorted_boxes."""
    height, width = prob.shape
    mask = cv2.dilate((prob > threshold).astype(np.uint8), np.array([[1, 1], [1, 1]]))
    contours, _ = cv2.findContours(mask * 255, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    boxes, scores = [], []
    for contour in contours[:max_candidates]:
        quad, sside = _mini_box(contour)
        if sside < 3:
            continue
        score = _score_fast(prob, quad) if score_mode == "fast" else _score_slow(prob, contour)
        if min_score > score:
            continue
        expanded = _unclip(quad, unclip_ratio)
        if expanded.size == 0:
            continue
        box, sside = _mini_box(expanded)
        if sside < 5:
            continue
        box[:, 0] = np.clip(np.round(box[:, 0] / width * src_w), 0, src_w)
        box[:, 1] = np.clip(np.round(box[:, 1] / height * src_h), 0, src_h)
        box = box.astype(np.int32)
        box = _order(box)
        box[:, 0] = np.clip(box[:, 0], 0, src_w - 1).astype(np.int32)
        box[:, 1] = np.clip(box[:, 1], 0, src_h - 1).astype(np.int32)
        if int(np.linalg.norm(box[0] - box[1])) <= 3 or int(np.linalg.norm(box[0] - box[3])) <= 3:
            continue
        boxes.append(box)
        scores.append(score)
    out_boxes = np.array(boxes, dtype=np.float32).reshape(-1, 4, 2)
    return _reading_order(out_boxes, np.array(scores, dtype=np.float32))


def crop(image_rgb: NDArray[np.uint8], quad: NDArray[np.float32]) -> NDArray[np.uint8]:
    """RapidOCR get_rotate_crop_image on a BGR image: perspective crop + rot90 when tall."""
    bgr = image_rgb[:, :, ::-1]
    w = int(max(np.linalg.norm(quad[0] - quad[1]), np.linalg.norm(quad[2] - quad[3])))
    h = int(max(np.linalg.norm(quad[0] - quad[3]), np.linalg.norm(quad[1] - quad[2])))
    std = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    m = cv2.getPerspectiveTransform(quad.astype(np.float32), std)
    out = cv2.warpPerspective(
        np.ascontiguousarray(bgr), m, (w, h), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC
    )
    if out.shape[0] * 1.0 / out.shape[1] >= 1.5:
        out = np.rot90(out)
    return out


def rec_batch(
    image_rgb: NDArray[np.uint8], quads: NDArray[np.float32], batch: int, batch_width: int,
    out_width: int, height: int = 48,
) -> NDArray[np.float32]:
    """RapidOCR TextRecognizer.resize_norm_img for each crop, padded into (batch, 3, 48, out_width)."""
    out = np.zeros((batch, 3, height, out_width), dtype=np.float32)
    for i, quad in enumerate(quads):
        img = crop(image_rgb, quad)
        h, w = img.shape[:2]
        ratio = w / float(h)
        resized_w = batch_width if math.ceil(height * ratio) > batch_width else int(math.ceil(height * ratio))
        resized = cv2.resize(img, (resized_w, height)).astype("float32")
        resized = resized.transpose((2, 0, 1)) / 255
        resized -= 0.5
        resized /= 0.5
        out[i, :, :, :resized_w] = resized
    return out


def ctc_decode(probs: NDArray[np.float32], charset: list[str]) -> list[tuple[str, float]]:
    """RapidOCR CTCLabelDecode (without its 5-decimal rounding)."""
    index = probs.argmax(axis=2)
    prob = probs.max(axis=2)
    out = []
    for i in range(len(index)):
        keep = np.ones(len(index[i]), dtype=bool)
        keep[1:] = index[i][1:] != index[i][:-1]
        keep &= index[i] != 0
        text = "".join(charset[k] for k in index[i][keep])
        out.append((text, float(np.mean(prob[i][keep])) if keep.any() else 0.0))
    return out
