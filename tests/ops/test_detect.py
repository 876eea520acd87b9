"""immich_ml.ops.detect against a plain-numpy SCRFD decode + greedy NMS written here the way
insightface does it (anchor grid from np.mgrid, float32 arithmetic, insightface's while-loop NMS
keeping ``ovr <= thresh``)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from immich_ml.errors import InvalidInput
from immich_ml.ops.detect import Detections, decode_scrfd

STRIDES = (8, 16, 32)
F32 = np.float32


# --- independent reference ------------------------------------------------------------------------


def reference_nms(boxes: np.ndarray, scores: np.ndarray, thresh: float, inclusive: bool) -> list[int]:
    off = F32(1) if inclusive else F32(0)
    x1, y1, x2, y2 = (boxes[:, i] for i in range(4))
    areas = ((x2 - x1) + off) * ((y2 - y1) + off)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        xx1 = np.maximum(x1[i], x1[rest])
        yy1 = np.maximum(y1[i], y1[rest])
        xx2 = np.minimum(x2[i], x2[rest])
        yy2 = np.minimum(y2[i], y2[rest])
        w = np.maximum(F32(0), (xx2 - xx1) + off)
        h = np.maximum(F32(0), (yy2 - yy1) + off)
        inter = w * h
        ovr = inter / ((areas[i] + areas[rest]) - inter)
        order = rest[ovr <= F32(thresh)]
    return keep


def reference_decode(scores, boxes, kps, size, min_score, scale, thresh=0.4, inclusive=True,
                     strides=STRIDES, anchors=2):  # fmt: skip
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
    keep = reference_nms(bx, sc, thresh, inclusive)
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


@pytest.mark.parametrize("inclusive", [True, False])
@pytest.mark.parametrize(
    ("seed", "min_score", "scale", "size"),
    [(0, 0.5, 1.0, (640, 640)), (1, 0.9, 0.37, (640, 640)), (2, 0.97, 2.5, (320, 480))],
)
def test_random_heads_match_reference(seed, min_score, scale, size, inclusive) -> None:
    rng = np.random.default_rng(seed)
    heads = random_heads(rng, size)
    found = decode_scrfd(*heads, input_size=size, min_score=min_score, scale=scale,
                         inclusive_area=inclusive)  # fmt: skip
    expected = reference_decode(*heads, size, min_score, scale, inclusive=inclusive)
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


def test_iou_exactly_at_threshold_is_kept_and_area_convention_matters() -> None:
    # Exclusive areas: inter 8*20 = 160, union 400, IoU = 160/400 == float32(0.4) exactly: kept.
    # Inclusive areas: 9*21 / 21*21 = 0.43 > 0.4: suppressed.
    heads = _two_anchor_heads(38.0)
    area = [F32(8) * F32(20), F32(20) * F32(20)]
    assert area[0] / ((area[1] + area[0]) - area[0]) == F32(0.4)
    exclusive = decode_scrfd(*heads, input_size=(640, 640), min_score=0.5, scale=1.0,
                             inclusive_area=False)  # fmt: skip
    inclusive = decode_scrfd(*heads, input_size=(640, 640), min_score=0.5, scale=1.0)
    np.testing.assert_array_equal(exclusive.boxes, [[30, 30, 50, 50], [30, 30, 38, 50]])
    np.testing.assert_array_equal(inclusive.boxes, [[30, 30, 50, 50]])
    # Just under the IoU, the exclusive pair is suppressed too.
    below = float(np.nextafter(F32(0.4), F32(0)))
    tighter = decode_scrfd(*heads, input_size=(640, 640), min_score=0.5, scale=1.0,
                           iou_threshold=below, inclusive_area=False)  # fmt: skip
    assert len(tighter) == 1
    for found, inc in ((exclusive, False), (inclusive, True)):
        assert_same(found, reference_decode(*heads, (640, 640), 0.5, 1.0, inclusive=inc))


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


# --- NMS edge cases, through decode_scrfd -------------------------------------------------------


def boxes_as_heads(boxes: np.ndarray, scores: np.ndarray, size=(64, 64)):
    """SCRFD heads (strides 8, 16, 32; 2 anchors per cell) whose decode gives exactly `boxes` (at
    scale 1, all on stride 8's first cell, centre (0, 0); coordinates must be multiples of 1/8)."""
    heads = random_heads(np.random.default_rng(0), size)
    for level in range(3):
        heads[0][level][:] = 0
    assert len(boxes) <= 2
    for i, (box, score) in enumerate(zip(boxes, scores)):
        heads[0][0][i] = score
        heads[1][0][i] = np.array([-box[0], -box[1], box[2], box[3]], F32) / 8
    return heads


def nms_of(boxes: np.ndarray, scores: np.ndarray, threshold: float, inclusive: bool) -> list[int]:
    found = decode_scrfd(*boxes_as_heads(boxes, scores), input_size=(64, 64), min_score=0.5,
                         scale=1.0, iou_threshold=threshold, inclusive_area=inclusive)  # fmt: skip
    return [int(np.flatnonzero((boxes == b).all(1))[0]) for b in found.boxes]


def test_nms_exact_threshold_pairs() -> None:
    # IoU exactly float32(0.4) under each convention; the second box is the lower score.
    exclusive_pair = np.array([[0, 0, 10, 10], [0, 0, 4, 10]], F32)  # 40 / 100
    inclusive_pair = np.array([[0, 0, 9, 9], [0, 0, 3, 9]], F32)  # 40 / 100 counting pixels
    scores = np.array([0.9, 0.8], F32)
    assert nms_of(exclusive_pair, scores, 0.4, inclusive=False) == [0, 1]
    assert nms_of(exclusive_pair, scores, 0.4, inclusive=True) == [0]
    assert nms_of(inclusive_pair, scores, 0.4, inclusive=True) == [0, 1]
    below = float(np.nextafter(F32(0.4), F32(0)))
    assert nms_of(inclusive_pair, scores, below, inclusive=True) == [0]
    for pair in (exclusive_pair, inclusive_pair):
        for inc in (True, False):
            assert nms_of(pair, scores, 0.4, inc) == reference_nms(pair, scores, 0.4, inc)


def test_nms_zero_area_duplicates_suppress_under_exclusive_areas() -> None:
    boxes = np.array([[0, 0, 0, 0], [0, 0, 0, 0]], F32)
    scores = np.array([0.6, 0.9], F32)
    found = decode_scrfd(*boxes_as_heads(boxes, scores), input_size=(64, 64), min_score=0.5,
                         scale=1.0, inclusive_area=False)  # fmt: skip
    assert found.scores.tolist() == [F32(0.9)]
