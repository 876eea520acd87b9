"""One log format for the service and its worker processes.

Lines look like Immich's: ``[01/14/26 12:00:00] [INFO] [immich_ml.backends.ort] message``.
Worker processes write to the stderr they inherit from the service, so their lines (for example
``Available ORT providers ...`` from the ORT backend) appear in the service's own log, tagged
with the worker they came from.
"""

from __future__ import annotations

import logging
import sys

DATE_FORMAT = "%m/%d/%y %H:%M:%S"


def log_format(tag: str | None = None) -> str:
    """The line format; ``tag`` (e.g. ``worker 0 cpu:0``) is added after the logger name."""
    where = f" [{tag}]" if tag else ""
    return f"[%(asctime)s] [%(levelname)s] [%(name)s]{where} %(message)s"


def configure_logging(level: int, *, tag: str | None = None) -> None:
    """Send every logger's records at ``level`` and above to stderr in the service's format.

    Replaces handlers installed earlier in this process so that a second call (tests, restarts)
    does not print lines twice.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(log_format(tag), DATE_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # waitress reports every queued request at WARNING under load; INFO shows the bind address.
    logging.getLogger("waitress").setLevel(max(level, logging.INFO))
