"""A strict, copy-free reader for the ``multipart/form-data`` bodies Immich sends.

Werkzeug's general parser copies an uploaded file several times on its way through (chunks,
buffers, spooling): about 1 ms of CPU for a 0.8 MB photo. Immich's server (Node's undici), curl
and Python's requests all write the plain RFC 7578 layout, which this module reads with
``bytes.find`` over the body as received and returns the file as a ``memoryview`` into it, so
the image is never copied before it is written to the worker's pipe.

Anything this reader does not fully understand (no closing delimiter, missing CRLFs, a
``Content-Transfer-Encoding`` or other unexpected part header ...) makes it return ``None``, and the caller lets
Werkzeug parse the same bytes instead. It never guesses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from werkzeug.http import parse_options_header

# The exact header values Node's FormData, curl and requests write. Anything else (RFC 2231
# ``filename*``, escapes, extra parameters) goes through Werkzeug's general header parser, which
# costs ~25 µs per call, three calls per request (benchmarks/README.md, "Search text").
_SIMPLE_CONTENT_TYPE = re.compile(
    r'multipart/form-data;[ \t]*boundary=(?:"([0-9A-Za-z\'()+_,\-./:=?]{1,70})"|([0-9A-Za-z\'+_\-.]{1,70}))[ \t]*')
_SIMPLE_DISPOSITION = re.compile(r'[ \t]*form-data;[ \t]*name="([^"\\\r\n%]*)"(?:;[ \t]*filename="([^"\\\r\n%]*)")?[ \t]*')

_CRLF = b"\r\n"
_HEADER_END = b"\r\n\r\n"


@dataclass(frozen=True)
class Part:
    """One form field: ``data`` is a view into the request body (no copy)."""

    name: str
    filename: str | None
    content_type: str | None
    data: memoryview

    def text(self) -> str:
        """The value of a non-file field (UTF-8, undecodable bytes replaced, like Werkzeug)."""
        return str(self.data, "utf-8", "replace")


def boundary_of(content_type: str | None) -> str | None:
    """The boundary of a ``multipart/form-data`` Content-Type header, else ``None``."""
    if not content_type:
        return None
    simple = _SIMPLE_CONTENT_TYPE.fullmatch(content_type)
    if simple is not None:
        return simple.group(1) or simple.group(2)
    mimetype, options = parse_options_header(content_type)
    if mimetype != "multipart/form-data":
        return None
    boundary = options.get("boundary")
    return boundary if boundary and len(boundary) <= 200 else None


def parse(body: bytes, boundary: str) -> dict[str, Part] | None:
    """Fields of ``body`` by name (the first of a repeated name wins), or ``None`` to fall back."""
    delimiter = b"--" + boundary.encode("latin-1")
    separator = _CRLF + delimiter
    view = memoryview(body)
    # The first delimiter may follow a preamble; later ones must follow a CRLF.
    start = body.find(delimiter)
    if start < 0 or (start > 0 and body[start - 2 : start] != _CRLF):
        return None
    position = start + len(delimiter)
    fields: dict[str, Part] = {}
    while True:
        if body.startswith(b"--", position):
            return fields
        if not body.startswith(_CRLF, position):
            return None
        header_start = position + 2
        header_end = body.find(_HEADER_END, header_start)
        if header_end < 0:
            return None
        content_start = header_end + len(_HEADER_END)
        content_end = body.find(separator, content_start)
        if content_end < 0:
            return None
        headers = _headers(body[header_start:header_end])
        if headers is None:
            return None
        name, filename, content_type = headers
        if name not in fields:
            fields[name] = Part(name, filename, content_type, view[content_start:content_end])
        position = content_end + len(separator)


def _headers(block: bytes) -> tuple[str, str | None, str | None] | None:
    """``(name, filename, content_type)`` from a part's header block, or ``None`` if unusual."""
    name: str | None = None
    filename: str | None = None
    content_type: str | None = None
    try:
        lines = block.decode("utf-8").split("\r\n")
    except UnicodeDecodeError:
        return None
    for line in lines:
        key, colon, value = line.partition(":")
        if not colon:
            return None
        key = key.strip().lower()
        if key == "content-disposition":
            simple = _SIMPLE_DISPOSITION.fullmatch(value)
            if simple is not None:
                name, filename = simple.group(1), simple.group(2)
                continue
            disposition, options = parse_options_header(value)
            if disposition != "form-data" or "name" not in options:
                return None
            name, filename = options["name"], options.get("filename")
        elif key == "content-type":
            content_type = value.strip()
        else:
            # Content-Transfer-Encoding and friends: let the general parser decide.
            return None
    if name is None:
        return None
    return name, filename, content_type
