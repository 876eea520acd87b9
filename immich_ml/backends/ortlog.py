"""ONNX Runtime's own log messages, routed into Python logging and captured per thread.

ORT drops an execution provider that fails to register (CUDA without its libraries, OpenVINO
asked for a GPU it cannot see) and says why only in its own log. Capturing those messages on the
thread that builds the session lets ``ort.py`` put the real reason into the WARNING and into
``Placement.fallback_reason``.

Newer ORT builds (1.32 CPU/GPU wheels) have ``onnxruntime.set_default_logger_callback``. Older
ones (onnxruntime-openvino 1.24) only write to file descriptor 2; there the capture redirects
fd 2 into a temporary file for the duration of the block and writes everything back to stderr
afterwards, so nothing is lost (other threads' stderr output is only delayed). That redirection
is process-wide, so such captures are serialised by a lock.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger("immich_ml.backends.onnxruntime")

# ORT severities: 0 verbose, 1 info, 2 warning, 3 error, 4 fatal.
_LEVELS = {0: logging.DEBUG, 1: logging.DEBUG, 2: logging.WARNING, 3: logging.ERROR, 4: logging.CRITICAL}

_local = threading.local()
_install_lock = threading.Lock()
_installed: bool | None = None
_fd_lock = threading.Lock()
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _callback(severity: int, category: str, logid: str, code_location: str, message: str) -> None:
    captured: list[str] | None = getattr(_local, "captured", None)
    if captured is not None and severity >= 2:
        captured.append(message.strip())
    log.log(_LEVELS.get(severity, logging.WARNING), "%s (%s)", message.strip(), code_location)


def install() -> bool:
    """Install the routing callback once per process; ``False`` when this ORT build lacks it."""
    global _installed
    with _install_lock:
        if _installed is None:
            import onnxruntime as ort

            setter = getattr(ort, "set_default_logger_callback", None)
            if setter is None:
                _installed = False
            else:
                setter(_callback, 2)
                _installed = True
        return _installed


@contextmanager
def capture() -> Iterator[list[str]]:
    """Collect ORT warnings/errors emitted on this thread inside the block (may stay empty)."""
    if not install():
        with _capture_fd2() as written:
            yield written
        return
    previous: list[str] | None = getattr(_local, "captured", None)
    messages: list[str] = []
    _local.captured = messages
    try:
        yield messages
    finally:
        _local.captured = previous


@contextmanager
def _capture_fd2() -> Iterator[list[str]]:
    """Fallback for ORT builds without a logger callback: ORT's lines written to fd 2."""
    messages: list[str] = []
    with _fd_lock, tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield messages
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode("utf-8", errors="replace")
            if text:
                sys.stderr.write(text)
                sys.stderr.flush()
            messages.extend(_ort_lines(text))


def _ort_lines(text: str) -> list[str]:
    """ORT's ``[E:onnxruntime:...]`` / ``[W:...]`` lines, without colour codes and log prefixes."""
    found = []
    for raw in text.splitlines():
        line = _ANSI.sub("", raw).strip()
        if ":onnxruntime:" not in line or not ("[E:" in line or "[W:" in line):
            continue
        message = line.split("] ", 1)[-1].strip()
        # Provider errors carry a C++ signature before the readable part: keep the readable part.
        if "[ERROR] " in message:
            message = message.rsplit("[ERROR] ", 1)[-1].strip()
        found.append(message)
    return found
