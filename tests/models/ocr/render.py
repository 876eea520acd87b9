"""Images with known text, rendered offline with Pillow and the DejaVu font matplotlib ships."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def font_path() -> Path:
    import matplotlib

    return Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"


def font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_path()), size)


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


SIGN = "STOP AHEAD 300 m"
PAGE = [
    "The quick brown fox jumps over",
    "the lazy dog near the river bank",
    "Invoice number 48213 paid in full",
    "Meeting room B opens at 9:30",
    "Please keep this door closed",
    "Total amount due 125.40 EUR",
    "Call us at 555 0199 for help",
    "Shipping address Main Street 12",
    "Order placed on March 3 2024",
    "Thank you for shopping with us",
    "Returns accepted within 30 days",
    "Open Monday to Friday 8 to 18",
    "Parking available behind store",
    "Fresh bread baked every morning",
    "Visit our website for details",
]
ROTATED = "Rotated line of text"
VERTICAL = "VERTICAL"
NOISY = "Noisy Background 42"


def sign() -> bytes:
    image = Image.new("RGB", (640, 240), (200, 20, 20))
    draw = ImageDraw.Draw(image)
    draw.text((40, 90), SIGN, fill="white", font=font(48))
    return png(image)


def page() -> bytes:
    image = Image.new("RGB", (900, 1200), "white")
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(PAGE):
        draw.text((60, 60 + i * 72), line, fill="black", font=font(34))
    return png(image)


def rotated() -> bytes:
    image = Image.new("RGB", (800, 400), "white")
    ImageDraw.Draw(image).text((120, 170), ROTATED, fill="black", font=font(44))
    return png(image.rotate(10, resample=Image.Resampling.BICUBIC, fillcolor="white"))


def vertical() -> bytes:
    """Letters stacked top to bottom in one column (read as one tall crop, rotated upright)."""
    line = Image.new("RGB", (440, 80), "white")
    ImageDraw.Draw(line).text((20, 10), VERTICAL, fill="black", font=font(52))
    image = Image.new("RGB", (300, 600), "white")
    image.paste(line.rotate(-90, expand=True), (110, 80))
    return png(image)


def noisy() -> bytes:
    rng = np.random.default_rng(3)
    pixels = rng.integers(120, 230, size=(360, 900, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    draw.rectangle((40, 130, 860, 230), fill=(250, 250, 250))
    draw.text((70, 150), NOISY, fill="black", font=font(54))
    return png(image)


def blank() -> bytes:
    return png(Image.new("RGB", (640, 480), (90, 140, 200)))


def tiny() -> bytes:
    image = Image.new("RGB", (120, 24), "white")
    ImageDraw.Draw(image).text((2, 2), "tiny", fill="black", font=font(16))
    return png(image)


LINES = ["Bakery Open Daily", "Fresh bread 2.50", "closed on holidays"]


def lines() -> bytes:
    """Three short lines of different sizes: a small, cheap page for option and concurrency tests."""
    image = Image.new("RGB", (560, 260), "white")
    draw = ImageDraw.Draw(image)
    for i, (line, size) in enumerate(zip(LINES, (34, 28, 22), strict=True)):
        draw.text((30, 25 + i * 80), line, fill="black", font=font(size))
    return png(image)
