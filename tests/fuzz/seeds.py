"""Seed inputs for the fuzz targets, generated (no binary files in the repository).

``write_seeds(target)`` fills ``<tmp>/immich-ml-fuzz/<target>/`` with a few valid inputs the
fuzzer mutates from (libFuzzer also adds the inputs it finds interesting there).
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import orjson
from PIL import Image

ENTRIES = [
    {"clip": {"visual": {"modelName": "ViT-B-32__openai"}}},
    {"clip": {"textual": {"modelName": "ViT-B-32__openai", "options": {"language": "de"}}}},
    {"facial-recognition": {"detection": {"modelName": "buffalo_l", "options": {"minScore": 0.7}},
                            "recognition": {"modelName": "buffalo_l"}}},
    {"ocr": {"detection": {"modelName": "PP-OCRv5_mobile", "options": {"minScore": 0.5}},
             "recognition": {"modelName": "PP-OCRv5_mobile", "options": {"minScore": 0.9}}}},
]


def images() -> list[bytes]:
    out = []
    base = Image.new("RGB", (23, 17), (200, 30, 90))
    for fmt, mode in (("JPEG", "RGB"), ("PNG", "RGBA"), ("GIF", "P"), ("WEBP", "RGB"), ("TIFF", "CMYK"),
                      ("BMP", "RGB"), ("PNG", "I;16"), ("JPEG", "L")):
        buffer = io.BytesIO()
        try:
            base.convert(mode).save(buffer, fmt)
        except (OSError, ValueError, KeyError):
            continue
        out.append(buffer.getvalue())
    return out


def multipart_bodies() -> list[bytes]:
    bodies = []
    for entries, payload in ((ENTRIES[0], ("image", images()[0])), (ENTRIES[1], ("text", b"a dog"))):
        name, data = payload
        filename = b'; filename="x.jpg"' if name == "image" else b""
        bodies.append(
            b"--B\r\nContent-Disposition: form-data; name=\"entries\"\r\n\r\n" + orjson.dumps(entries)
            + b"\r\n--B\r\nContent-Disposition: form-data; name=\"" + name.encode() + b"\"" + filename
            + b"\r\nContent-Type: application/octet-stream\r\n\r\n" + data + b"\r\n--B--\r\n"
        )
    # The multipart target reads the boundary from its first bytes: one length byte, then "B".
    return [b"\x01B" + body for body in bodies]


def seeds_for(target: str) -> list[bytes]:
    if target == "entries":
        return [orjson.dumps(e) for e in ENTRIES]
    if target == "decode":
        return [b"\x00" + data for data in images()]
    if target == "multipart":
        return multipart_bodies()
    return [os.urandom(512) for _ in range(4)]


def write_seeds(target: str) -> Path:
    folder = Path(tempfile.gettempdir()) / "immich-ml-fuzz" / target
    folder.mkdir(parents=True, exist_ok=True)
    for i, data in enumerate(seeds_for(target)):
        path = folder / f"seed-{i}"
        if not path.exists():
            path.write_bytes(data)
    return folder
