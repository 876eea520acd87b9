"""A tiny stand-in for the Hugging Face Hub on 127.0.0.1, serving the API subset snapshot_download uses.

Endpoints: ``GET /api/models/<org>/<name>/revision/<rev>`` (repo info with ``sha`` and ``siblings``),
``GET /api/models/<org>/<name>/tree/<rev>[/<path>]`` (file listing) and ``HEAD``/``GET
/<org>/<name>/resolve/<rev>/<path>`` (file metadata and bytes). Every request is recorded so tests can
assert what was fetched and that a second load makes none.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, dict[str, bytes]] = {}
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def add_repo(self, repo_id: str, files: Mapping[str, bytes]) -> None:
        self.repos[repo_id] = dict(files)

    @property
    def endpoint(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def downloaded(self) -> list[str]:
        """Paths whose bytes were sent (GET on resolve), in request order."""
        with self._lock:
            return [p.split("/resolve/", 1)[1].split("/", 1)[1] for m, p in self.requests
                    if m == "GET" and "/resolve/" in p]

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()

    def _sha(self, repo_id: str) -> str:
        digest = hashlib.sha1()
        for path, data in sorted(self.repos[repo_id].items()):
            digest.update(path.encode() + b"\0" + data)
        return digest.hexdigest()

    @contextmanager
    def serve(self) -> Iterator[FakeHub]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                self._handle(body=False)

            def do_GET(self) -> None:
                self._handle(body=True)

            def _send(self, status: int, payload: bytes, headers: Mapping[str, str], body: bool) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if body:
                    self.wfile.write(payload)

            def _json(self, data: object, body: bool) -> None:
                self._send(200, json.dumps(data).encode(), {"Content-Type": "application/json"}, body)

            def _not_found(self, code: str, body: bool) -> None:
                self._send(404, b'{"error":"not found"}',
                           {"Content-Type": "application/json", "X-Error-Code": code}, body)

            def _handle(self, body: bool) -> None:
                path = unquote(urlsplit(self.path).path)
                with hub._lock:
                    hub.requests.append((self.command, path))
                parts = path.strip("/").split("/")
                if parts[:2] == ["api", "models"] and len(parts) >= 6:
                    repo_id, verb, rest = f"{parts[2]}/{parts[3]}", parts[4], parts[5:]
                    if repo_id not in hub.repos:
                        return self._not_found("RepoNotFound", body)
                    files = hub.repos[repo_id]
                    sha = hub._sha(repo_id)
                    if verb == "revision":
                        return self._json({"id": repo_id, "modelId": repo_id, "sha": sha, "private": False,
                                           "siblings": [{"rfilename": p} for p in sorted(files)]}, body)
                    if verb == "tree":
                        prefix = "/".join(rest[1:])
                        listing = [{"type": "file", "path": p, "size": len(d),
                                    "oid": hashlib.sha1(d).hexdigest()}
                                   for p, d in sorted(files.items()) if p.startswith(prefix)]
                        return self._json(listing, body)
                if len(parts) >= 5 and parts[2] == "resolve":
                    repo_id, file_path = f"{parts[0]}/{parts[1]}", "/".join(parts[4:])
                    if repo_id not in hub.repos:
                        return self._not_found("RepoNotFound", body)
                    data = hub.repos[repo_id].get(file_path)
                    if data is None:
                        return self._not_found("EntryNotFound", body)
                    etag = hashlib.sha1(data).hexdigest()
                    return self._send(200, data, {"ETag": f'"{etag}"', "X-Repo-Commit": hub._sha(repo_id),
                                                  "Content-Type": "application/octet-stream"}, body)
                return self._not_found("NotFound", body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join()
