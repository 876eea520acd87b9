"""ONNX Runtime's own log messages, routed into Python logging and captured per thread.

ORT drops an execution provider that fails to register (CUDA without its libraries, OpenVINO
asked for a GPU it cannot see) and says why only in its own log. Capturing those messages on the
thread that builds the session lets ``ort.py`` put the real reason into the WARNING and into
``Placement.fallback_reason``. ``onnxruntime.set_default_logger_callback`` exists from ORT 1.24
on only in some builds; without it the messages stay on ORT's stderr and the reason is inferred.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger("immich_ml.backends.onnxruntime")

# ORT severities: 0 verbose, 1 info, 2 warning, 3 error, 4 fatal.
_LEVELS = {0: logging.DEBUG, 1: logging.DEBUG, 2: logging.WARNING, 3: logging.ERROR, 4: logging.CRITICAL}

_local = threading.local()
_install_lock = threading.Lock()
_installed: bool | None = None


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
    install()
    previous: list[str] | None = getattr(_local, "captured", None)
    messages: list[str] = []
    _local.captured = messages
    try:
        yield messages
    finally:
        _local.captured = previous
