"""Reference face pipeline: detection + recognition the way immich-machine-learning (insightface) does it.

Written for this benchmark from the documented algorithm (contract §4.5–4.6), not copied:

1. ``cv2.imdecode`` → BGR pixels.
2. Letterbox: keep the aspect ratio so the image fits the detector input, ``cv2.resize``
   (bilinear), paste top-left on a zero canvas; ``cv2.dnn.blobFromImage(swapRB=True)`` normalises.
3. SCRFD decode in numpy: anchor centres per stride, distances → boxes and keypoints, score
   threshold, sort, divide by the letterbox scale, greedy NMS (IoU 0.4, ``+1`` areas).
4. Per face: 5-point similarity transform (Umeyama, no reflection) onto the ArcFace template,
   ``cv2.warpAffine`` to 112×112; all crops through ``cv2.dnn.blobFromImages`` and one recognizer
   run (Immich's default batch on CPU: every face at once).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from immich_ml.bench.reference import immich_cpu_session, serialize, stage

ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
STRIDES = (8, 16, 32)
ANCHORS = 2
IOU_THRESHOLD = 0.4


def _normalization(directory: Path, mean: float, std: float) -> tuple[float, float]:
    """(mean, std) from the starter's ``immich_ml.json``; Immich's insightface defaults otherwise."""
    path = directory / "immich_ml.json"
    if not path.is_file():
        return mean, std
    data = json.loads(path.read_text(encoding="utf-8"))

    def one(value: Any, default: float) -> float:
        return float(value[0] if isinstance(value, list) else value) if value is not None else default

    return one(data.get("mean"), mean), one(data.get("std"), std)


def nms(dets: npt.NDArray[np.float32], threshold: float) -> list[int]:
    """Greedy NMS over ``dets`` (N, 5) = x1, y1, x2, y2, score; kept rows, best first."""
    x1, y1, x2, y2, scores = (dets[:, i] for i in range(5))
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort()[::-1]
    keep: list[int] = []
    while order.size > 0:
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + 1)
        inter = w * h
        overlap = inter / (areas[best] + areas[rest] - inter)
        order = rest[overlap <= threshold]
    return keep


def umeyama(src: npt.NDArray[np.float64], dst: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """2×3 similarity transform (rotation, uniform scale, translation) mapping ``src`` onto ``dst``
    in the least-squares sense, without reflection. ``src``/``dst``: (N, 2) points."""
    n = src.shape[0]
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / n
    u, sigma, vt = np.linalg.svd(cov)
    signs = np.ones(2)
    if np.linalg.det(cov) < 0:
        signs[-1] = -1.0
    rotation = u @ np.diag(signs) @ vt
    scale = float((sigma * signs).sum() / ((src_c**2).sum() / n))
    matrix = np.empty((2, 3), dtype=np.float64)
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


class ReferenceFaces:
    """Immich's face detection + recognition. ``model_dir`` is ``<cache>/facial-recognition/<name>``."""

    def __init__(self, model_dir: Path, *, min_score: float = 0.7) -> None:
        self.min_score = min_score
        self.det_mean, self.det_std = _normalization(model_dir / "detection", 127.5, 128.0)
        self.rec_mean, self.rec_std = _normalization(model_dir / "recognition", 127.5, 127.5)
        self.detector = immich_cpu_session(model_dir / "detection" / "model.onnx")
        self.recognizer = immich_cpu_session(model_dir / "recognition" / "model.onnx")
        spec = self.detector.get_inputs()[0]
        height, width = spec.shape[2:4]
        self.input_size = (height, width) if isinstance(height, int) and isinstance(width, int) else (640, 640)
        self.det_input = spec.name
        self.rec_input = self.recognizer.get_inputs()[0].name
        self._centers: dict[int, npt.NDArray[np.float32]] = {}

    def __call__(self, payload: bytes | str, timings: dict[str, float] | None = None) -> dict[str, Any]:
        import cv2

        assert isinstance(payload, bytes)
        with stage(timings, "decode"):
            decoded = cv2.imdecode(np.frombuffer(payload, dtype=np.uint8), cv2.IMREAD_COLOR)
        if decoded is None:
            raise ValueError("OpenCV could not decode the image")
        image: npt.NDArray[np.uint8] = np.asarray(decoded, dtype=np.uint8)
        boxes, scores, landmarks = self.detect(image, timings)
        embeddings = self.recognize(image, landmarks, timings)
        with stage(timings, "serialize"):
            faces = [
                {
                    "boundingBox": {"x1": float(b[0]), "y1": float(b[1]), "x2": float(b[2]), "y2": float(b[3])},
                    "embedding": serialize(embeddings[i]),
                    "score": float(scores[i]),
                }
                for i, b in enumerate(np.round(boxes))
            ]
        return {"facial-recognition": faces, "imageHeight": image.shape[0], "imageWidth": image.shape[1]}

    def detect(
        self, image: npt.NDArray[np.uint8], timings: dict[str, float] | None = None
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Boxes (N, 4) xyxy, scores (N,) and landmarks (N, 5, 2) in source pixels of BGR ``image``."""
        import cv2

        with stage(timings, "preprocess"):
            in_h, in_w = self.input_size
            height, width = image.shape[:2]
            if height / width > in_h / in_w:
                new_h, new_w = in_h, int(in_h / (height / width))
            else:
                new_w, new_h = in_w, int(in_w * (height / width))
            scale = new_h / height
            canvas = np.zeros((in_h, in_w, 3), dtype=np.uint8)
            canvas[:new_h, :new_w] = cv2.resize(image, (new_w, new_h))
            mean = (self.det_mean,) * 3
            blob = cv2.dnn.blobFromImage(canvas, 1.0 / self.det_std, (in_w, in_h), mean, swapRB=True)
        with stage(timings, "inference"):
            outputs = self.detector.run(None, {self.det_input: blob})
        with stage(timings, "postprocess"):
            return self._decode(outputs, scale)

    def _anchor_centres(self, stride: int) -> npt.NDArray[np.float32]:
        centres = self._centers.get(stride)
        if centres is None:
            rows, cols = self.input_size[0] // stride, self.input_size[1] // stride
            ys, xs = np.mgrid[:rows, :cols]
            grid = (np.stack([xs, ys], axis=-1).reshape(-1, 2) * stride).astype(np.float32)
            centres = np.repeat(grid, ANCHORS, axis=0)
            self._centers[stride] = centres
        return centres

    def _decode(
        self, outputs: list[Any], scale: float
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        levels = len(STRIDES)
        all_boxes, all_scores, all_kps = [], [], []
        for i, stride in enumerate(STRIDES):
            scores = np.asarray(outputs[i]).reshape(-1)
            distances = np.asarray(outputs[i + levels]).reshape(-1, 4) * stride
            offsets = np.asarray(outputs[i + 2 * levels]).reshape(-1, 10) * stride
            centres = self._anchor_centres(stride)
            keep = np.where(scores >= self.min_score)[0]
            c, d = centres[keep], distances[keep]
            all_boxes.append(np.stack([c[:, 0] - d[:, 0], c[:, 1] - d[:, 1], c[:, 0] + d[:, 2], c[:, 1] + d[:, 3]], axis=-1))
            all_kps.append(np.tile(c, 5).reshape(-1, 5, 2) + offsets[keep].reshape(-1, 5, 2))
            all_scores.append(scores[keep])
        scores = np.concatenate(all_scores)
        order = scores.argsort()[::-1]
        boxes = (np.concatenate(all_boxes)[order] / scale).astype(np.float32)
        kps = (np.concatenate(all_kps)[order] / scale).astype(np.float32)
        scores = scores[order].astype(np.float32)
        kept = nms(np.hstack([boxes, scores[:, None]]), IOU_THRESHOLD)
        return boxes[kept], scores[kept], kps[kept]

    def recognize(
        self,
        image: npt.NDArray[np.uint8],
        landmarks: npt.NDArray[np.float32],
        timings: dict[str, float] | None = None,
    ) -> npt.NDArray[np.float32]:
        """Raw embeddings (N, D) of the faces at ``landmarks`` (N, 5, 2) in BGR ``image``."""
        import cv2

        if len(landmarks) == 0:
            return np.zeros((0, 0), dtype=np.float32)
        with stage(timings, "preprocess"):
            crops = [
                cv2.warpAffine(image, umeyama(points.astype(np.float64), ARCFACE_TEMPLATE), (112, 112), borderValue=0.0)
                for points in landmarks
            ]
            mean = (self.rec_mean,) * 3
            blob = cv2.dnn.blobFromImages(crops, 1.0 / self.rec_std, (112, 112), mean, swapRB=True)
        with stage(timings, "inference"):
            embeddings: npt.NDArray[np.float32] = self.recognizer.run(None, {self.rec_input: blob})[0]
        return embeddings
