"""Images with known text for the OCR benchmark, rendered with Pillow and the DejaVu font matplotlib ships.

Deterministic (seeded), so every run and the reference see the same bytes: a document page, a
receipt, a sign, a rotated caption, a poster with lines of several sizes, a phone-sized photo with a
caption, a two-column page, and a scene with no text. ``varied(n)`` makes ``n`` images of random
sizes, aspect ratios and line counts for the shape-count and memory benchmark.
"""

from __future__ import annotations

import io
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

WORDS = (
    "invoice total amount paid order number street city open daily fresh bread coffee station platform "
    "exit north south meeting room parking free entry tickets museum garden library office hours monday "
    "friday summer sale discount price label photo album birthday party welcome home river bridge tower"
).split()


@dataclass(frozen=True)
class TextImage:
    name: str
    data: bytes
    lines: tuple[str, ...]


def font(size: int) -> ImageFont.FreeTypeFont:
    import matplotlib

    path = Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
    return ImageFont.truetype(str(path), size)


def _jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def _sentence(rng: random.Random, words: int) -> str:
    text = " ".join(rng.choice(WORDS) for _ in range(words))
    return text.capitalize() + (f" {rng.randint(1, 9999)}" if rng.random() < 0.5 else "")


def _page(rng: random.Random, size: tuple[int, int], lines: int, font_size: int, columns: int = 1,
          background: tuple[int, int, int] = (250, 250, 245)) -> tuple[Image.Image, list[str]]:
    image = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(image)
    face = font(font_size)
    written = []
    column_width = size[0] // columns
    for column in range(columns):
        for i in range(lines):
            text = _sentence(rng, rng.randint(2, 4 if columns > 1 else 6))
            draw.text((column * column_width + 40, 40 + i * int(font_size * 1.8)), text, fill=(20, 20, 20), font=face)
            written.append(text)
    return image, written


def bench_images(seed: int = 11) -> list[TextImage]:
    """The fixed OCR benchmark set."""
    rng = random.Random(seed)
    out: list[TextImage] = []
    page, lines = _page(rng, (1240, 1754), 24, 34)
    out.append(TextImage("page", _jpeg(page), tuple(lines)))
    receipt, lines = _page(rng, (600, 1400), 18, 28, background=(255, 255, 255))
    out.append(TextImage("receipt", _jpeg(receipt), tuple(lines)))
    columns, lines = _page(rng, (1600, 1200), 12, 30, columns=2)
    out.append(TextImage("two-columns", _jpeg(columns), tuple(lines)))
    sign = Image.new("RGB", (1200, 500), (20, 80, 160))
    ImageDraw.Draw(sign).text((80, 180), "PLATFORM 7 EXIT NORTH", fill="white", font=font(80))
    out.append(TextImage("sign", _jpeg(sign), ("PLATFORM 7 EXIT NORTH",)))
    poster = Image.new("RGB", (1080, 1350), (240, 220, 180))
    draw = ImageDraw.Draw(poster)
    poster_lines = ["SUMMER SALE", "Everything 30 percent off", "Friday to Monday", "Main Street 12"]
    for i, (text, size) in enumerate(zip(poster_lines, (110, 56, 44, 36), strict=True)):
        draw.text((60, 120 + i * 200), text, fill=(60, 20, 20), font=font(size))
    out.append(TextImage("poster", _jpeg(poster), tuple(poster_lines)))
    rng_np = np.random.default_rng(seed)
    scene = Image.fromarray(rng_np.integers(60, 200, (3000, 4000, 3), dtype=np.uint8)).filter(
        ImageFilter.GaussianBlur(6)
    )
    ImageDraw.Draw(scene).rectangle((300, 2400, 2300, 2700), fill=(245, 245, 245))
    ImageDraw.Draw(scene).text((360, 2470), "Welcome home 2024", fill=(10, 10, 10), font=font(160))
    out.append(TextImage("photo-caption", _jpeg(scene), ("Welcome home 2024",)))
    rotated = Image.new("RGB", (1400, 900), "white")
    ImageDraw.Draw(rotated).text((200, 400), "Museum garden opens at 9", fill="black", font=font(64))
    rotated = rotated.rotate(8, resample=Image.Resampling.BICUBIC, fillcolor="white")
    out.append(TextImage("rotated", _jpeg(rotated), ("Museum garden opens at 9",)))
    empty = Image.fromarray(rng_np.integers(90, 160, (1080, 1440, 3), dtype=np.uint8)).filter(
        ImageFilter.GaussianBlur(8)
    )
    out.append(TextImage("no-text", _jpeg(empty), ()))
    return out


def varied(count: int, seed: int = 5) -> list[TextImage]:
    """``count`` images of random size (300-4000 px sides, portrait and landscape) and line counts."""
    rng = random.Random(seed)
    images = []
    aspects = (4 / 3, 3 / 2, 16 / 9, 1.0, 3 / 4, 2 / 3, 9 / 16, 2.2)
    for i in range(count):
        long_side = rng.choice((480, 720, 1080, 1440, 1600, 2048, 3000, 4000)) + rng.randint(-40, 40)
        aspect = rng.choice(aspects)
        width, height = (long_side, int(long_side / aspect)) if aspect >= 1 else (int(long_side * aspect), long_side)
        size = max(12, int(min(width, height) / rng.uniform(14, 40)))
        lines = rng.randint(0, max(1, min(20, int(height / (size * 2)) - 2)))
        image, written = _page(rng, (width, height), lines, size)
        images.append(TextImage(f"varied-{i}", _jpeg(image), tuple(written)))
    return images


def names(images: Sequence[TextImage]) -> tuple[str, ...]:
    return tuple(image.name for image in images)
