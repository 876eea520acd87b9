"""SCRFD decode + NMS: the compiled kernel vs the numpy/OpenCV post-processing Immich runs (v3) and ran.

Run: python benchmarks/bench_detect.py [--runs N]

Synthetic SCRFD heads for a 640x640 input (strides 8/16/32, 2 anchors per cell, 16,800 anchors):
faces of 30-110 px placed at random, anchors inside a face predict it (with noise), the rest predict
small random boxes with lower scores. Cases:
  * crowd: min_score is set so that exactly 10,000 candidates pass, then NMS (IoU 0.4).
  * photo: 4 faces at min_score 0.7, a typical request.
References, written here from what each does:
  * numpy (insightface's way, Immich before v3): decode every anchor vectorised (cached anchor
    centres), select score >= min_score, concatenate levels, argsort, divide by the scale, then the
    greedy numpy while-loop NMS with +1 areas.
  * cv2 (Immich v3's way, which decode_scrfd reproduces bit for bit): the same numpy decode, then
    cv2.dnn.NMSBoxes(xywh, scores, 0, 0.4).
Each row prints the median of N runs, wall clock and CPU time (OpenCV limited to one thread, like
everything else here); "x numpy" / "x cv2" are the references' median CPU times divided by the
row's, measured in the same run (all cases take turns; CPU time is the steadier figure on a shared
machine, and equals wall time on an idle one).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import cv2
import numpy as np
from numpy.typing import NDArray

from immich_ml.ops.detect import Detections, decode_scrfd
from _timing import medians_ms

SIZE = 640
STRIDES = (8, 16, 32)
F32 = np.float32
Heads = tuple[list[NDArray[np.float32]], list[NDArray[np.float32]], list[NDArray[np.float32]]]


def synthetic_heads(faces: int = 40, seed: int = 0) -> Heads:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, SIZE - 110, (faces, 2))
    boxes_px = np.concatenate([xy, xy + rng.uniform(30, 110, (faces, 1))], axis=1)
    scores, boxes, kps = [], [], []
    for stride in STRIDES:
        grid = SIZE // stride
        centres = np.repeat(np.stack(np.mgrid[:grid, :grid][::-1], -1).reshape(-1, 2) * stride, 2, 0)
        n = centres.shape[0]
        score = rng.uniform(0.0, 0.55, n)
        dist = rng.uniform(0.5, 3.0, (n, 4))
        for face in boxes_px:
            inside = (
                (centres[:, 0] >= face[0]) & (centres[:, 0] <= face[2])
                & (centres[:, 1] >= face[1]) & (centres[:, 1] <= face[3])
            )  # fmt: skip
            c = centres[inside]
            exact = np.stack([c[:, 0] - face[0], c[:, 1] - face[1], face[2] - c[:, 0], face[3] - c[:, 1]], 1)
            dist[inside] = exact / stride * rng.normal(1.0, 0.08, exact.shape)
            score[inside] = rng.uniform(0.3, 1.0, c.shape[0])
        scores.append(score.astype(F32).reshape(n, 1))
        boxes.append(dist.astype(F32))
        kps.append(rng.normal(0, 1, (n, 10)).astype(F32))
    return scores, boxes, kps


ANCHOR_CENTRES = {
    s: np.repeat(
        (np.stack(np.mgrid[: SIZE // s, : SIZE // s][::-1], -1).astype(F32) * s).reshape(-1, 2), 2, 0
    )
    for s in STRIDES
}


def numpy_decode(heads: Heads, min_score: float, scale: float) -> tuple[NDArray, NDArray, NDArray]:
    """Candidates sorted by score (N, 4) boxes, (N,) scores, (N, 10) keypoints, divided by scale."""
    scores_l, boxes_l, kps_l = [], [], []
    for i, stride in enumerate(STRIDES):
        c = ANCHOR_CENTRES[stride]
        s = heads[0][i].reshape(-1)
        d = heads[1][i] * stride
        k = heads[2][i] * stride
        bb = np.stack([c[:, 0] - d[:, 0], c[:, 1] - d[:, 1], c[:, 0] + d[:, 2], c[:, 1] + d[:, 3]], -1)
        kp = np.empty_like(k)
        kp[:, 0::2] = c[:, :1] + k[:, 0::2]
        kp[:, 1::2] = c[:, 1:] + k[:, 1::2]
        pos = np.where(s >= min_score)[0]
        scores_l.append(s[pos])
        boxes_l.append(bb[pos])
        kps_l.append(kp[pos])
    scores = np.concatenate(scores_l)
    order = scores.argsort()[::-1]
    boxes = np.vstack(boxes_l) / scale
    kps = np.vstack(kps_l) / scale
    return boxes[order], scores[order], kps[order]


def numpy_nms(boxes: NDArray, scores: NDArray, thresh: float = 0.4) -> list[int]:
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        xx1 = np.maximum(x1[i], x1[order[1:]])
        yy1 = np.maximum(y1[i], y1[order[1:]])
        xx2 = np.minimum(x2[i], x2[order[1:]])
        yy2 = np.minimum(y2[i], y2[order[1:]])
        inter = np.maximum(0.0, xx2 - xx1 + 1) * np.maximum(0.0, yy2 - yy1 + 1)
        ovr = inter / (areas[i] + areas[order[1:]] - inter)
        order = order[np.where(ovr <= thresh)[0] + 1]
    return keep


def cv2_nms(boxes: NDArray, scores: NDArray, thresh: float = 0.4) -> NDArray:
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    return np.asarray(cv2.dnn.NMSBoxes(xywh, scores, 0.0, thresh)).reshape(-1)


def reference_numpy(heads: Heads, min_score: float) -> object:
    boxes, scores, kps = numpy_decode(heads, min_score, 1.0)
    keep = numpy_nms(boxes, scores)
    return boxes[keep], scores[keep], kps[keep]


def reference_cv2(heads: Heads, min_score: float) -> object:
    boxes, scores, kps = numpy_decode(heads, min_score, 1.0)
    keep = cv2_nms(boxes, scores)
    return boxes[keep], scores[keep], kps[keep]


def ours(heads: Heads, min_score: float) -> Detections:
    return decode_scrfd(*heads, input_size=(SIZE, SIZE), min_score=min_score, scale=1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    cv2.setNumThreads(1)

    crowd = synthetic_heads(faces=40)
    photo = synthetic_heads(faces=4, seed=1)
    crowd_scores = np.concatenate([s.reshape(-1) for s in crowd[0]])
    crowd_min = float(np.sort(crowd_scores)[-10_000])
    cases: list[tuple[str, str, Callable[[], object]]] = []
    for case, heads, min_score in (
        ("crowd, 10k candidates", crowd, crowd_min),
        ("photo, 4 faces, min_score 0.7", photo, 0.7),
    ):
        count = sum(int((s >= min_score).sum()) for s in heads[0])
        label = f"{case} ({count} -> {len(ours(heads, min_score))})"
        cases += [
            (label, "numpy (insightface)", lambda h=heads, m=min_score: reference_numpy(h, m)),
            (label, "numpy + cv2 NMSBoxes (v3)", lambda h=heads, m=min_score: reference_cv2(h, m)),
            (label, "immich_ml decode_scrfd", lambda h=heads, m=min_score: ours(h, m)),
        ]
    results = medians_ms([fn for _, _, fn in cases], args.runs)

    print(f"{'case':<44} {'implementation':<28} {'wall ms':>9} {'cpu ms':>8} {'x numpy':>8} {'x cv2':>6}")
    for start in range(0, len(cases), 3):
        numpy_ms, cv2_ms = results[start][1], results[start + 1][1]
        for (case, name, _), (wall, cpu) in zip(cases[start : start + 3], results[start : start + 3]):
            print(
                f"{case:<44} {name:<28} {wall:>9.3f} {cpu:>8.3f} "
                f"{numpy_ms / cpu:>8.1f} {cv2_ms / cpu:>6.1f}"
            )


if __name__ == "__main__":
    main()
