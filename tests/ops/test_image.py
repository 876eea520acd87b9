"""immich_ml.ops.image.resize_normalize_into against independent references: Pillow resize/crop/paste + numpy."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import numpy as np
import PIL
import pytest
from numpy.typing import NDArray
from PIL import Image

from immich_ml import errors
from immich_ml._core import _image
from immich_ml.ops.image import Mode, Resample, ResizeInfo, resize_normalize_into

FILTERS = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
# Pillow 13 resamples vertically first when the height shrinks much more than the width; older
# Pillow always goes horizontally first. The kernel follows 13, so such shapes need it to compare.
PILLOW_13 = int(PIL.__version__.split(".")[0]) >= 13


def random_image(h: int, w: int, seed: int = 0) -> NDArray[np.uint8]:
    """Noise plus a smooth gradient: both flat regions and strong edges for the filters."""
    rng = np.random.default_rng(seed + 7919 * h + w)
    noise = rng.integers(0, 256, (h, w, 3), dtype=np.int32)
    yy, xx = np.mgrid[0:h, 0:w]
    ramp = ((yy * 255 // max(h - 1, 1) + xx * 255 // max(w - 1, 1)) // 2)[..., None]
    mixed: NDArray[np.int32] = (noise + ramp * 3) // 4
    return mixed.astype(np.uint8)


def expected_resized_size(h: int, w: int, size: tuple[int, int], mode: str) -> tuple[int, int]:
    """(width, height) of the whole resized image, as Immich (shortest) / insightface compute it."""
    H, W = size
    if mode == "squash":
        return W, H
    if mode == "shortest":
        return (H, int(h / w * H)) if w < h else (int(w / h * H), H)
    if h / w > H / W:
        nh, nw = H, int(H / (h / w))
    else:
        nw, nh = W, int(W * (h / w))
    return max(nw, 1), max(nh, 1)


def pil_reference(img: NDArray[np.uint8], size: tuple[int, int], mode: str, resample: str) -> NDArray[np.uint8]:
    """The model input as uint8 (H, W, 3) the way Immich/insightface build it with Pillow."""
    H, W = size
    h, w = img.shape[:2]
    rw, rh = expected_resized_size(h, w, size, mode)
    resized = Image.fromarray(img).resize((rw, rh), FILTERS[resample])
    if mode == "squash":
        return np.asarray(resized)
    if mode == "shortest":
        left, top = int(rw / 2 - H / 2), int(rh / 2 - H / 2)
        return np.asarray(resized.crop((left, top, left + H, top + H)))
    canvas = Image.new("RGB", (W, H))
    canvas.paste(resized, (0, 0))
    return np.asarray(canvas)


def normalize_reference(pixels: NDArray[np.uint8], scale: float, mean: tuple[float, ...], std: tuple[float, ...]) -> NDArray[np.float32]:
    scaled = pixels.astype(np.float32) * np.float32(scale)
    x = ((scaled - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)).astype(np.float32, copy=False)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def skip_unless_pillow_order(h: int, w: int, size: tuple[int, int], mode: Mode) -> None:
    if not PILLOW_13 and pillow_goes_vertical_first(h, w, size, mode):
        pytest.skip("this Pillow resamples horizontally first for this shape")


def pillow_goes_vertical_first(h: int, w: int, size: tuple[int, int], mode: str) -> bool:
    rw, rh = expected_resized_size(h, w, size, mode)
    return rw != w and rh < h and h - rh > 2 * (w - rw)


SHAPES = [(1, 1), (1, 2000), (2000, 1), (2, 3), (17, 31), (224, 224), (301, 224), (224, 299),
          (480, 640), (1080, 1440), (1440, 1080), (1500, 400), (97, 13)]
CASES = [("shortest", (224, 224)), ("squash", (224, 224)), ("squash", (96, 160)),
         ("letterbox", (640, 640)), ("letterbox", (160, 96))]


def matrix(shapes: list[tuple[int, int]]) -> list[tuple[int, int, str, tuple[int, int]]]:
    """shapes x CASES, without "shortest" on 1 x 2000-like strips: for those Pillow would build
    the whole 448000 x 224 resized image (400 MB) before cropping; the extreme-aspect tests below
    cover them with references Pillow builds quickly."""
    return [(h, w, mode, size) for h, w in shapes for mode, size in CASES
            if not (mode == "shortest" and max(h, w) > 500 * min(h, w))]


@pytest.mark.parametrize("resample", list(FILTERS))
@pytest.mark.parametrize(("h", "w", "mode", "size"), matrix(SHAPES))
def test_uint8_matches_pillow(h: int, w: int, mode: Mode, size: tuple[int, int], resample: Resample) -> None:
    skip_unless_pillow_order(h, w, size, mode)
    img = random_image(h, w)
    out = np.full((2, *size, 3), 77, np.uint8)
    info = resize_normalize_into(img, out, 1, size=size, mode=mode, resample=resample)
    ref = pil_reference(img, size, mode, resample)
    diff = np.abs(out[1].astype(np.int16) - ref.astype(np.int16))
    assert diff.max() <= 1
    # Bit-exact in practice: at most 0.1 % of the samples may be off by one level.
    assert np.count_nonzero(diff) <= diff.size // 1000
    assert (out[0] == 77).all()
    rw, rh = expected_resized_size(h, w, size, mode)
    assert (info.resized_width, info.resized_height) == (rw, rh)
    assert info.scale == pytest.approx(rh / h)


@pytest.mark.parametrize("resample", list(FILTERS))
@pytest.mark.parametrize(("h", "w", "mode", "size"), matrix([(1, 1), (2000, 1), (33, 47), (1080, 1440), (1500, 400)]))
def test_float_nchw_matches_pillow_then_numpy(h: int, w: int, mode: Mode, size: tuple[int, int], resample: Resample) -> None:
    skip_unless_pillow_order(h, w, size, mode)
    img = random_image(h, w, seed=1)
    out = np.full((3, 3, *size), np.nan, np.float32)
    resize_normalize_into(img, out, 2, size=size, mode=mode, resample=resample,
                          mean=OPENAI_MEAN, std=OPENAI_STD)
    ref = normalize_reference(pil_reference(img, size, mode, resample), 1 / 255, OPENAI_MEAN, OPENAI_STD)
    one_level = (1 / 255) / min(OPENAI_STD)
    np.testing.assert_allclose(out[2], ref, rtol=0, atol=one_level + 1e-5)
    assert np.isnan(out[:2]).all()


@pytest.fixture
def portable_loops() -> Iterator[None]:
    """Forces the plain C++ inner loops (what non-AVX2 CPUs, e.g. ARM boards, run)."""
    previous = _image.set_vector_kernels(False)
    try:
        yield
    finally:
        _image.set_vector_kernels(previous)


@pytest.mark.parametrize("resample", list(FILTERS))
@pytest.mark.parametrize(("h", "w", "mode", "size"), [
    (1080, 1440, "shortest", (224, 224)), (3000, 700, "shortest", (224, 224)),
    (1440, 1080, "letterbox", (640, 640)), (50, 61, "squash", (300, 500)), (1, 2000, "letterbox", (64, 64)),
])
def test_portable_loops_match_pillow(portable_loops: None, h: int, w: int, mode: Mode, size: tuple[int, int], resample: Resample) -> None:
    img = random_image(h, w, seed=14)
    out = np.zeros((1, *size, 3), np.uint8)
    resize_normalize_into(img, out, 0, size=size, mode=mode, resample=resample)
    ref = pil_reference(img, size, mode, resample)
    diff = np.abs(out[0].astype(np.int16) - ref.astype(np.int16))
    assert diff.max() <= 1 and np.count_nonzero(diff) <= diff.size // 1000


@pytest.mark.parametrize(("h", "w", "mode", "size"), [
    (1080, 1440, "shortest", (224, 224)), (3000, 700, "shortest", (224, 224)), (33, 20, "letterbox", (64, 64)),
])
def test_portable_and_vector_loops_agree_on_float_output(h: int, w: int, mode: Mode, size: tuple[int, int]) -> None:
    img = random_image(h, w, seed=16)
    outs = np.zeros((2, 3, *size), np.float32)
    previous = _image.set_vector_kernels(False)
    try:
        resize_normalize_into(img, outs, 0, size=size, mode=mode, mean=OPENAI_MEAN, std=OPENAI_STD)
    finally:
        _image.set_vector_kernels(previous)
    resize_normalize_into(img, outs, 1, size=size, mode=mode, mean=OPENAI_MEAN, std=OPENAI_STD)
    np.testing.assert_allclose(outs[0], outs[1], rtol=0, atol=1e-6)


@pytest.mark.parametrize("resample", list(FILTERS))
@pytest.mark.parametrize(("h", "w"), [(1, 300), (300, 1), (2, 700), (700, 3)])
def test_shortest_extreme_aspect(h: int, w: int, resample: Resample) -> None:
    img = random_image(h, w, seed=17)
    out = np.zeros((1, 224, 224, 3), np.uint8)
    info = resize_normalize_into(img, out, 0, size=(224, 224), mode="shortest", resample=resample)
    assert (info.resized_width, info.resized_height) == expected_resized_size(h, w, (224, 224), "shortest")
    diff = np.abs(out[0].astype(np.int16) - pil_reference(img, (224, 224), "shortest", resample).astype(np.int16))
    assert diff.max() <= 1 and np.count_nonzero(diff) <= diff.size // 1000


@pytest.mark.parametrize("resample", list(FILTERS))
def test_shortest_extreme_aspect_one_pixel_wide(resample: Resample) -> None:
    # 1 x 2000 -> 448000 x 224 before the crop: too big for a Pillow reference of the whole thing,
    # but a single source row only needs Pillow's 1-D resize (stretching 1 row to 224 rows copies
    # it exactly), then the same centre crop.
    img = random_image(1, 2000, seed=18)
    out = np.zeros((1, 224, 224, 3), np.uint8)
    info = resize_normalize_into(img, out, 0, size=(224, 224), mode="shortest", resample=resample)
    assert (info.resized_width, info.resized_height) == (448000, 224)
    row = np.asarray(Image.fromarray(img).resize((448000, 1), FILTERS[resample]))[0]
    left = int(448000 / 2 - 224 / 2)
    np.testing.assert_array_equal(out[0], np.broadcast_to(row[left:left + 224], (224, 224, 3)))
    tall = np.ascontiguousarray(img.transpose(1, 0, 2))  # 2000 x 1
    resize_normalize_into(tall, out, 0, size=(224, 224), mode="shortest", resample=resample)
    column = np.asarray(Image.fromarray(tall).resize((1, 448000), FILTERS[resample]))[:, 0]
    np.testing.assert_array_equal(out[0], np.broadcast_to(column[left:left + 224, None], (224, 224, 3)))


def test_scrfd_normalization_and_zero_pixel_fill() -> None:
    img = random_image(1080, 1440, seed=2)
    out = np.zeros((1, 3, 640, 640), np.float32)
    info = resize_normalize_into(img, out, 0, size=(640, 640), mode="letterbox", resample="bilinear",
                                 mean=(127.5, 127.5, 127.5), std=(128.0, 128.0, 128.0), scale=1.0)
    assert (info.resized_width, info.resized_height) == (640, 480)
    ref = normalize_reference(pil_reference(img, (640, 640), "letterbox", "bilinear"), 1.0, (127.5,) * 3, (128.0,) * 3)
    np.testing.assert_allclose(out[0], ref, rtol=0, atol=1 / 128 + 1e-6)
    np.testing.assert_array_equal(out[0, :, 480:, :], np.float32(-127.5 / 128))


def test_per_channel_mean_std_are_not_mixed_up() -> None:
    img = np.zeros((8, 8, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 10, 100, 200
    out = np.zeros((1, 3, 8, 8), np.float32)
    resize_normalize_into(img, out, 0, size=(8, 8), mode="squash", mean=(1.0, 2.0, 3.0), std=(2.0, 4.0, 8.0), scale=1.0)
    np.testing.assert_allclose(out[0, :, 0, 0], [(10 - 1) / 2, (100 - 2) / 4, (200 - 3) / 8], rtol=1e-6)


def test_exact_size_is_a_copy_and_shortest_crop_without_resize() -> None:
    img = random_image(224, 300, seed=3)
    out = np.zeros((1, 224, 224, 3), np.uint8)
    resize_normalize_into(img, out, 0, size=(224, 224), mode="shortest")
    np.testing.assert_array_equal(out[0], img[:, 38:262])
    resize_normalize_into(img[:, :224], out, 0, size=(224, 224), mode="squash")
    np.testing.assert_array_equal(out[0], img[:, :224])


@pytest.mark.parametrize("view", ["strided_rows", "flipped_rows", "read_only"])
def test_source_views(view: str) -> None:
    big = random_image(400, 500, seed=4)
    views: dict[str, Callable[[], NDArray[np.uint8]]] = {
        "strided_rows": lambda: big[13:313, 21:421],
        "flipped_rows": lambda: big[::-1],
        "read_only": lambda: big,
    }
    src = views[view]()
    if view == "read_only":
        big.setflags(write=False)
    got = np.zeros((1, 3, 224, 224), np.float32)
    want = np.zeros_like(got)
    resize_normalize_into(src, got, 0, size=(224, 224), mode="shortest", mean=OPENAI_MEAN, std=OPENAI_STD)
    resize_normalize_into(np.ascontiguousarray(src), want, 0, size=(224, 224), mode="shortest", mean=OPENAI_MEAN, std=OPENAI_STD)
    np.testing.assert_array_equal(got, want)


def test_many_python_threads_into_separate_slots() -> None:
    images = [random_image(150 + 7 * i, 260 - 5 * i, seed=i) for i in range(20)]
    n_threads, calls = 8, 20
    serial = np.zeros((n_threads * calls, 3, 96, 96), np.float32)
    for slot in range(n_threads * calls):
        resize_normalize_into(images[slot % 20], serial, slot, size=(96, 96), mode="shortest", mean=OPENAI_MEAN, std=OPENAI_STD)
    shared = np.full_like(serial, np.nan)
    barrier = threading.Barrier(n_threads)
    failures: list[BaseException] = []

    def work(t: int) -> None:
        try:
            barrier.wait()
            for c in range(calls):
                slot = t * calls + c
                resize_normalize_into(images[slot % 20], shared, slot, size=(96, 96), mode="shortest", mean=OPENAI_MEAN, std=OPENAI_STD)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for th in workers:
        th.start()
    for th in workers:
        th.join()
    assert not failures
    np.testing.assert_array_equal(shared, serial)


def _kw(**over: object) -> dict[str, object]:
    kw: dict[str, object] = {"size": (32, 32), "mode": "squash"}
    kw.update(over)
    return kw


GOOD = np.zeros((10, 12, 3), np.uint8)


@pytest.mark.parametrize(("image", "out", "index", "kw", "needle"), [
    (GOOD.astype(np.float32), np.zeros((1, 3, 32, 32), np.float32), 0, _kw(), "uint8"),
    (np.zeros((10, 12, 4), np.uint8), np.zeros((1, 3, 32, 32), np.float32), 0, _kw(), "(height, width, 3)"),
    (np.zeros((10, 12), np.uint8), np.zeros((1, 3, 32, 32), np.float32), 0, _kw(), "(height, width, 3)"),
    (np.zeros((0, 12, 3), np.uint8), np.zeros((1, 3, 32, 32), np.float32), 0, _kw(), "zero width or height"),
    (np.zeros((10, 24, 3), np.uint8)[:, ::2], np.zeros((1, 3, 32, 32), np.float32), 0, _kw(), "packed"),
    (np.zeros((3, 10, 12), np.uint8).transpose(1, 2, 0), np.zeros((1, 3, 32, 32), np.float32), 0, _kw(), "packed"),
    ([[[0, 0, 0]]], np.zeros((1, 3, 32, 32), np.float32), 0, _kw(), "numpy array"),
    (GOOD, np.zeros((1, 3, 32, 32), np.float64), 0, _kw(), "float32 (N, 3, H, W) or uint8"),
    (GOOD, np.zeros((1, 32, 32, 3), np.float32), 0, _kw(), "NCHW"),
    (GOOD, np.zeros((1, 3, 32, 32), np.uint8), 0, _kw(), "NHWC"),
    (GOOD, np.zeros((1, 3, 32, 33), np.float32), 0, _kw(), "NCHW"),
    (GOOD, np.zeros((1, 3, 32, 64), np.float32)[..., ::2], 0, _kw(), "C-contiguous"),
    (GOOD, np.zeros((2, 3, 32, 32), np.float32), 2, _kw(), "out of range"),
    (GOOD, np.zeros((2, 3, 32, 32), np.float32), -1, _kw(), "out of range"),
    (GOOD, np.zeros((1, 3, 32, 48), np.float32), 0, _kw(size=(32, 48), mode="shortest"), "square"),
    (GOOD, np.zeros((1, 3, 32, 32), np.float32), 0, _kw(mode="crop"), "resize mode"),
    (GOOD, np.zeros((1, 3, 32, 32), np.float32), 0, _kw(resample="nearest"), "resample filter"),
    (GOOD, np.zeros((1, 3, 32, 32), np.float32), 0, _kw(std=(1.0, 0.0, 1.0)), "zero"),
    (GOOD, np.zeros((1, 3, 32, 32), np.float32), 0, _kw(mean=(1.0, 2.0)), "3 values"),
    (GOOD, np.zeros((1, 3, 0, 32), np.float32), 0, _kw(size=(0, 32)), "positive"),
])
def test_bad_input_raises_invalid_input(image: object, out: object, index: int, kw: dict[str, object], needle: str) -> None:
    with pytest.raises(errors.InvalidInput, match=None) as info:
        resize_normalize_into(image, out, index, **kw)  # type: ignore[arg-type]
    assert needle in str(info.value)


def test_read_only_out_is_rejected() -> None:
    out = np.zeros((1, 3, 32, 32), np.float32)
    out.setflags(write=False)
    with pytest.raises(errors.InvalidInput, match="writeable"):
        resize_normalize_into(GOOD, out, 0, size=(32, 32), mode="squash")


def test_resize_info_is_frozen() -> None:
    info = ResizeInfo(scale=0.5, resized_width=2, resized_height=3)
    with pytest.raises(AttributeError):
        info.scale = 1.0  # type: ignore[misc]
