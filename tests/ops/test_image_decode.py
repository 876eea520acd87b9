"""immich_ml.ops.image.decode_image against Pillow's own decoding of the same bytes."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

from immich_ml import errors
from immich_ml.ops.image import decode_image


def random_image(h: int, w: int, seed: int) -> NDArray[np.uint8]:
    """Noise over a gradient, so lossy codecs and DCT scaling have real content to work on."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    ramp = ((yy * 255 // max(h - 1, 1) + xx * 255 // max(w - 1, 1)) // 2)[..., None]
    mixed: NDArray[np.int64] = (rng.integers(0, 256, (h, w, 3)) + ramp * 3) // 4
    return mixed.astype(np.uint8)



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


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (b"hello, this is a text file\n", "they look like text, not an image"),
        (b"\x00\x01\x02\x03garbage" * 4, "data starting with bytes 00 01 02 03"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "Could not decode image"),
    ],
)
def test_decode_errors_name_the_problem_never_a_python_repr(data: bytes, named: str) -> None:
    # Before: "cannot identify image file <_io.BytesIO object at 0x7f...>".
    with pytest.raises(errors.InvalidImage) as caught:
        decode_image(data)
    assert named in caught.value.message
    assert " at 0x" not in caught.value.message and "<_io" not in caught.value.message


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
