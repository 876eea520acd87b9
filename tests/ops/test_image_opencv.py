"""resize_normalize_into(resample="opencv_linear") against OpenCV itself: ``cv2.resize`` with its
default INTER_LINEAR (what Immich v3's face detector letterboxes with), bit for bit."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from immich_ml.ops.image import resize_normalize_into

SIZES = [
    (1080, 1440), (1440, 1080), (1280, 1280), (720, 1280),  # 2x exactly: OpenCV switches to INTER_AREA
    (480, 640), (640, 480), (641, 640), (640, 639),  # one axis unchanged or off by one
    (300, 200), (17, 5), (1, 1), (1, 9), (9, 1), (2, 3),  # upscales, single rows and columns
    (2171, 3000), (777, 1333),
]


def photo(height: int, width: int) -> np.ndarray:
    """Smooth gradients plus noise, so that rounding differences cannot hide in flat areas."""
    rng = np.random.default_rng(height * 7919 + width)
    x = (np.arange(width, dtype=np.uint16) * 190 // width)[None, :, None]
    y = (np.arange(height, dtype=np.uint16) * 190 // height)[:, None, None]
    base = np.concatenate(np.broadcast_arrays(x + 0 * y, y + 0 * x, (x + y) // 2), axis=2)
    return (base + rng.integers(0, 66, base.shape, dtype=np.uint16)).astype(np.uint8)


def letterbox_cv2(image: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    """Immich v3's letterbox: the long side fills the canvas, the other is truncated; top-left."""
    height, width = image.shape[:2]
    if height / width > 1:
        new_h, new_w = size, max(1, int(size / (height / width)))
    else:
        new_w, new_h = size, max(1, int(size * (height / width)))
    canvas = np.zeros((size, size, 3), np.uint8)
    canvas[:new_h, :new_w] = cv2.resize(image, (new_w, new_h))
    return canvas, new_h / height


@pytest.mark.parametrize(("height", "width"), SIZES)
def test_letterbox_equals_cv2_resize_to_the_bit(height: int, width: int) -> None:
    image = photo(height, width)
    expected, scale = letterbox_cv2(image, 640)
    raw = np.full((2, 640, 640, 3), 7, np.uint8)
    info = resize_normalize_into(image, raw, 1, size=(640, 640), mode="letterbox", resample="opencv_linear")
    np.testing.assert_array_equal(raw[1], expected)
    assert info.scale == scale
    assert (raw[0] == 7).all()  # other slots untouched
    normalized = np.zeros((1, 3, 640, 640), np.float32)
    resize_normalize_into(image, normalized, 0, size=(640, 640), mode="letterbox", resample="opencv_linear",
                          mean=(127.5,) * 3, std=(128.0,) * 3, scale=1.0)  # fmt: skip
    blob = ((expected.astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1)
    np.testing.assert_array_equal(normalized[0], blob)


@pytest.mark.parametrize(("height", "width", "out"), [(500, 300, (200, 120)), (64, 64, (640, 320)), (3000, 7, (31, 33))])
def test_squash_equals_cv2_resize(height: int, width: int, out: tuple[int, int]) -> None:
    image = photo(height, width)
    got = np.zeros((1, *out, 3), np.uint8)
    resize_normalize_into(image, got, 0, size=out, mode="squash", resample="opencv_linear")
    np.testing.assert_array_equal(got[0], cv2.resize(image, (out[1], out[0])))


def test_strided_source_equals_cv2_on_the_view() -> None:
    big = photo(900, 1300)
    view = big[100:700, 250:1150]
    got = np.zeros((1, 640, 640, 3), np.uint8)
    resize_normalize_into(view, got, 0, size=(640, 640), mode="letterbox", resample="opencv_linear")
    np.testing.assert_array_equal(got[0], letterbox_cv2(np.ascontiguousarray(view), 640)[0])


def test_random_sizes_equal_cv2() -> None:
    rng = np.random.default_rng(3)
    for _ in range(25):
        height, width = (int(v) for v in rng.integers(1, 1600, 2))
        out = (int(rng.integers(1, 700)), int(rng.integers(1, 700)))
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        got = np.zeros((1, *out, 3), np.uint8)
        resize_normalize_into(image, got, 0, size=out, mode="squash", resample="opencv_linear")
        np.testing.assert_array_equal(got[0], cv2.resize(image, (out[1], out[0])), err_msg=f"{image.shape} -> {out}")
