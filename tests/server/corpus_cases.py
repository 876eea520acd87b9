"""The bad-input corpus of tests/server/test_corpus.py, generated here (no binary files committed).

Each :class:`Case` is one complete HTTP request and what a correct service answers: a 4xx whose
``detail`` names the problem, or (``ok_size``) a 200 for inputs that must work, with the image's
own size. ``either`` marks inputs where a 200 is as correct as a 4xx (a truncated GIF still has a
readable first frame, a polyglot is a valid image as well).
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import orjson
from immich_client import undici_boundary, undici_multipart
from PIL import Image

from immich_ml.models.starter import FACE_MODEL, TINY_CLIP_MODEL

VISUAL = {"clip": {"visual": {"modelName": TINY_CLIP_MODEL}}}
TEXTUAL = {"clip": {"textual": {"modelName": TINY_CLIP_MODEL}}}
FACES = {
    "facial-recognition": {
        "detection": {"modelName": FACE_MODEL, "options": {"minScore": 0.7}},
        "recognition": {"modelName": FACE_MODEL},
    }
}
MAX_REQUEST_MB = 4  # the corpus service's MACHINE_LEARNING_MAX_REQUEST_MB
MAX_IMAGE_PIXELS = 40_000_000  # its MACHINE_LEARNING_MAX_IMAGE_PIXELS


@dataclass(frozen=True)
class Case:
    name: str
    raw: bytes  # the whole request, headers and body
    statuses: frozenset[int]  # acceptable error statuses (empty: must be 200)
    names: tuple[str, ...] = ()  # the detail must contain one of these (case-insensitive)
    ok_size: tuple[int, int] | None = None  # a 200 must report this (height, width)
    either: bool = False  # a 200 is acceptable too
    half_close: bool = False  # stop writing after ``raw`` (a body cut mid-stream)
    extra: dict[str, str] = field(default_factory=dict)


def request(
    body: bytes,
    content_type: str | None,
    *,
    method: str = "POST",
    path: str = "/predict",
    length: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "host: 127.0.0.1", "connection: close"]
    if content_type is not None:
        lines.append(f"content-type: {content_type}")
    lines.append(f"content-length: {len(body) if length is None else length}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def form(fields: list[tuple[str, str | bytes]] | Mapping[str, str | bytes], boundary: str | None = None) -> bytes:
    """A multipart request; ``fields`` may repeat names (a list of pairs)."""
    boundary = boundary or undici_boundary(random.Random(7))
    pairs = list(fields.items()) if isinstance(fields, Mapping) else fields
    body = b"".join(undici_multipart({name: value}, boundary)[: -len(f"--{boundary}--\r\n")] for name, value in pairs)
    body += f"--{boundary}--\r\n".encode()
    return request(body, f"multipart/form-data; boundary={boundary}")


def entries(value: object) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


# --- images ----------------------------------------------------------------------------------------


def picture(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = random.Random(seed)
    image = Image.new("RGB", (width, height), (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    if width > 4 and height > 4:
        image.paste((rng.randrange(256), 20, 200), (width // 4, height // 4, width // 2, height // 2))
    return image


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP", "AVIF")


def working_images() -> Iterator[tuple[str, bytes, tuple[int, int]]]:
    """Images that must decode: (name, bytes, (height, width))."""
    base = picture(48, 32, 1)
    for fmt in FORMATS:
        yield f"{fmt.lower()}-rgb", encode(base, fmt), (32, 48)
        yield f"{fmt.lower()}-1x1", encode(picture(1, 1, 2), fmt), (1, 1)
    yield "png-30000x1", encode(picture(30000, 1, 3), "PNG"), (1, 30000)
    yield "png-1x30000", encode(picture(1, 30000, 3), "PNG"), (30000, 1)
    yield "jpeg-30000x1", encode(picture(30000, 1, 3), "JPEG"), (1, 30000)
    yield "jpeg-cmyk", encode(base.convert("CMYK"), "JPEG"), (32, 48)
    yield "tiff-cmyk", encode(base.convert("CMYK"), "TIFF"), (32, 48)
    yield "png-16bit-gray", encode(base.convert("L").convert("I;16"), "PNG"), (32, 48)
    yield "tiff-16bit-gray", encode(base.convert("L").convert("I;16"), "TIFF"), (32, 48)
    yield "tiff-32bit-int", encode(base.convert("I"), "TIFF"), (32, 48)
    yield "tiff-float", encode(base.convert("F"), "TIFF"), (32, 48)
    yield "png-palette", encode(base.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"), (32, 48)
    palette = base.convert("P", palette=Image.Palette.ADAPTIVE)
    palette.info["transparency"] = 0
    yield "png-palette-transparency", encode(palette, "PNG"), (32, 48)
    yield "png-rgba", encode(base.convert("RGBA"), "PNG"), (32, 48)
    yield "png-la", encode(base.convert("LA"), "PNG"), (32, 48)
    yield "png-gray", encode(base.convert("L"), "PNG"), (32, 48)
    yield "png-1bit", encode(base.convert("1"), "PNG"), (32, 48)
    yield "webp-rgba", encode(base.convert("RGBA"), "WEBP"), (32, 48)
    yield "webp-lossless", encode(base, "WEBP", lossless=True), (32, 48)
    yield "jpeg-gray", encode(base.convert("L"), "JPEG"), (32, 48)
    yield "jpeg-progressive", encode(base, "JPEG", progressive=True), (32, 48)
    for orientation in (3, 6, 8):
        exif = Image.Exif()
        exif[0x0112] = orientation
        # Immich does not apply EXIF rotation: the stored size is reported.
        yield f"jpeg-exif-orientation-{orientation}", encode(base, "JPEG", exif=exif), (32, 48)
    frames = [picture(48, 32, s) for s in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=50)
    yield "gif-animated", buffer.getvalue(), (32, 48)
    yield "tiff-multipage", _tiff_pages(frames), (32, 48)
    yield "jpeg-with-trailing-zip", encode(base, "JPEG") + b"PK\x03\x04" + b"\0" * 200, (32, 48)
    yield "png-with-trailing-html", encode(base, "PNG") + b"<html><script>alert(1)</script></html>", (32, 48)


def _tiff_pages(frames: list[Image.Image]) -> bytes:
    buffer = io.BytesIO()
    frames[0].save(buffer, "TIFF", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header(width: int, height: int, idat: bytes = b"") -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + (_png_chunk(b"IDAT", idat) if idat else b"")


def bomb_png(width: int, height: int) -> bytes:
    """A PNG whose pixel data really is width x height (one colour, so it compresses to little)."""
    row = b"\0" + b"\0" * (3 * width)
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return png_header(width, height, data) + _png_chunk(b"IEND", b"")


def jpeg_with_size(width: int, height: int) -> bytes:
    """A small JPEG whose SOF header claims ``width`` x ``height``."""
    data = bytearray(encode(picture(16, 16, 4), "JPEG"))
    index = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, index + 5, height, width)
    return bytes(data)


def gif_with_size(width: int, height: int) -> bytes:
    data = bytearray(encode(picture(16, 16, 5), "GIF"))
    struct.pack_into("<HH", data, 6, width, height)  # logical screen
    index = data.find(b"\x2c")  # image descriptor
    struct.pack_into("<HH", data, index + 5, width, height)
    return bytes(data)


def broken_images() -> Iterator[tuple[str, bytes, bool]]:
    """(name, bytes, a 200 is also acceptable)."""
    base = picture(64, 48, 6)
    for fmt in FORMATS:
        good = encode(base, fmt)
        for fraction in (0.1, 0.5, 0.9):
            # Some formats keep a readable image when cut late (GIF, BMP, TIFF strips ...).
            yield f"{fmt.lower()}-truncated-{int(fraction * 100)}", good[: max(1, int(len(good) * fraction))], True
        yield f"{fmt.lower()}-header-only", good[:16], False
        rng = random.Random(fmt)
        for trial in range(3):
            corrupt = bytearray(good)
            for _ in range(8):
                position = rng.randrange(min(len(corrupt), 40), len(corrupt))
                corrupt[position] = rng.randrange(256)
            yield f"{fmt.lower()}-corrupt-{trial}", bytes(corrupt), True
    yield "heic-brand-only", b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + b"\0" * 64, False
    yield "svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', False
    yield "pdf", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n", False
    yield "html", b"<!doctype html><html><body>not an image</body></html>", False
    yield "zip", b"PK\x03\x04" + b"\0" * 100, False
    yield "elf", b"\x7fELF\x02\x01\x01" + b"\0" * 100, False
    yield "text-file", b"hello, this is a text file\n" * 10, False
    yield "utf16-text", "a text file".encode("utf-16"), False
    yield "random-bytes", random.Random(1).randbytes(4096), False
    yield "all-zero", b"\0" * 4096, False
    yield "gif-js-polyglot", b"GIF89a/*\x01\x00\x01\x00\x00\x00\x00*/=alert(1);", False
    yield "png-signature-only", b"\x89PNG\r\n\x1a\n", False
    yield "png-ihdr-zero-size", png_header(0, 0), False
    yield "png-bad-crc", png_header(8, 8)[:-1] + b"\x00", False
    yield "png-ihdr-no-data", png_header(8, 8) + _png_chunk(b"IEND", b""), False
    yield "jpeg-soi-eoi", b"\xff\xd8\xff\xd9", False
    yield "jpeg-zero-size", jpeg_with_size(0, 0), False
    yield "gif-screen-descriptor-only", b"GIF89a\x10\x00\x10\x00\x00\x00\x00", False
    yield "bmp-header-lies", b"BM" + struct.pack("<IHHI", 1 << 30, 0, 0, 54) + struct.pack("<IiiHH", 40, 1 << 20, 1 << 20, 1, 24) + b"\0" * 24, False
    yield "tiff-ifd-offset-only", b"II*\x00\x08\x00\x00\x00", False
    yield "webp-riff-only", b"RIFF\x10\x00\x00\x00WEBPVP8 ", False


def bombs() -> Iterator[tuple[str, bytes]]:
    """Images over MACHINE_LEARNING_MAX_IMAGE_PIXELS: refused from their header, before decoding."""
    yield "png-bomb-8000x8000-real-data", bomb_png(8000, 8000)
    yield "png-header-65535x65535", png_header(65535, 65535, zlib.compress(b"\0" * 1000))
    yield "png-header-4g-pixels", png_header(2**31 - 1, 2**31 - 1, zlib.compress(b"\0" * 100))
    yield "jpeg-sof-65000x65000", jpeg_with_size(65000, 65000)
    yield "jpeg-sof-65535x1000", jpeg_with_size(65535, 1000)
    yield "gif-65535x65535", gif_with_size(65535, 65535)


# --- requests --------------------------------------------------------------------------------------


IMAGE_PROBLEM = ("decode", "image", "pixels", "format")


def cases() -> list[Case]:
    found: list[Case] = []
    add = found.append
    # Images that must work, through CLIP visual (one of them through face detection too).
    for name, data, (height, width) in working_images():
        add(Case(f"image-ok-{name}", form({"entries": entries(VISUAL), "image": data}), frozenset(), ok_size=(height, width)))
    tall = next(d for n, d, _ in working_images() if n == "png-1x30000")
    add(Case("faces-ok-png-1x30000", form({"entries": entries(FACES), "image": tall}), frozenset(), ok_size=(30000, 1)))
    for name, data, either in broken_images():
        add(Case(f"image-bad-{name}", form({"entries": entries(VISUAL), "image": data}), frozenset({400}),
                 IMAGE_PROBLEM, either=either))
    for name, data in bombs():
        add(Case(f"image-bomb-{name}", form({"entries": entries(VISUAL), "image": data}), frozenset({400}),
                 ("pixels", "decode", "image")))
    add(Case("image-empty", form({"entries": entries(VISUAL), "image": b""}), frozenset({400}), ("empty",)))
    add(Case("image-as-text-field", form({"entries": entries(VISUAL), "image": "not a file"}), frozenset({400}),
             ("file part",)))
    add(Case("image-for-text-model", form({"entries": entries(TEXTUAL), "image": encode(picture(8, 8), "PNG")}),
             frozenset({400}), ("text",)))
    add(Case("text-for-image-model", form({"entries": entries(VISUAL), "text": "a dog"}), frozenset({400}),
             ("image",)))
    add(Case("faces-bad-image", form({"entries": entries(FACES), "image": b"GIF89a nope"}), frozenset({400}),
             IMAGE_PROBLEM))
    found += entries_cases()
    found += model_name_cases()
    found += text_cases()
    found += framing_cases()
    return found


ENTRIES_PROBLEM = ("entries", "request format", "task", "type", "modelName", "options", "depends")


def entries_cases() -> list[Case]:
    bad: list[tuple[str, str]] = [
        ("not-json", "{clip"),
        ("empty-string", ""),
        ("json-list", "[]"),
        ("json-string", '"clip"'),
        ("json-number", "42"),
        ("json-null", "null"),
        ("json-true", "true"),
        ("empty-object", "{}"),
        ("unknown-task", entries({"bogus": {"visual": {"modelName": TINY_CLIP_MODEL}}})),
        ("unknown-type", entries({"clip": {"bogus": {"modelName": TINY_CLIP_MODEL}}})),
        ("task-not-object", entries({"clip": "visual"})),
        ("task-empty-object", entries({"clip": {}})),
        ("task-list", entries({"clip": ["visual"]})),
        ("type-not-object", entries({"clip": {"visual": TINY_CLIP_MODEL}})),
        ("type-null", entries({"clip": {"visual": None}})),
        ("modelname-missing", entries({"clip": {"visual": {}}})),
        ("modelname-int", entries({"clip": {"visual": {"modelName": 1}}})),
        ("modelname-null", entries({"clip": {"visual": {"modelName": None}}})),
        ("modelname-list", entries({"clip": {"visual": {"modelName": [TINY_CLIP_MODEL]}}})),
        ("modelname-object", entries({"clip": {"visual": {"modelName": {"a": 1}}}})),
        ("options-list", entries({"clip": {"visual": {"modelName": TINY_CLIP_MODEL, "options": [1]}}})),
        ("options-string", entries({"clip": {"visual": {"modelName": TINY_CLIP_MODEL, "options": "x"}}})),
        ("nesting-depth-100000", "[" * 100_000 + "]" * 100_000),
        ("nesting-depth-objects", '{"a":' * 5000 + "1" + "}" * 5000),
        ("deep-options", entries({"clip": {"visual": {"modelName": TINY_CLIP_MODEL}}})[:-3] + ',"options":' + '{"a":' * 3000 + "1" + "}" * 3000 + "}}}"),
        ("huge-unknown-task", entries({"x" * 1_000_000: {"visual": {"modelName": TINY_CLIP_MODEL}}})),
        ("many-unknown-tasks", entries({f"task{i}": {"visual": {"modelName": "m"}} for i in range(20000)})),
        ("trailing-garbage", entries(VISUAL) + "garbage"),
        ("nan-literal", '{"clip":{"visual":{"modelName":NaN}}}'),
        ("lone-surrogate", '{"clip":{"visual":{"modelName":"\\ud800"}}}'),
        ("bom-prefix", "\ufeff" + entries(VISUAL)),
        ("single-quotes", "{'clip':{'visual':{'modelName':'x'}}}"),
        ("recognition-without-detection", entries({"facial-recognition": {"recognition": {"modelName": FACE_MODEL}}})),
        ("ocr-recognition-without-detection", entries({"ocr": {"recognition": {"modelName": "PP-OCRv5_mobile"}}})),
        ("task-name-unicode", entries({"clíp": {"visual": {"modelName": TINY_CLIP_MODEL}}})),
        ("task-name-nul", entries({"clip\u0000": {"visual": {"modelName": TINY_CLIP_MODEL}}})),
    ]
    image = encode(picture(20, 20, 8), "PNG")
    out = [Case(f"entries-{name}", form({"entries": value, "image": image}), frozenset({400, 422}), ENTRIES_PROBLEM)
           for name, value in bad]
    # Duplicate keys: JSON parsers keep the last one, as Immich's does; the answer is correct.
    duplicate = '{"clip":{"visual":{"modelName":"nope"},"visual":{"modelName":"%s"}}}' % TINY_CLIP_MODEL
    out.append(Case("entries-duplicate-keys", form({"entries": duplicate, "image": image}), frozenset(), ok_size=(20, 20)))
    # Unknown options are ignored (Immich does the same); options with wrong value types are refused or ignored.
    odd_options = entries({"clip": {"visual": {"modelName": TINY_CLIP_MODEL, "options": {"zzz": [1, {"a": None}]}}}})
    out.append(Case("entries-unknown-options", form({"entries": odd_options, "image": image}), frozenset(), ok_size=(20, 20)))
    for name, options in (("minscore-string", {"minScore": "high"}), ("minscore-nan", {"minScore": "NaN"}),
                          ("minscore-huge", {"minScore": 1e308}), ("minscore-negative", {"minScore": -5}),
                          ("minscore-list", {"minScore": [0.5]})):
        faces = {"facial-recognition": {"detection": {"modelName": FACE_MODEL, "options": options},
                                        "recognition": {"modelName": FACE_MODEL}}}
        out.append(Case(f"entries-faces-{name}", form({"entries": entries(faces), "image": image}),
                        frozenset({400, 422}), ("minScore", "score"), either=True))
    return out


def model_name_cases() -> list[Case]:
    names = [
        "../../etc/passwd", "..", ".", "/etc/passwd", "/", "a/../../b", "immich-app/../../x",
        "ViT-B-32__openai/../../../tmp", "name\x00.onnx", "\x00", "C:\\Windows\\system32", "\\\\server\\share",
        "%2e%2e%2f%2e%2e%2f", "..%2f..%2f", "~root", "$HOME", "`id`", "$(id)", "name;rm -rf /",
        "ViT-B-32__openai\u202e", "ViT\u2024B\u201132", "模型", "😀", "\u0301", "ViT-B-32__openai ", " ViT-B-32__openai",
        "x" * 10_000, "", " ", "\n", "immich-app/", "/immich-app/buffalo_l", "buffalo_l/../buffalo_l",
        "file:///etc/passwd", "http://evil.example/model", "ViT-B-32__openai\r\nX-Injected: 1",
    ]
    out = []
    image = encode(picture(20, 20, 9), "PNG")
    targets = (("clip-visual", "clip", "visual", True), ("clip-textual", "clip", "textual", False),
               ("faces-detection", "facial-recognition", "detection", True))
    for i, name in enumerate(names):
        label, task, model_type, needs_image = targets[i % len(targets)]
        value: dict[str, object] = {task: {model_type: {"modelName": name}}}
        if model_type == "detection":
            value[task]["recognition"] = {"modelName": FACE_MODEL}  # type: ignore[index]
        payload: dict[str, str | bytes] = {"entries": entries(value)}
        payload.update({"image": image} if needs_image else {"text": "a dog"})
        # 503: a name that cleans to a real Immich model (buffalo_l/../buffalo_l) that is not in
        # this offline cache; the message names the model and the cache folder.
        out.append(Case(f"model-name-{i:02d}-{label}", form(payload), frozenset({400, 422, 503}),
                        ("model", "modelName", "name"), extra={"model": name[:40]}))
    return out


def text_cases() -> list[Case]:
    boundary = undici_boundary(random.Random(3))
    text_part = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"entries\"\r\n\r\n{entries(TEXTUAL)}\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\n"
    ).encode()

    def raw_text(value: bytes) -> bytes:
        return request(text_part + value + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}")

    out = [
        Case("text-bad-utf8", raw_text(b"a \xff\xfe dog"), frozenset({400}), ("UTF-8", "utf", "text"), either=True),
        Case("text-overlong-utf8", raw_text(b"\xc0\xaf\xc0\xaf"), frozenset({400}), ("UTF-8", "utf", "text"), either=True),
        Case("text-lone-surrogate-utf8", raw_text(b"\xed\xa0\x80"), frozenset({400}), ("UTF-8", "utf", "text"), either=True),
        Case("text-nul", raw_text(b"a\x00dog"), frozenset({400}), ("text",), either=True),
        Case("text-empty", form({"entries": entries(TEXTUAL), "text": ""}), frozenset({400}), ("text",), either=True),
        Case("text-megabyte", form({"entries": entries(TEXTUAL), "text": "a dog " * 180_000}), frozenset({400, 413}),
             ("text", "large", "limit"), either=True),
        Case("text-emoji-100k", form({"entries": entries(TEXTUAL), "text": "😀" * 100_000}), frozenset({400, 413}),
             ("text", "large", "limit"), either=True),
        Case("text-combining-marks", form({"entries": entries(TEXTUAL), "text": "a" + "\u0301" * 50_000}),
             frozenset({400, 413}), ("text", "large", "limit"), either=True),
        Case("text-rtl-controls", form({"entries": entries(TEXTUAL), "text": "\u202e\u2066dog\u2069"}), frozenset(), either=True),
        Case("text-only-whitespace", form({"entries": entries(TEXTUAL), "text": " \t\r\n "}), frozenset({400}), ("text",), either=True),
    ]
    return out


def framing_cases() -> list[Case]:
    image = encode(picture(20, 20, 10), "PNG")
    ok_fields = {"entries": entries(VISUAL), "image": image}
    missing = ("entries", "missing")
    out = [
        Case("form-missing-entries", form({"image": image}), frozenset({400, 422}), missing),
        Case("form-missing-payload", form({"entries": entries(VISUAL)}), frozenset({400}), ("image", "text")),
        Case("form-empty", form({}), frozenset({400, 422}), missing),
        Case("form-doubled-entries", form([("entries", entries(VISUAL)), ("entries", entries(TEXTUAL)), ("image", image)]),
             frozenset({400, 422}), ("entries", "image", "text"), either=True),
        Case("form-doubled-image", form([("entries", entries(VISUAL)), ("image", image), ("image", b"junk")]),
             frozenset({400}), IMAGE_PROBLEM, either=True),
        Case("form-doubled-text", form([("entries", entries(TEXTUAL)), ("text", "a"), ("text", "b")]),
             frozenset({400}), ("text",), either=True),
        Case("form-image-and-text", form([("entries", entries(VISUAL)), ("image", image), ("text", "a")]),
             frozenset(), ok_size=(20, 20)),
        Case("form-unknown-fields", form([("entries", entries(VISUAL)), ("image", image), ("junk", "x" * 1000)]),
             frozenset(), ok_size=(20, 20)),
    ]
    body = form(ok_fields).split(b"\r\n\r\n", 1)[1]
    content_types = {
        "json": "application/json", "text-plain": "text/plain", "no-content-type": None,
        "multipart-mixed": "multipart/mixed; boundary=x", "multipart-no-boundary": "multipart/form-data",
        "multipart-wrong-boundary": "multipart/form-data; boundary=nope", "octet-stream": "application/octet-stream",
        "urlencoded-binary": "application/x-www-form-urlencoded", "multipart-empty-boundary": "multipart/form-data; boundary=",
        "multipart-long-boundary": "multipart/form-data; boundary=" + "b" * 5000,
    }
    for name, content_type in content_types.items():
        out.append(Case(f"content-type-{name}", request(body, content_type), frozenset({400, 413, 415, 422}), missing + ("request",)))
    out.append(Case("json-body", request(orjson.dumps({"entries": entries(TEXTUAL), "text": "a"}), "application/json"),
                    frozenset({400, 415, 422}), missing))
    boundary = undici_boundary(random.Random(4))
    head = f"--{boundary}\r\nContent-Disposition: form-data; name=\"entries\"\r\n\r\n{entries(VISUAL)}\r\n".encode()
    mp = f"multipart/form-data; boundary={boundary}"
    weird_bodies = {
        "no-closing-boundary": head + f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a\"\r\n\r\n".encode() + image,
        "part-without-headers": head + f"--{boundary}\r\n\r\nxyz\r\n--{boundary}--\r\n".encode(),
        "part-without-name": head + f"--{boundary}\r\nContent-Disposition: form-data\r\n\r\nxyz\r\n--{boundary}--\r\n".encode(),
        "lf-only-line-ends": head.replace(b"\r\n", b"\n") + f"--{boundary}--\n".encode(),
        "huge-part-header": head + f"--{boundary}\r\nContent-Disposition: form-data; name=\"{'n' * 100_000}\"\r\n\r\nx\r\n--{boundary}--\r\n".encode(),
        "thousand-parts": head + b"".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"f{i}\"\r\n\r\nx\r\n".encode() for i in range(1000)) + f"--{boundary}--\r\n".encode(),
        "only-closing-boundary": f"--{boundary}--\r\n".encode(),
        "empty-body": b"",
        "garbage-body": random.Random(5).randbytes(2000),
        "nul-in-headers": head + f"--{boundary}\r\nContent-Disposition: form-data; name=\"ima\x00ge\"; filename=\"a\"\r\n\r\n".encode() + image + f"\r\n--{boundary}--\r\n".encode(),
    }
    for name, weird in weird_bodies.items():
        out.append(Case(f"multipart-{name}", request(weird, mp), frozenset({400, 422}), missing + ("image", "text", "request")))
    # Bodies over MACHINE_LEARNING_MAX_REQUEST_MB: refused from the Content-Length, before the body.
    too_big = (MAX_REQUEST_MB + 76) * 2**20
    out.append(Case("body-content-length-80mb-headers-only", request(b"", mp, length=too_big), frozenset({413}),
                    ("MACHINE_LEARNING_MAX_REQUEST_MB",), half_close=False))
    out.append(Case("body-content-length-80mb-some-body", request(b"x" * 300_000, mp, length=too_big), frozenset({413}),
                    ("MACHINE_LEARNING_MAX_REQUEST_MB",)))
    out.append(Case("body-content-length-just-over", request(b"", mp, length=MAX_REQUEST_MB * 2**20 + 1), frozenset({413}),
                    ("MACHINE_LEARNING_MAX_REQUEST_MB",)))
    out.append(Case("body-expect-100-continue-too-big", request(b"", mp, length=too_big, headers={"expect": "100-continue"}),
                    frozenset({413}), ("MACHINE_LEARNING_MAX_REQUEST_MB",)))
    out.append(Case("body-content-length-huge-number", request(b"", mp, length=10**30), frozenset({400, 413}),
                    ("MACHINE_LEARNING_MAX_REQUEST_MB", "content-length", "bad request")))
    out.append(Case("body-content-length-negative", request(b"", mp).replace(b"content-length: 0", b"content-length: -5"),
                    frozenset({400}), ("content-length", "bad request", "request")))
    out.append(Case("body-two-content-lengths", request(body, mp).replace(b"content-length:", b"content-length: 5\r\ncontent-length:", 1),
                    frozenset({400}), ("content-length", "bad request", "request")))
    chunked = b"".join(f"{len(piece):x}\r\n".encode() + piece + b"\r\n" for piece in (body[:1000], body[1000:])) + b"0\r\n\r\n"
    mp_ok = form(ok_fields).split(b"\r\n", 4)[3].decode().split(": ", 1)[1]
    out.append(Case("body-chunked-ok", request(chunked, mp_ok, headers={"transfer-encoding": "chunked"}).replace(
        f"content-length: {len(chunked)}\r\n".encode(), b""), frozenset(), ok_size=(20, 20)))
    out.append(Case("body-chunked-bad-size", request(b"zz\r\nabc\r\n0\r\n\r\n", mp, headers={"transfer-encoding": "chunked"}).replace(
        b"content-length: 15\r\n", b""), frozenset({400}), ("chunk", "bad request", "request", "entries")))
    cut = form(ok_fields)
    # A body cut mid-stream: the client stops writing and half-closes; the service must not hang
    # a worker on it and must keep serving (the answer itself may never come).
    out.append(Case("body-cut-mid-stream", cut[: len(cut) // 2], frozenset({400, 408}), ("request",), half_close=True))
    out.append(Case("body-shorter-than-content-length", cut.replace(b"content-length: ", b"content-length: 9", 1)[:-10],
                    frozenset({400, 408}), ("request",), half_close=True))
    out += [
        Case("route-get-predict", request(b"", None, method="GET"), frozenset({405}), ("method", "not allowed")),
        Case("route-put-predict", request(body, mp, method="PUT"), frozenset({405}), ("method", "not allowed")),
        Case("route-unknown", request(b"", None, method="GET", path="/../../etc/passwd"), frozenset({404}), ("not found",)),
        Case("route-unknown-method", request(b"", None, method="BREW"), frozenset({400, 405, 501}), ("method", "not allowed", "implemented")),
        Case("route-huge-url", request(b"", None, method="GET", path="/" + "a" * 60_000), frozenset({400, 404, 414, 431}),
             ("not found", "too", "large", "long", "request")),
        Case("route-huge-header", request(body, mp, headers={"x-junk": "j" * 300_000}), frozenset({400, 413, 431}),
             ("header", "large", "too", "request")),
        Case("route-bad-request-line", b"GARBAGE\r\n\r\n", frozenset({400}), ("bad request", "request")),
        # Waitress reads an HTTP/0.9 line as GET / (the root answer is a correct one).
        Case("route-http-0.9", b"GET /\r\n\r\n", frozenset({400}), ("bad request", "request"), either=True),
    ]
    return out

