"""The multipart body the Immich server sends to ``/predict``, rebuilt byte for byte.

Immich's ``machine-learning.repository.ts`` posts a ``FormData`` with ``fetch``; Node 20's undici
serializes it with a ``----formdata-undici-0`` + 11 digits boundary, string parts without a
Content-Type, the image Blob as ``filename="blob"`` with ``Content-Type: application/octet-stream``,
CRLF everywhere and a closing ``--boundary--\\r\\n`` (tests/server/test_immich_client.py checks it
against a real ``node``). Used by the benchmarks and the server tests.
"""

from __future__ import annotations

import random
from collections.abc import Mapping


def undici_boundary(rng: random.Random | None = None) -> str:
    digits = str((rng or random.Random()).randrange(10**11)).rjust(11, "0")
    return f"----formdata-undici-0{digits}"


def undici_multipart(fields: Mapping[str, str | bytes], boundary: str) -> bytes:
    """FormData body: ``str`` values as string parts, ``bytes`` values as a Blob (``blob``)."""
    out = bytearray()
    for name, value in fields.items():
        out += f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"".encode()
        if isinstance(value, bytes):
            out += b'; filename="blob"\r\nContent-Type: application/octet-stream\r\n\r\n' + value + b"\r\n"
        else:
            text = value.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")
            out += b"\r\n\r\n" + text.encode() + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out)
