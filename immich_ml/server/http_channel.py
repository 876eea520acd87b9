"""Waitress's own error answers, made readable: JSON ``{"detail": ...}`` bodies, and a 413 the
client can actually read.

Waitress refuses some requests before the application sees them: a ``Content-Length`` over
``max_request_body_size`` (set to ``MACHINE_LEARNING_MAX_REQUEST_MB``, so an oversized upload is
refused from its headers, before its body is read), malformed request lines or headers, headers
that are too large. Out of the box it answers those in plain text and closes the socket at once;
with the client still sending its body, the kernel answers the unread data with a reset and most
clients report "connection reset" instead of the 413. Here the answer has the service's JSON
shape and names the setting, no ``100 Continue`` is sent for a request already refused, and the
connection is closed the way HTTP servers close after an early answer (lingering close): the
write side is shut, whatever the client still sends is read and dropped for a few seconds, then
the socket is closed.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import orjson
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, MultiSocketServer
from waitress.task import ErrorTask
from waitress.utilities import RequestEntityTooLarge

# At most this many refused connections drain at once (one short-lived thread each); beyond
# that a connection is closed at once, as waitress would.
_MAX_LINGERING = 16
LINGER_S = 5.0
_lingering = threading.BoundedSemaphore(_MAX_LINGERING)


def error_detail(error: Any, content_length: int | None, limit_bytes: int) -> str:
    """The ``detail`` text for a request waitress refused."""
    if isinstance(error, RequestEntityTooLarge):
        limit_mb = limit_bytes // 2**20
        if content_length is not None and content_length > limit_bytes:
            return (
                f"Request body is {content_length / 2**20:.1f} MiB, over the limit of {limit_mb} MiB "
                "(MACHINE_LEARNING_MAX_REQUEST_MB)."
            )
        return f"Request body exceeds the limit of {limit_mb} MiB (MACHINE_LEARNING_MAX_REQUEST_MB)."
    return f"{error.reason}: {error.body}."


class JsonErrorTask(ErrorTask):  # type: ignore[misc]  # waitress ships no types
    """Waitress's error answer with the service's JSON body."""

    def execute(self) -> None:
        error = self.request.error
        limit = int(self.channel.server.adj.max_request_body_size) - 1
        detail = error_detail(error, getattr(self.request, "content_length", None), limit)
        body = orjson.dumps({"detail": detail})
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)
        self.channel.linger = True


class JsonErrorChannel(HTTPChannel):  # type: ignore[misc]  # waitress ships no types
    """An HTTP channel whose refusals are JSON and close with a lingering read."""

    error_task_class = JsonErrorTask
    linger = False

    def send_continue(self) -> None:
        # A refused request must not invite its body.
        if self.request is not None and self.request.error is not None:
            self.request.expect_continue = False
            return
        super().send_continue()

    def handle_close(self) -> None:
        if self.linger and self.socket is not None:
            self.linger = False
            try:
                _drain_later(self.socket.dup())
            except OSError:
                pass
        super().handle_close()


def _drain_later(sock: socket.socket) -> None:
    """Shut the write side of a duplicate of the socket and read it dry on a short-lived thread;
    the channel's own descriptor closes normally meanwhile."""
    if not _lingering.acquire(blocking=False):
        sock.close()
        return

    def drain() -> None:
        try:
            sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + LINGER_S
            while (remaining := deadline - time.monotonic()) > 0:
                sock.settimeout(remaining)
                if not sock.recv(256 * 1024):
                    break
        except OSError:
            pass
        finally:
            sock.close()
            _lingering.release()

    threading.Thread(target=drain, name="http-linger", daemon=True).start()


def use_json_errors(server: BaseWSGIServer | MultiSocketServer) -> None:
    """Make every listener of ``server`` answer its own refusals with :class:`JsonErrorChannel`."""
    listeners = [server] if isinstance(server, BaseWSGIServer) else list(server.map.values())
    for listener in listeners:
        if isinstance(listener, BaseWSGIServer):
            listener.channel_class = JsonErrorChannel
