"""The HTTP side of the benchmark: start ``python -m immich_ml`` on a loopback port, and a lean client.

The server runs as a child process with the user's environment plus the benchmark's settings
(passed as ``MACHINE_LEARNING_*`` variables through ``env(1)``, so the child reads them through
``config.py`` like any deployment). The client keeps one HTTP/1.1 connection per thread and sends
pre-encoded multipart bodies, so the benchmark spends as little CPU as possible on its own side of
the socket: on a 2-core machine every cycle the client burns is taken from the server.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from immich_ml.errors import ImmichMLError


class ServiceError(ImmichMLError):
    """The service under test did not start or answered with an error."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def multipart(entries: str, payload: bytes | str) -> tuple[bytes, str]:
    """``(body, content type)`` of a ``/predict`` request as Immich's server sends it."""
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="entries"\r\n\r\n{entries}\r\n'.encode()]
    if isinstance(payload, bytes):
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="image.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n".encode()
        )
        parts.append(payload + b"\r\n")
    else:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="text"\r\n\r\n{payload}\r\n'.encode()
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class Client:
    """POSTs to ``<url>/predict`` with one keep-alive connection per calling thread.

    A raw HTTP/1.1 socket client: the request is one pre-assembled ``sendall`` and the response
    is read by its ``Content-Length`` (or chunked encoding). ``http.client`` parses response
    headers through the ``email`` package, which alone cost ~0.1 ms per request: on a 2-core
    machine that is taken from the server and would be counted as service overhead.
    """

    def __init__(self, url: str, timeout_s: float = 600.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ServiceError(f"Only http://host:port URLs are supported, got {url!r}.")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.timeout_s = timeout_s
        self._host_header = f"{self.host}:{self.port}" if ":" not in self.host else f"[{self.host}]:{self.port}"
        self._local = threading.local()
        self._lock = threading.Lock()
        # Every connection ever opened: load threads end, their keep-alive sockets must still be
        # closed, or the server waits for them when it shuts down.
        self._all: list[_Connection] = []

    def _connection(self) -> _Connection:
        conn: _Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _Connection(socket.create_connection((self.host, self.port), timeout=self.timeout_s))
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def request(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None) -> tuple[int, bytes]:
        """One request; reconnects once if the server closed the kept-alive connection."""
        status, data, _ = self.request_with_headers(method, path, body, content_type)
        return status, data

    def request_with_headers(self, method: str, path: str, body: bytes | None = None,
                             content_type: str | None = None) -> tuple[int, bytes, dict[str, str]]:
        """:meth:`request` plus the response headers (names lower-cased)."""
        head = [f"{method} {path} HTTP/1.1", f"Host: {self._host_header}"]
        if content_type:
            head.append(f"Content-Type: {content_type}")
        if body is not None or method == "POST":
            head.append(f"Content-Length: {len(body or b'')}")
        message = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (body or b"")
        for attempt in (0, 1):
            conn = self._connection()
            try:
                return conn.exchange(message)
            except (OSError, ServiceError):  # a closed keep-alive socket, or a dead server
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def predict(self, body: bytes, content_type: str) -> bytes:
        """The response body of a ``/predict`` request; raises :class:`ServiceError` unless 200."""
        return self.predict_timed(body, content_type)[0]

    def predict_timed(self, body: bytes, content_type: str) -> tuple[bytes, float | None]:
        """:meth:`predict` plus the worker's own milliseconds from ``Server-Timing: worker;dur=``."""
        status, data, headers = self.request_with_headers("POST", "/predict", body, content_type)
        if status != 200:
            raise ServiceError(f"/predict answered {status}: {data[:500].decode(errors='replace')}")
        return data, worker_ms(headers.get("server-timing", ""))

    def close(self) -> None:
        """Close the connections of every thread that used this client."""
        with self._lock:
            connections, self._all = self._all, []
        for conn in connections:
            conn.close()
        self._local = threading.local()


def worker_ms(server_timing: str) -> float | None:
    """The ``dur`` of the ``worker`` metric in a ``Server-Timing`` header value, else None."""
    for metric in server_timing.split(","):
        name, *params = (part.strip() for part in metric.split(";"))
        if name == "worker":
            for param in params:
                key, _, value = param.partition("=")
                if key.strip() == "dur":
                    try:
                        return float(value)
                    except ValueError:
                        return None
    return None


class _Connection:
    """One keep-alive socket: send a request, read one response."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._buffer = b""
        self._closed = False

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._sock.close()

    def _more(self) -> None:
        chunk = self._sock.recv(262144)
        if not chunk:
            raise ServiceError("the server closed the connection")
        self._buffer += chunk

    def _line(self) -> bytes:
        while (end := self._buffer.find(b"\r\n")) < 0:
            self._more()
        line, self._buffer = self._buffer[:end], self._buffer[end + 2 :]
        return line

    def _exactly(self, count: int) -> bytes:
        while len(self._buffer) < count:
            self._more()
        data, self._buffer = self._buffer[:count], self._buffer[count:]
        return data

    def exchange(self, message: bytes) -> tuple[int, bytes, dict[str, str]]:
        self._sock.sendall(message)
        while (end := self._buffer.find(b"\r\n\r\n")) < 0:
            self._more()
        head, self._buffer = self._buffer[:end].decode("latin-1"), self._buffer[end + 4 :]
        lines = head.split("\r\n")
        try:
            status = int(lines[0].split(" ", 2)[1])
        except (IndexError, ValueError):
            raise ServiceError(f"not an HTTP response: {lines[0][:100]!r}") from None
        headers = {}
        for line in lines[1:]:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        if "content-length" in headers:
            data = self._exactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self._line().split(b";")[0], 16):
                chunks.append(self._exactly(size))
                self._exactly(2)
            while self._line():  # trailers end with an empty line
                pass
            data = b"".join(chunks)
        else:  # the body runs to the end of the connection
            try:
                while True:
                    self._more()
            except ServiceError:
                pass
            data, self._buffer = self._buffer, b""
            self.close()
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, data, headers


class ServerProcess:
    """``python -m immich_ml`` on ``127.0.0.1:<free port>`` with ``overrides`` added to its environment.

    The server's output goes to ``log_path``. Use as a context manager, or call :meth:`start`
    and :meth:`stop`.
    """

    def __init__(self, overrides: Mapping[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._overrides = {**overrides, "IMMICH_HOST": "127.0.0.1", "IMMICH_PORT": str(self.port)}
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self, timeout_s: float = 300.0) -> None:
        """Start the server and wait until ``/ready`` answers 200 (every worker passed its self-test)."""
        env_tool = shutil.which("env")
        if env_tool is None:
            raise ServiceError("The env(1) tool is needed to start the server with extra settings.")
        assignments = [f"{k}={v}" for k, v in self._overrides.items()]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [env_tool, *assignments, sys.executable, "-m", "immich_ml"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        client = Client(self.url, timeout_s=5.0)
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    raise ServiceError(f"The server exited with status {self._process.returncode}:\n{self.log_tail()}")
                try:
                    status, _ = client.request("GET", "/ready")
                    if status == 200:
                        return
                except OSError:
                    pass
                time.sleep(0.2)
        finally:
            client.close()
        self.stop()
        raise ServiceError(f"The server was not ready within {timeout_s:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def cpu_seconds(self) -> float | None:
        """User + system CPU seconds of the server and its worker processes so far (Linux)."""
        if self._process is None:
            return None
        return process_tree_cpu_seconds(self._process.pid)

    def stop(self, timeout_s: float = 30.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        # SIGTERM again every 2 s: a signal that lands while waitress handles a connection
        # closing is swallowed by its channel error handler, and the server keeps running.
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(min(2.0, max(0.1, deadline - time.monotonic())))
                return
            except subprocess.TimeoutExpired:
                continue
        process.kill()
        process.wait()

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def process_tree_cpu_seconds(pid: int) -> float | None:
    """CPU seconds (user + system) of ``pid`` and its descendants, from ``/proc``; ``None`` elsewhere.

    ``pid`` may be the ``env`` wrapper, which replaced itself with Python (same pid).
    """
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = 0
    pending = [pid]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            stat = Path(f"/proc/{current}/stat").read_text()
        except OSError:
            if current == pid:
                return None
            continue
        fields = stat.rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                pending.extend(int(child) for child in task.read_text().split())
            except OSError:
                continue
    return total / ticks
