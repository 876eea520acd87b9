"""The copy-free multipart reader against Werkzeug's parser on the same bytes."""

from __future__ import annotations

import io
import random

import pytest
from immich_client import undici_boundary, undici_multipart
from werkzeug.formparser import parse_form_data

from immich_ml.server import multipart

ALPHABET = [b"a", b"\r", b"\n", b"-", b"\r\n", b"--", b"\x00", b"\xff", "é".encode(), b'"']


def werkzeug_fields(body: bytes, content_type: str) -> dict[str, tuple[bytes, str | None]]:
    environ = {
        "REQUEST_METHOD": "POST", "CONTENT_TYPE": content_type, "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    _, form, files = parse_form_data(environ)
    out: dict[str, tuple[bytes, str | None]] = {}
    for name in form:
        out[name] = (form[name].encode(), None)
    for name in files:
        out[name] = (files[name].read(), files[name].filename)
    return out


def ours(body: bytes, content_type: str) -> dict[str, tuple[bytes, str | None]] | None:
    boundary = multipart.boundary_of(content_type)
    assert boundary is not None
    fields = multipart.parse(body, boundary)
    if fields is None:
        return None
    return {name: (bytes(part.data), part.filename) for name, part in fields.items()}


def random_value(rng: random.Random, boundary: str) -> bytes:
    pieces = [rng.choice(ALPHABET) for _ in range(rng.randrange(0, 60))]
    if rng.random() < 0.3:
        # Almost the boundary: must not end the part.
        pieces.insert(rng.randrange(len(pieces) + 1), b"\r\n--" + boundary.encode()[:-1])
    return b"".join(pieces)


@pytest.mark.parametrize("seed", range(200))
def test_random_immich_style_bodies_parse_like_werkzeug(seed: int) -> None:
    rng = random.Random(seed)
    boundary = undici_boundary(rng)
    image = random_value(rng, boundary) * rng.randrange(1, 50)
    text = random_value(rng, boundary).decode("utf-8", "replace").replace("\r", "").replace("\n", "")
    fields: dict[str, str | bytes] = {"entries": '{"clip":{"visual":{"modelName":"x"}}}'}
    if rng.random() < 0.5:
        fields["text"] = text
    if rng.random() < 0.7:
        fields["image"] = image
    content_type = f"multipart/form-data; boundary={boundary}"
    body = undici_multipart(fields, boundary)
    got = ours(body, content_type)
    assert got is not None
    assert got == werkzeug_fields(body, content_type)
    if "image" in fields:
        assert got["image"] == (image, "blob")


def test_curl_and_requests_layouts() -> None:
    boundary = "------------------------d74496d66958873e"
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"entries\"\r\n\r\n"
        '{"clip":{"textual":{"modelName":"x"}}}\r\n'
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a b.jpg\"\r\n"
        "Content-Type: image/jpeg\r\n\r\nJPEGDATA\r\n"
        f"--{boundary}--\r\n"
    ).encode()
    content_type = f"multipart/form-data; boundary={boundary}"
    assert ours(body, content_type) == werkzeug_fields(body, content_type)
    fields = multipart.parse(body, boundary)
    assert fields is not None and fields["image"].content_type == "image/jpeg"
    quoted = f'multipart/form-data; boundary="{boundary}"'
    assert multipart.boundary_of(quoted) == boundary


def test_preamble_and_missing_trailing_crlf_are_accepted() -> None:
    body = b"preamble text\r\n--XyZ\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\ndog\r\n--XyZ--"
    assert ours(body, "multipart/form-data; boundary=XyZ") == {"text": (b"dog", None)}


@pytest.mark.parametrize(
    "body",
    [
        b"--XyZ\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\ndog",  # no closing delimiter
        b"--XyZ\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\ndog\r\n--XyZ\r\n",  # truncated
        b"--XyZ\r\nContent-Disposition: form-data; name=\"t\"\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nZG9n\r\n--XyZ--",
        b"--XyZ\r\nContent-Disposition: attachment; name=\"t\"\r\n\r\ndog\r\n--XyZ--",
        b"--XyZ\r\nno colon here\r\n\r\ndog\r\n--XyZ--",
        b"--XyZ\nContent-Disposition: form-data; name=\"t\"\n\ndog\n--XyZ--",  # bare LF
        b"garbage--XyZ\r\nContent-Disposition: form-data; name=\"t\"\r\n\r\ndog\r\n--XyZ--",
    ],
)
def test_anything_unusual_is_left_to_werkzeug(body: bytes) -> None:
    assert multipart.parse(body, "XyZ") is None


def test_first_of_repeated_names_wins_like_werkzeug_get() -> None:
    boundary = "b1"
    body = (
        b"--b1\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\nfirst\r\n"
        b"--b1\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\nsecond\r\n--b1--\r\n"
    )
    fields = multipart.parse(body, boundary)
    assert fields is not None and fields["text"].text() == "first"
    assert werkzeug_fields(body, "multipart/form-data; boundary=b1")["text"][0] == b"first"


def test_non_multipart_content_types_have_no_boundary() -> None:
    assert multipart.boundary_of("application/x-www-form-urlencoded") is None
    assert multipart.boundary_of("multipart/form-data") is None
    assert multipart.boundary_of(None) is None


def test_file_data_is_a_view_not_a_copy() -> None:
    body = undici_multipart({"entries": "{}", "image": b"\x01" * 1000}, "----formdata-undici-000000000001")
    fields = multipart.parse(body, "----formdata-undici-000000000001")
    assert fields is not None
    view = fields["image"].data
    assert isinstance(view, memoryview) and view.obj is body


@pytest.mark.parametrize("content_type", [
    "multipart/form-data; boundary=----formdata-undici-012345678901",
    "multipart/form-data; boundary=------------------------d74496d66958873e",
    'multipart/form-data; boundary="a b:c?d=e"',
    "Multipart/Form-Data;boundary=abc'+_-.",
    "multipart/form-data; boundary=abc; charset=utf-8",
    'multipart/form-data; boundary="with \\"escape\\""',
    "multipart/form-data; boundary=" + "x" * 71,
    "multipart/form-data; boundary=a=b",
])
def test_boundary_fast_path_agrees_with_werkzeug(content_type: str) -> None:
    from werkzeug.http import parse_options_header

    mimetype, options = parse_options_header(content_type)
    expected = options.get("boundary") if mimetype == "multipart/form-data" else None
    assert multipart.boundary_of(content_type) == (expected if expected and len(expected) <= 200 else None)


@pytest.mark.parametrize("value", [
    'form-data; name="entries"',
    'form-data; name="image"; filename="image.jpg"',
    ' form-data;name="text"',
    'form-data; name="a;b"; filename="c d.png"',
    'form-data; name="image"; filename="%41.jpg"',
    'form-data; name="image"; filename*=UTF-8\'\'%C3%A9.jpg',
    'form-data; name="x\\"y"',
])
def test_disposition_fast_path_agrees_with_werkzeug(value: str) -> None:
    from werkzeug.http import parse_options_header

    _, options = parse_options_header(value)
    parsed = multipart._headers(f"Content-Disposition: {value}".encode())
    assert parsed is not None
    assert parsed[:2] == (options["name"], options.get("filename"))
