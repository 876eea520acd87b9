"""Where every model replica's health report lands, so the ingress can show all of them.

Serve routes a request to *one* replica, so ``/health`` cannot ask each replica itself. Instead
every replica pushes a report (node, device, provider per model, fallback reasons, counters) to
one small named actor, :class:`HealthBoard`, every :data:`REPORT_INTERVAL_S`; the ingress reads
the board. A report older than :data:`STALE_AFTER_S` (its replica died or was drained) is
dropped, so a replaced replica disappears from ``/health`` within seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import ray

log = logging.getLogger(__name__)

BOARD_NAME = "immich_ml_health"
BOARD_NAMESPACE = "immich_ml"
REPORT_INTERVAL_S = 1.0
STALE_AFTER_S = 4.0


class HealthBoard:
    """The latest report of every live replica, by replica id (a Ray actor, see :func:`board`)."""

    def __init__(self) -> None:
        self._reports: dict[str, tuple[float, dict[str, Any]]] = {}

    def report(self, replica: str, body: dict[str, Any]) -> None:
        self._reports[replica] = (time.monotonic(), body)

    def forget(self, replica: str) -> None:
        self._reports.pop(replica, None)

    def snapshot(self) -> list[dict[str, Any]]:
        """Live reports, oldest replica first; each gets ``report_age_s``."""
        now = time.monotonic()
        live = []
        for replica, (received, body) in list(self._reports.items()):
            age = now - received
            if age > STALE_AFTER_S:
                del self._reports[replica]
                continue
            live.append({**body, "report_age_s": round(age, 2)})
        return sorted(live, key=lambda r: (str(r.get("deployment")), float(r.get("started_at", 0))))


def board() -> Any:
    """The cluster's board actor (created by whoever asks first; it needs no CPU)."""
    actor = ray.remote(num_cpus=0, max_restarts=-1)(HealthBoard)
    return actor.options(
        name=BOARD_NAME, namespace=BOARD_NAMESPACE, get_if_exists=True, lifetime="detached"
    ).remote()


class Reporter:
    """A daemon thread that sends ``make_report()`` to the board until :meth:`stop`."""

    def __init__(self, replica: str, make_report: Callable[[], dict[str, Any]]) -> None:
        self._replica = replica
        self._make_report = make_report
        self._stopping = threading.Event()
        self._board = board()
        self._thread = threading.Thread(target=self._run, name="health-report", daemon=True)

    def start(self) -> None:
        self._send()
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        try:
            self._board.forget.remote(self._replica)
        except Exception:  # noqa: BLE001 - the cluster may already be going away
            pass

    def _send(self) -> None:
        try:
            self._board.report.remote(self._replica, self._make_report())
        except Exception:  # noqa: BLE001 - a missed report only makes this replica look stale
            log.warning("health report of %s failed", self._replica, exc_info=True)

    def _run(self) -> None:
        while not self._stopping.wait(REPORT_INTERVAL_S):
            self._send()
