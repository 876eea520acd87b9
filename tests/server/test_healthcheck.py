"""The container HEALTHCHECK command against a real socket: a pong, a wrong answer, nobody there."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator

import pytest

from immich_ml.config import load_settings
from immich_ml.server import healthcheck


class _Handler(http.server.BaseHTTPRequestHandler):
    answer = b"pong"

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = self.answer if self.path == "/ping" else b"not found"
        self.send_response(200 if self.path == "/ping" else 404)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def server() -> Iterator[http.server.HTTPServer]:
    httpd = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    _Handler.answer = b"pong"


def test_ping_url_uses_loopback_for_wildcards() -> None:
    assert healthcheck.ping_url(load_settings({})) == "http://127.0.0.1:3003/ping"
    assert healthcheck.ping_url(load_settings({"IMMICH_PORT": "4000", "IMMICH_HOST": "0.0.0.0"})) == "http://127.0.0.1:4000/ping"
    assert healthcheck.ping_url(load_settings({"IMMICH_HOST": "::1"})) == "http://[::1]:3003/ping"


def test_pong_is_healthy(server: http.server.HTTPServer) -> None:
    assert healthcheck.check(f"http://127.0.0.1:{server.server_port}/ping") is None


def test_other_answers_and_no_listener_are_unhealthy(server: http.server.HTTPServer) -> None:
    _Handler.answer = b"oops"
    problem = healthcheck.check(f"http://127.0.0.1:{server.server_port}/ping")
    assert problem is not None and "HTTP 200" in problem
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    problem = healthcheck.check(f"http://127.0.0.1:{free_port}/ping", timeout=1.0)
    assert problem is not None and "refused" in problem.lower()
