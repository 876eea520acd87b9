"""immich_ml.ops.image against independent references: Pillow resize/crop/paste + numpy."""

from __future__ import annotations

import io
import struct
import threading
import zlib
from collections.abc import Callable, Iterator

import numpy as np
import PIL
import pytest
from numpy.typing import NDArray
from PIL import Image

from immich_ml import errors
from immich_ml._core import _image
from immich_ml.ops.image import ResizeInfo, decode_image, resize_normalize_into

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
    return ((noise + ramp * 3) // 4).astype(np.uint8)


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
    x = pixels.astype(np.float32) * np.float32(scale)
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def pillow_goes_vertical_first(h: int, w: int, size: tuple[int, int], mode: str) -> bool:
    rw, rh = expected_resized_size(h, w, size, mode)
    return rw != w and rh < h and h - rh > 2 * (w - rw)


SHAPES = [(1, 1), (1, 2000), (2000, 1), (2, 3), (17, 31), (224, 224), (301, 224), (224, 299),
          (480, 640), (1080, 1440), (1440, 1080), (1500, 400), (97, 13)]
CASES = [("shortest", (224, 224)), ("squash", (224, 224)), ("squash", (96, 160)),
         ("letterbox", (640, 640)), ("letterbox", (160, 96))]


@pytest.mark.parametrize("resample", list(FILTERS))
@pytest.mark.parametrize(("mode", "size"), CASES)
@pytest.mark.parametrize(("h", "w"), SHAPES)
def test_uint8_matches_pillow(h: int, w: int, mode: str, size: tuple[int, int], resample: str) -> None:
    if not PILLOW_13 and pillow_goes_vertical_first(h, w, size, mode):
        pytest.skip("this Pillow resamples horizontally first for this shape")
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
@pytest.mark.parametrize(("mode", "size"), CASES)
@pytest.mark.parametrize(("h", "w"), [(1, 1), (2000, 1), (33, 47), (1080, 1440), (1500, 400)])
def test_float_nchw_matches_pillow_then_numpy(h: int, w: int, mode: str, size: tuple[int, int], resample: str) -> None:
    if not PILLOW_13 and pillow_goes_vertical_first(h, w, size, mode):
        pytest.skip("this Pillow resamples horizontally first for this shape")
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
def test_portable_loops_match_pillow(portable_loops: None, h: int, w: int, mode: str, size: tuple[int, int], resample: str) -> None:
    img = random_image(h, w, seed=14)
    out = np.zeros((1, *size, 3), np.uint8)
    resize_normalize_into(img, out, 0, size=size, mode=mode, resample=resample)  # type: ignore[arg-type]
    ref = pil_reference(img, size, mode, resample)
    diff = np.abs(out[0].astype(np.int16) - ref.astype(np.int16))
    assert diff.max() <= 1 and np.count_nonzero(diff) <= diff.size // 1000


@pytest.mark.parametrize(("h", "w", "mode", "size"), [
    (1080, 1440, "shortest", (224, 224)), (3000, 700, "shortest", (224, 224)), (33, 20, "letterbox", (64, 64)),
])
def test_portable_and_vector_loops_agree_on_float_output(h: int, w: int, mode: str, size: tuple[int, int]) -> None:
    img = random_image(h, w, seed=16)
    outs = np.zeros((2, 3, *size), np.float32)
    previous = _image.set_vector_kernels(False)
    try:
        resize_normalize_into(img, outs, 0, size=size, mode=mode, mean=OPENAI_MEAN, std=OPENAI_STD)  # type: ignore[arg-type]
    finally:
        _image.set_vector_kernels(previous)
    resize_normalize_into(img, outs, 1, size=size, mode=mode, mean=OPENAI_MEAN, std=OPENAI_STD)  # type: ignore[arg-type]
    np.testing.assert_allclose(outs[0], outs[1], rtol=0, atol=1e-6)


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


@pytest.mark.parametrize(("h", "w", "mode", "size"), [
    (1080, 1440, "shortest", (224, 224)),   # horizontal pass first
    (3000, 700, "shortest", (224, 224)),    # vertical pass first
    (1440, 1080, "letterbox", (640, 640)),
    (50, 60, "squash", (300, 500)),         # upscale
])
@pytest.mark.parametrize("threads", [2, 3, 8])
def test_kernel_threads_give_identical_results(h: int, w: int, mode: str, size: tuple[int, int], threads: int) -> None:
    img = random_image(h, w, seed=5)
    serial = np.zeros((1, 3, *size), np.float32)
    parallel = np.zeros_like(serial)
    resize_normalize_into(img, serial, 0, size=size, mode=mode, mean=OPENAI_MEAN, std=OPENAI_STD)
    resize_normalize_into(img, parallel, 0, size=size, mode=mode, mean=OPENAI_MEAN, std=OPENAI_STD, threads=threads)
    np.testing.assert_array_equal(parallel, serial)


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
    (GOOD, np.zeros((1, 3, 32, 32), np.float32), 0, _kw(threads=0), "threads"),
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


# --- decode_image --------------------------------------------------------------------------------


def encode(img: NDArray[np.uint8] | Image.Image, fmt: str, **params: object) -> bytes:
    pil = img if isinstance(img, Image.Image) else Image.fromarray(img)
    buf = io.BytesIO()
    pil.save(buf, fmt, **params)
    return buf.getvalue()


@pytest.mark.parametrize(("fmt", "params"), [("PNG", {}), ("WEBP", {"lossless": True}), ("BMP", {}), ("TIFF", {})])
def test_decode_lossless_round_trip(fmt: str, params: dict[str, object]) -> None:
    img = random_image(37, 53, seed=6)
    got = decode_image(encode(img, fmt, **params))
    assert got.dtype == np.uint8 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, img)


