"""A stand-in for RapidOCR's model registry on 127.0.0.1: ``GET <base>/<det|rec>/<file>.onnx``, recorded."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeRegistry:
    PREFIX = "/models/RapidAI/RapidOCR/resolve/v3.8.0/onnx/PP-OCRv5"

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        self._server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{self.PREFIX}"

    @contextmanager
    def serve(self) -> Iterator[FakeRegistry]:
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                registry.requests.append(self.path)
                relative = self.path.removeprefix(registry.PREFIX + "/")
                data = registry.files.get(relative)
                if data is None:
                    self.send_error(404, "Not Found")
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        self._server = server
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join()
