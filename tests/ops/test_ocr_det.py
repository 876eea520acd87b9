"""Detector input and DB post-processing kernels vs independent references (Pillow/OpenCV/pyclipper/
shapely, tests/ops/ocr_reference.py)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from immich_ml import errors
from immich_ml.ops import ocr
from tests.ops import ocr_reference as ref


@pytest.mark.parametrize(
    ("size", "max_res", "expected"),
    [((1080, 1440), 736, (736, 992)), ((40, 1000), 736, (32, 992)), ((736, 736), 736, (736, 736)),
     ((48, 48), 736, (64, 64)), ((2000, 500), 100, (384, 96)), ((33, 33), 5, (32, 32))],
)
def test_det_input_size(size: tuple[int, int], max_res: int, expected: tuple[int, int]) -> None:
    assert ocr.det_input_size(*size, max_res) == expected


@pytest.mark.parametrize("shape", [(1080, 1440), (37, 45), (500, 80), (64, 64)])
def test_det_preprocess_bit_exact(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    image = cv2.GaussianBlur(rng.integers(0, 256, (*shape, 3), dtype=np.uint8), (3, 3), 1)
    rh, rw = ocr.det_input_size(*shape, 736)
    out = np.full((1, 3, rh + 32, rw + 64), np.nan, dtype=np.float32)
    ocr.det_preprocess_into(image, out, rh, rw, pad_value=-3.0)
    expected = ref.det_input(image, rh, rw)
    np.testing.assert_array_equal(out[:, :, :rh, :rw], expected)
    assert (out[:, :, rh:, :] == -3.0).all() and (out[:, :, :, rw:] == -3.0).all()


def test_det_preprocess_rejects_bad_input() -> None:
    image = np.zeros((40, 40, 3), np.uint8)
    out = np.zeros((1, 3, 64, 64), np.float32)
    with pytest.raises(errors.InvalidInput):
        ocr.det_preprocess_into(image.astype(np.float32), out, 32, 32)  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidInput):
        ocr.det_preprocess_into(image, out, 96, 32)
    with pytest.raises(errors.InvalidInput):
        ocr.det_preprocess_into(image, out[:, :, :, ::2], 32, 32)
    with pytest.raises(errors.InvalidInput):
        ocr.det_preprocess_into(image[:, ::2], out, 32, 32)


# ---- DB post-processing ----------------------------------------------------------------------


def _noise(rng: np.random.Generator, shape: tuple[int, int], level: float = 0.2) -> np.ndarray:
    return rng.uniform(0, level, shape).astype(np.float32)


def _blobs(seed: int, h: int = 240, w: int = 360, n: int = 12, margin: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = np.zeros((h, w), np.float32)
    for _ in range(n):
        centre = (rng.uniform(margin, w - margin), rng.uniform(margin, h - margin))
        size = (rng.uniform(3, 120), rng.uniform(3, 30))
        pts = cv2.boxPoints((centre, size, rng.uniform(-35, 35))).astype(np.int32)
        cv2.fillPoly(m, [pts], float(rng.uniform(0.35, 1.0)))
    return np.clip(m + _noise(rng, (h, w)), 0, 1).astype(np.float32)


def _text_map(lines: int = 15) -> np.ndarray:
    """A detector-like map: text rendered, blurred, as probabilities."""
    img = Image.new("L", (736, 960), 0)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=28)
    for i in range(lines):
        draw.text((30 + 7 * (i % 3), 20 + 62 * i), f"Line {i}: the quick brown fox {i * 37}", 255, font=font)
    prob = cv2.GaussianBlur(np.asarray(img, np.float32) / 255.0, (0, 0), 4) * 3.0
    return np.clip(prob, 0, 1).astype(np.float32)


def _compare(prob: np.ndarray, src_h: int, src_w: int, **kw: object) -> tuple[np.ndarray, np.ndarray]:
    boxes, scores = ocr.db_boxes(prob, src_h, src_w, **kw)  # type: ignore[arg-type]
    rboxes, rscores = ref.db_boxes(prob, src_h, src_w, **kw)  # type: ignore[arg-type]
    assert boxes.dtype == np.float32 and scores.dtype == np.float32
    assert boxes.shape == rboxes.shape
    np.testing.assert_array_equal(boxes, rboxes)
    np.testing.assert_allclose(scores, rscores, atol=1e-4, rtol=0)
    return boxes, scores


@pytest.mark.parametrize("mode", ["fast", "slow"])
@pytest.mark.parametrize("seed", range(6))
def test_db_boxes_rotated_blobs(seed: int, mode: str) -> None:
    _compare(_blobs(seed, margin=40), 480, 720, score_mode=mode, min_score=0.3)


@pytest.mark.parametrize("mode", ["fast", "slow"])
def test_db_boxes_text_page(mode: str) -> None:
    prob = _text_map()
    boxes, scores = _compare(prob, 1080, 828, score_mode=mode)
    assert len(boxes) >= 15 and (scores >= 0.5).all()
    # Reading order: the rendered line each box belongs to (62 map px apart, map = src / 1.125)
    # never decreases: top line first (upstream's own output kept the detector's bottom-first order).
    line = (boxes[:, 0, 1] / 1.125 + 20) // 62
    assert (np.diff(line) >= 0).all()


def test_db_boxes_holes_and_touching() -> None:
    m = np.zeros((120, 200), np.float32)
    m[10:60, 10:90] = 0.9
    m[25:45, 30:70] = 0.0  # a hole: its border is listed too (RETR_LIST)
    m[70:100, 20:80] = 0.8
    m[70:100, 80:150] = 0.7  # touching blobs: one component
    m[60:62, 120:122] = 1.0  # 2x2 noise: dropped as too small
    for mode in ("fast", "slow"):
        _compare(m, 240, 400, score_mode=mode, min_score=0.1)


@pytest.mark.parametrize("mode", ["fast", "slow"])
def test_db_boxes_edge_maps(mode: str) -> None:
    empty = np.zeros((64, 96), np.float32)
    assert ocr.db_boxes(empty, 64, 96, score_mode=mode)[0].shape == (0, 4, 2)  # type: ignore[arg-type]
    full = np.ones((64, 96), np.float32)
    boxes, scores = _compare(full, 128, 192, score_mode=mode)
    assert len(boxes) == 1 and scores[0] == pytest.approx(1.0)
    rng = np.random.default_rng(3)
    speckle = (rng.random((80, 120)) > 0.97).astype(np.float32)  # 1-px noise
    _compare(speckle, 80, 120, score_mode=mode, min_score=0.0)
    border = np.zeros((50, 70), np.float32)
    border[0:20, 0:40] = 0.9
    border[30:50, 40:70] = 0.9
    _compare(border, 100, 140, score_mode=mode)


def test_db_boxes_border_crossing_blobs_match_closely() -> None:
    """Blobs cut by the map's edge: boxes equal; fast scores equal except where OpenCV's float
    noise in the min-area rectangle (its own arithmetic, different between OpenCV 4 and 5) moves a
    quad corner across a whole number (measured: a few boxes in a hundred, < 0.03)."""
    total = close = 0
    for seed in range(10):
        prob = _blobs(100 + seed, n=6)
        boxes, scores = ocr.db_boxes(prob, 480, 720, min_score=0.3)
        rboxes, rscores = ref.db_boxes(prob, 480, 720, min_score=0.3)
        assert boxes.shape == rboxes.shape
        assert np.abs(boxes - rboxes).max(initial=0) <= 1
        total += len(scores)
        close += int((np.abs(scores - rscores) <= 1e-4).sum())
        assert np.abs(scores - rscores).max(initial=0) < 0.05
    assert close >= 0.9 * total


def test_db_boxes_max_candidates() -> None:
    m = np.zeros((400, 400), np.float32)
    m[1::4, 1::4] = 0.9  # 10,000 isolated pixels: more than 1000 candidates, all too small
    m[::40, :] = 0.0
    grid = np.zeros((200, 400), np.float32)
    for y in range(0, 200, 6):
        for x in range(0, 400, 6):
            grid[y : y + 4, x : x + 4] = 0.9  # 2,211 4x4 blobs
    for cap in (1000, 50):
        _compare(grid, 200, 400, max_candidates=cap)
    assert ocr.db_boxes(m, 400, 400)[0].shape[0] == 0


def test_db_boxes_strided_view_and_threads() -> None:
    out = np.zeros((1, 1, 300, 400), np.float32)
    out[0, 0, :240, :360] = _blobs(7, margin=40)
    view = out[0, 0, :240, :360]
    expected = ocr.db_boxes(np.ascontiguousarray(view), 480, 720)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: ocr.db_boxes(view, 480, 720), range(32)))
    for boxes, scores in results:
        np.testing.assert_array_equal(boxes, expected[0])
        np.testing.assert_array_equal(scores, expected[1])


def test_db_boxes_rejects_bad_input() -> None:
    good = np.zeros((8, 8), np.float32)
    for bad in (good.astype(np.float64), good[:, ::2], np.zeros((0, 4), np.float32), good[None]):
        with pytest.raises(errors.InvalidInput):
            ocr.db_boxes(bad, 8, 8)  # type: ignore[arg-type]
    nan = good.copy()
    nan[2, 2] = np.nan
    with pytest.raises(errors.InvalidInput):
        ocr.db_boxes(nan, 8, 8)
    with pytest.raises(errors.InvalidInput):
        ocr.db_boxes(good, 0, 8)
    with pytest.raises(errors.InvalidInput):
        ocr.db_boxes(good, 8, 8, score_mode="median")  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidInput):
        ocr.db_boxes(good, 8, 8, unclip_ratio=float("nan"))


def test_det_preprocess_concurrent_calls() -> None:
    image = cv2.GaussianBlur(np.random.default_rng(9).integers(0, 256, (300, 500, 3), dtype=np.uint8), (3, 3), 1)
    rh, rw = ocr.det_input_size(300, 500, 736)
    expected = ref.det_input(image, rh, rw)

    def run(_: int) -> np.ndarray:
        out = np.zeros((1, 3, rh, rw), np.float32)
        ocr.det_preprocess_into(image, out, rh, rw)
        return out

    with ThreadPoolExecutor(8) as pool:
        for out in pool.map(run, [1, 2, 4] * 6):
            np.testing.assert_array_equal(out, expected)