def test_decode_jpeg_matches_pillow_full_decode() -> None:
    data = encode(random_image(120, 90, seed=7), "JPEG", quality=90)
    np.testing.assert_array_equal(decode_image(data), np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "I;16"])
def test_decode_converts_to_rgb_like_pillow(mode: str) -> None:
    pil = Image.fromarray(random_image(20, 30, seed=8)).convert(mode)
    fmt = "TIFF" if mode in ("CMYK", "I;16") else "PNG"
    data = encode(pil, fmt)
    got = decode_image(data)
    assert got.shape == (20, 30, 3)
    np.testing.assert_array_equal(got, np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))


def test_decode_ignores_exif_orientation() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 on display; Immich does not apply it
    data = encode(random_image(40, 60, seed=9), "JPEG", exif=exif)
    assert decode_image(data).shape == (40, 60, 3)


@pytest.mark.parametrize("data", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\0" * 40])
def test_decode_garbage_raises_invalid_image(data: bytes) -> None:
    with pytest.raises(errors.InvalidImage, match="Could not decode image"):
        decode_image(data)


def test_decode_truncated_jpeg_raises_invalid_image() -> None:
    data = encode(random_image(300, 400, seed=10), "JPEG")
    with pytest.raises(errors.InvalidImage, match="Could not decode image"):
        decode_image(data[: len(data) // 2])


def test_decode_zero_size_raises_invalid_image(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pillow's own decoders refuse zero-sized files; feed the guard an empty image directly.
    monkeypatch.setattr(Image, "open", lambda fp: Image.new("RGB", (0, 5)))
    with pytest.raises(errors.InvalidImage, match="zero width or height"):
        decode_image(b"anything")


def test_decode_pixel_limit() -> None:
    data = encode(random_image(100, 200, seed=11), "PNG")
    assert decode_image(data, max_pixels=20_000).shape == (100, 200, 3)
    with pytest.raises(errors.InvalidImage, match="19999"):
        decode_image(data, max_pixels=19_999)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height but carries almost no pixel data (never decodable)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 16)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decode_huge_header_is_refused_before_decoding() -> None:
    with pytest.raises(errors.InvalidImage, match="100000000"):
        decode_image(png_header_only(12_000, 12_000))  # 144 Mpx: over our limit
    with pytest.raises(errors.InvalidImage, match="100000000"):
        decode_image(png_header_only(30_000, 30_000))  # 900 Mpx: Pillow's own bomb check fires first


@pytest.mark.parametrize("min_side", [1, 100, 224, 269, 270, 271, 640, 5000])
def test_decode_jpeg_draft_keeps_both_sides_at_least_min_side(min_side: int) -> None:
    full = random_image(1080, 1440, seed=12)
    data = encode(full, "JPEG", quality=85)
    got = decode_image(data, min_side=min_side)
    h, w = got.shape[:2]
    assert min(h, w) >= min(min_side, 1080)
    # The largest power-of-two reduction (up to 8) that keeps both sides >= min_side.
    factor = next(f for f in (8, 4, 2, 1) if min(1440 // f, 1080 // f) >= min_side or f == 1)
    assert (h, w) == (-(-1080 // factor), -(-1440 // factor))
    if factor > 1:
        small = np.asarray(Image.fromarray(full).resize((w, h), Image.Resampling.BOX), np.int16)
        assert np.abs(got.astype(np.int16) - small).mean() < 40  # the same picture, not garbage


def test_decode_mpo_uses_first_frame_and_draft() -> None:
    first = random_image(800, 1200, seed=15)
    buf = io.BytesIO()
    Image.fromarray(first).save(buf, "MPO", save_all=True, append_images=[Image.new("RGB", (1200, 800), "white")])
    got = decode_image(buf.getvalue(), min_side=200)
    assert got.shape == (200, 300, 3)  # 1/4 scale keeps the short side at 200
    small = np.asarray(Image.fromarray(first).resize((300, 200), Image.Resampling.BOX), np.int16)
    assert np.abs(got.astype(np.int16) - small).mean() < 40


def test_decode_min_side_ignored_for_png() -> None:
    img = random_image(800, 600, seed=13)
    np.testing.assert_array_equal(decode_image(encode(img, "PNG"), min_side=100), img)


def test_resize_info_is_frozen() -> None:
    info = ResizeInfo(scale=0.5, resized_width=2, resized_height=3)
    with pytest.raises(AttributeError):
        info.scale = 1.0  # type: ignore[misc]
