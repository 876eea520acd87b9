"""immich_ml.ops.detect against Immich v3's SCRFD post-processing rebuilt here independently: a
plain-numpy decode (anchor grid from np.mgrid, float32 arithmetic, division by the scale) and
OpenCV's own ``cv2.dnn.NMSBoxes`` on (x, y, w, h) boxes, as v3 calls it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from immich_ml.errors import InvalidInput
from immich_ml.ops.detect import Detections, decode_scrfd

STRIDES = (8, 16, 32)
F32 = np.float32


# --- independent reference ------------------------------------------------------------------------


def reference_nms(boxes: np.ndarray, scores: np.ndarray, thresh: float) -> list[int]:
    """OpenCV's NMSBoxes, called the way Immich v3 calls it: (x, y, w, h) from float32 boxes, score
    threshold 0."""
    if len(boxes) == 0:
        return []
    xywh = np.column_stack([boxes[:, 0], boxes[:, 1], boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]])
    keep = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), 0.0, thresh)
    return np.asarray(keep, dtype=np.intp).reshape(-1).tolist()


def reference_decode(scores, boxes, kps, size, min_score, scale, thresh=0.4, strides=STRIDES, anchors=2):
    height, width = size
    all_scores, all_boxes, all_kps = [], [], []
    for level, stride in enumerate(strides):
        gh, gw = height // stride, width // stride
        centres = np.stack(np.mgrid[:gh, :gw][::-1], axis=-1).astype(F32)
        centres = np.repeat((centres * stride).reshape(-1, 2), anchors, axis=0)
        s = scores[level].reshape(-1)
        d = boxes[level].reshape(-1, 4) * stride
        k = kps[level].reshape(-1, 10) * stride
        pos = np.where(s >= F32(min_score))[0]
        cx, cy = centres[pos, 0], centres[pos, 1]
        box = np.stack([cx - d[pos, 0], cy - d[pos, 1], cx + d[pos, 2], cy + d[pos, 3]], axis=-1)
        kp = np.empty((pos.size, 10), F32)
        kp[:, 0::2] = cx[:, None] + k[pos, 0::2]
        kp[:, 1::2] = cy[:, None] + k[pos, 1::2]
        all_scores.append(s[pos])
        all_boxes.append(box / F32(scale))
        all_kps.append(kp / F32(scale))
    sc = np.concatenate(all_scores)
    bx = np.concatenate(all_boxes).astype(F32)
    kp = np.concatenate(all_kps).astype(F32)
    finite = np.isfinite(sc) & np.isfinite(bx).all(1) & np.isfinite(kp).all(1)
    sc, bx, kp = sc[finite], bx[finite], kp[finite]
    keep = reference_nms(bx, sc, thresh)
    return bx[keep], sc[keep], kp[keep].reshape(-1, 5, 2)


def random_heads(rng: np.random.Generator, size=(640, 640), batch_dim=False, tie_levels=0):
    height, width = size
    scores, boxes, kps = [], [], []
    for stride in STRIDES:
        n = (height // stride) * (width // stride) * 2
        s = rng.random((n, 1), dtype=F32)
        if tie_levels:
            s = (np.floor(s * tie_levels) / tie_levels).astype(F32)
        b = (rng.random((n, 4), dtype=F32) * 4).astype(F32)
        k = rng.standard_normal((n, 10), dtype=F32)
        if batch_dim:
            s, b, k = s[None], b[None], k[None]
        scores.append(s)
        boxes.append(b)
        kps.append(k)
    return scores, boxes, kps


def assert_same(found: Detections, expected: tuple[np.ndarray, ...]) -> None:
    boxes, scores, landmarks = expected
    assert found.boxes.dtype == found.scores.dtype == found.landmarks.dtype == F32
    np.testing.assert_array_equal(found.scores, scores)
    np.testing.assert_array_equal(found.boxes, boxes)
    np.testing.assert_array_equal(found.landmarks, landmarks)


# --- decode_scrfd ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seed", "min_score", "scale", "size"),
    [(0, 0.5, 1.0, (640, 640)), (1, 0.9, 0.37, (640, 640)), (2, 0.97, 2.5, (320, 480)), (3, 0.0, 1.0, (320, 320))],
)
def test_random_heads_match_reference(seed, min_score, scale, size) -> None:
    rng = np.random.default_rng(seed)
    heads = random_heads(rng, size)
    found = decode_scrfd(*heads, input_size=size, min_score=min_score, scale=scale)
    expected = reference_decode(*heads, size, min_score, scale)
    assert len(found) > 1
    assert_same(found, expected)
    assert np.all(np.diff(found.scores) <= 0)


def test_batch_dimension_and_flat_scores_are_accepted() -> None:
    rng = np.random.default_rng(3)
    scores, boxes, kps = random_heads(rng, batch_dim=True)
    flat = [s.reshape(-1) for s in scores]
    a = decode_scrfd(scores, boxes, kps, input_size=(640, 640), min_score=0.8, scale=1.0)
    b = decode_scrfd(flat, boxes, kps, input_size=(640, 640), min_score=0.8, scale=1.0)
    assert_same(a, reference_decode(scores, boxes, kps, (640, 640), 0.8, 1.0))
    assert_same(b, (a.boxes, a.scores, a.landmarks))


def test_read_only_heads_are_accepted() -> None:
    """Runtime outputs may be read-only buffers."""
    heads = random_heads(np.random.default_rng(12))
    for group in heads:
        for head in group:
            head.setflags(write=False)
    found = decode_scrfd(*heads, input_size=(640, 640), min_score=0.8, scale=1.0)
    assert_same(found, reference_decode(*heads, (640, 640), 0.8, 1.0))


def test_equal_scores_keep_level_then_anchor_order() -> None:
    rng = np.random.default_rng(4)
    heads = random_heads(rng, tie_levels=8)
    found = decode_scrfd(*heads, input_size=(640, 640), min_score=0.5, scale=1.0, iou_threshold=0.9)
    assert len(np.unique(found.scores)) < len(found) // 10
    assert_same(found, reference_decode(*heads, (640, 640), 0.5, 1.0, thresh=0.9))


def test_nothing_above_threshold_gives_empty_detections() -> None:
    heads = random_heads(np.random.default_rng(5))
    found = decode_scrfd(*heads, input_size=(640, 640), min_score=1.5, scale=1.0)
    assert len(found) == 0
    assert found.boxes.shape == (0, 4) and found.scores.shape == (0,)
    assert found.landmarks.shape == (0, 5, 2)


def test_all_overlapping_boxes_leave_the_best_one() -> None:
    rng = np.random.default_rng(6)
    scores, boxes, kps = random_heads(rng)
    # Every anchor predicts the same 100x100 box (at ~300, 300) give or take a pixel.
    for level, stride in enumerate(STRIDES):
        gw = 640 // stride
        cells = np.arange(boxes[level].shape[0]) // 2
        cx, cy = (cells % gw) * stride, (cells // gw) * stride
        jitter = rng.random((cx.size, 4), dtype=F32)
        target = np.stack([cx - 250, cy - 250, 350 - cx, 350 - cy], axis=1) + jitter
        boxes[level] = (target / stride).astype(F32)
    found = decode_scrfd(scores, boxes, kps, input_size=(640, 640), min_score=0.3, scale=1.0)
    assert len(found) == 1
    assert found.scores[0] == max(s.max() for s in scores)
    assert_same(found, reference_decode(scores, boxes, kps, (640, 640), 0.3, 1.0))


def _two_anchor_heads(second_box_right: float) -> tuple[list, list, list]:
    """Two candidates on the anchors of cell (5, 5) at stride 8 (centre 40, 40):
    A = [30, 30, 50, 50] (score 0.9) and B = [30, 30, right, 50] (score 0.8)."""
    scores = [np.zeros((n, 1), F32) for n in (12800, 3200, 800)]
    boxes = [np.zeros((n, 4), F32) for n in (12800, 3200, 800)]
    kps = [np.zeros((n, 10), F32) for n in (12800, 3200, 800)]
    anchor = (5 * 80 + 5) * 2
    scores[0][anchor], scores[0][anchor + 1] = 0.9, 0.8
    boxes[0][anchor] = [1.25, 1.25, 1.25, 1.25]
    boxes[0][anchor + 1] = [1.25, 1.25, (second_box_right - 40) / 8, 1.25]
    return scores, boxes, kps


def test_overlap_exactly_at_threshold_is_kept() -> None:
    # Geometric areas: inter 8*20 = 160, union 400. OpenCV's overlap is 1.f - float(1 - 0.4) =
    # 0.39999998 (float32): kept at 0.4 and at exactly that value, suppressed one step below it.
    # (insightface's pixel-count areas gave 9*21 / 21*21 = 0.43 and suppressed it at 0.4.)
    heads = _two_anchor_heads(38.0)
    overlap = F32(1) - F32(1.0 - 160 / 400)
    for threshold, kept in ((0.4, 2), (float(overlap), 2), (float(np.nextafter(overlap, F32(0))), 1)):
        found = decode_scrfd(*heads, input_size=(640, 640), min_score=0.5, scale=1.0, iou_threshold=threshold)
        assert len(found) == kept
        assert_same(found, reference_decode(*heads, (640, 640), 0.5, 1.0, thresh=threshold))


def test_non_finite_candidates_are_dropped() -> None:
    rng = np.random.default_rng(7)
    scores, boxes, kps = random_heads(rng)
    boxes[0][::7] = np.nan
    kps[1][::5, 3] = np.inf
    scores[2][::3] = np.nan
    found = decode_scrfd(scores, boxes, kps, input_size=(640, 640), min_score=0.6, scale=1.0)
    assert np.isfinite(found.boxes).all() and np.isfinite(found.landmarks).all()
    assert_same(found, reference_decode(scores, boxes, kps, (640, 640), 0.6, 1.0))


def test_threads_give_the_serial_results() -> None:
    inputs = [random_heads(np.random.default_rng(100 + i)) for i in range(16)]

    def run(heads: tuple) -> Detections:
        return decode_scrfd(*heads, input_size=(640, 640), min_score=0.7, scale=0.8)

    serial = [run(h) for h in inputs]
    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(run, inputs * 4))
    for i, found in enumerate(parallel):
        assert_same(found, (serial[i % 16].boxes, serial[i % 16].scores, serial[i % 16].landmarks))


def _good_heads() -> tuple[list, list, list]:
    return random_heads(np.random.default_rng(8))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s, b, k: s.__setitem__(0, s[0].astype(np.float64)), "float32"),
        (lambda s, b, k: b.__setitem__(1, b[1][:-2]), "shape"),
        (lambda s, b, k: k.__setitem__(2, np.asfortranarray(k[2])), "C-contiguous"),
        (lambda s, b, k: b.__setitem__(0, np.zeros((12800, 8), F32)[:, ::2]), "C-contiguous"),
        (lambda s, b, k: s.pop(), "heads"),
        (lambda s, b, k: k.__setitem__(0, k[0].tolist()), "numpy array"),
    ],
)
def test_bad_heads_raise_invalid_input(mutate, message) -> None:
    scores, boxes, kps = _good_heads()
    mutate(scores, boxes, kps)
    with pytest.raises(InvalidInput, match=message):
        decode_scrfd(scores, boxes, kps, input_size=(640, 640), min_score=0.5, scale=1.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"scale": 0.0},
        {"scale": float("nan")},
        {"min_score": float("nan")},
        {"iou_threshold": float("inf")},
        {"input_size": (640,)},
        {"input_size": (0, 640)},
        {"strides": (8, 16, 0)},
        {"anchors_per_cell": 0},
    ],
)
def test_bad_parameters_raise_invalid_input(kwargs) -> None:
    params = {"input_size": (640, 640), "min_score": 0.5, "scale": 1.0} | kwargs
    with pytest.raises(InvalidInput):
        decode_scrfd(*_good_heads(), **params)


def test_missing_keypoints_raise_invalid_input() -> None:
    scores, boxes, _ = _good_heads()
    with pytest.raises(InvalidInput, match="keypoint"):
        decode_scrfd(scores, boxes, None, input_size=(640, 640), min_score=0.5, scale=1.0)


# --- NMS edge cases, through decode_scrfd, against cv2.dnn.NMSBoxes -------------------------------


def boxes_as_heads(boxes: np.ndarray, scores: np.ndarray, size: tuple[int, int] = (64, 64)):
    """SCRFD heads (strides 8, 16, 32; 2 anchors per cell) whose decode at scale 1 gives exactly
    `boxes` with `scores`: box i sits on stride 8's anchor i (coordinates must be multiples of 1/8);
    every other anchor scores 0."""
    heads = random_heads(np.random.default_rng(0), size)
    for level in range(3):
        heads[0][level][:] = 0
    grid_width = size[1] // 8
    for i, (box, score) in enumerate(zip(boxes, scores)):
        cell = i // 2
        cx, cy = (cell % grid_width) * 8, (cell // grid_width) * 8
        heads[0][0][i] = score
        heads[1][0][i] = np.array([cx - box[0], cy - box[1], box[2] - cx, box[3] - cy], F32) / 8
    return heads


def nms_of(boxes: np.ndarray, scores: np.ndarray, threshold: float, size: tuple[int, int] = (64, 64)) -> list[int]:
    """Indices of `boxes` that decode_scrfd keeps, in its output order."""
    found = decode_scrfd(*boxes_as_heads(boxes, scores, size), input_size=size, min_score=0.0,
                         scale=1.0, iou_threshold=threshold)  # fmt: skip
    np.testing.assert_array_equal(found.boxes, boxes[found_indices := [
        int(np.flatnonzero((boxes == b).all(1) & (scores == s))[0]) for b, s in zip(found.boxes, found.scores)
    ]])
    return found_indices


@pytest.mark.parametrize(
    "pair",
    [
        [[0, 0, 10, 10], [0, 0, 4, 10]],  # overlap 40 / 100 == float32(0.4)
        [[0, 0, 9, 9], [0, 0, 3, 9]],  # 27 / 81
        [[0, 0, 10, 10], [0, 0, 4.125, 10]],  # just above 0.4
        [[0, 0, 0, 0], [0, 0, 0, 0]],  # two empty boxes overlap fully
        [[0, 0, 0, 0], [0, 0, 8, 8]],  # an empty box overlaps nothing
        [[-8, -8, 4, 4], [2, 2, 16, 16]],  # negative corners
        [[8, 8, 0, 0], [0, 0, 8, 8]],  # inverted box: negative width and height, positive area
    ],
)
@pytest.mark.parametrize("threshold", [0.4, float(np.nextafter(F32(0.4), F32(0))), 0.0, 1.0])
def test_nms_edge_cases_match_opencv(pair: list[list[float]], threshold: float) -> None:
    boxes = np.array(pair, F32)
    scores = np.array([0.9, 0.8], F32)
    assert nms_of(boxes, scores, threshold) == reference_nms(boxes, scores, threshold)


@pytest.mark.parametrize("threshold", [0.0, 0.2, 0.4, 0.7])
def test_nms_random_crowd_with_ties_matches_opencv(threshold: float) -> None:
    rng = np.random.default_rng(9)
    n = 300
    xy = np.round(rng.random((n, 2)) * 24 * 8) / 8
    wh = np.round(rng.random((n, 2)) * 12 * 8) / 8
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(F32)
    scores = (np.floor(rng.random(n) * 16) / 16 + 1 / 32).astype(F32)  # many equal scores
    assert nms_of(boxes, scores, threshold, size=(256, 256)) == reference_nms(boxes, scores, threshold)


def test_scores_of_zero_are_never_kept() -> None:
    boxes = np.array([[0, 0, 8, 8], [16, 16, 24, 24]], F32)
    scores = np.array([0.0, 0.5], F32)
    assert nms_of(boxes, scores, 0.4) == [1] == reference_nms(boxes, scores, 0.4)
