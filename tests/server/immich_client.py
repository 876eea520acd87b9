"""What the Immich server puts on the wire, rebuilt byte for byte, plus a subprocess service.

Immich's ``machine-learning.repository.ts`` sends ``fetch(url, {method: 'POST', body: formData})``
with ``entries = JSON.stringify(request)`` and the image as ``new Blob([bytes])``. Node 20's undici
serializes that FormData as below (checked against a real ``node`` in test_immich_client.py):
boundary ``----formdata-undici-0`` + 11 digits, string parts without a Content-Type, the Blob as
``filename="blob"`` with ``Content-Type: application/octet-stream``, CRLF everywhere, and a
closing ``--boundary--\\r\\n``; request headers lower-case in undici's order.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from immich_ml.bench.immich_wire import undici_boundary, undici_multipart

REPO = Path(__file__).resolve().parents[2]
WORKERS_TESTS = REPO / "tests" / "workers"


def undici_request(host: str, port: int, path: str, fields: Mapping[str, str | bytes], boundary: str) -> bytes:
    """The whole HTTP/1.1 request Node's fetch sends for ``fields``."""
    body = undici_multipart(fields, boundary)
    head = (
        f"POST {path} HTTP/1.1\r\n"
        f"host: {host}:{port}\r\n"
        "connection: keep-alive\r\n"
        f"content-type: multipart/form-data; boundary={boundary}\r\n"
        "accept: */*\r\n"
        "accept-language: *\r\n"
        "sec-fetch-mode: cors\r\n"
        "user-agent: node\r\n"
        "accept-encoding: gzip, deflate\r\n"
        f"content-length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode() + body


def send_raw(host: str, port: int, raw: bytes, timeout: float = 60.0) -> tuple[int, dict[str, str], bytes]:
    """Write ``raw`` on a fresh connection; read one response (Content-Length framed)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect((host, port))
        sock.sendall(raw)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    return status, headers, body


def free_port() -> int:
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(("::", 0))
        return int(sock.getsockname()[1])


class ServiceClient:
    """Speaks to an immich-ml (or Immich) service at host:port the way Immich's server does."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(self.url + path)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
        except urllib.error.HTTPError as error:
            return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()

    def json(self, path: str) -> Any:
        return orjson.loads(self.get(path)[2])

    def predict(self, fields: Mapping[str, str | bytes], timeout: float = 60.0) -> tuple[int, dict[str, str], bytes]:
        raw = undici_request(self.host, self.port, "/predict", fields, undici_boundary())
        return send_raw(self.host, self.port, raw, timeout)


class LiveService(ServiceClient):
    """``python -m immich_ml`` (or ``module``, or the entry point with a pipeline double) in a subprocess."""

    def __init__(
        self, env: Mapping[str, str], log_path: Path, *, factory: str | None = None, module: str = "immich_ml"
    ) -> None:
        super().__init__("127.0.0.1", free_port())
        self.log_path = log_path
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("MACHINE_LEARNING_", "IMMICH_"))}
        full_env.update({"IMMICH_PORT": str(self.port), "PYTHONUNBUFFERED": "1", **env})
        if factory is None:
            command = [sys.executable, "-m", module]
        else:
            full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(WORKERS_TESTS), full_env.get("PYTHONPATH")]))
            command = [
                sys.executable, "-c",
                f"import sys; from immich_ml.server.run import main; sys.exit(main(pipeline_factory={factory!r}))",
            ]
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(command, env=full_env, cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"service exited with {self.process.returncode}:\n{self.log()}")
            try:
                if self.get("/ready", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"service not ready after {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 15.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


def node_predict_prelude(port: int) -> str:
    """The start of a Node ES module whose ``predict(request, payload)`` sends a request exactly as
    Immich's server does (``fetch`` + ``FormData``; the image as a ``Blob``) and resolves to
    ``{ok, status, body}``."""
    return (
        "import { readFileSync } from 'node:fs';\n"
        f"const url = 'http://127.0.0.1:{port}';\n"
        "async function predict(request, payload) {\n"
        "  const fd = new FormData();\n"
        "  fd.append('entries', JSON.stringify(request));\n"
        "  if (payload instanceof Uint8Array) fd.append('image', new Blob([payload]));\n"
        "  else fd.append('text', payload);\n"
        "  const res = await fetch(new URL('/predict', url), { method: 'POST', body: fd });\n"
        "  return { ok: res.ok, status: res.status, body: await res.json() };\n"
        "}\n"
    )
