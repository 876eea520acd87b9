"""The per-device process pool: its lifecycle, over three parts with one job each.

``WorkerPool`` keeps one worker process per slot (see :mod:`immich_ml.workers.routing`), started
with ``multiprocessing``'s *spawn* method (CUDA and other runtimes do not survive ``fork``).
  * :mod:`~immich_ml.workers.slot_table`: the slots and the one lock guarding them;
  * :mod:`~immich_ml.workers.dispatch`: which ready slot serves a request, back-pressure
    (:class:`~immich_ml.errors.Overloaded`, HTTP 503 with ``Retry-After``) and status queries;
  * :mod:`~immich_ml.workers.supervisor`: one thread that notices a dead worker at once, fails its
    in-flight requests with :class:`~immich_ml.errors.WorkerCrashed` naming the signal, refills
    the slot after a back-off and enforces ``WORKER_TIMEOUT``.
This module starts, waits for and stops them.

It runs in the service process: it imports no model, pipeline or runtime code.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from immich_ml.config import Settings
from immich_ml.errors import NotReady
from immich_ml.schemas import Entry
from immich_ml.workers.dispatch import Dispatcher
from immich_ml.workers.protocol import PIPELINE_FACTORY, Prediction, Stop
from immich_ml.workers.slot_table import SlotTable, send
from immich_ml.workers.supervisor import Supervisor

__all__ = ["Prediction", "WorkerPool"]


class WorkerPool:
    """Worker processes for every device slot; thread-safe (see module docstring).

    ``pipeline_factory`` is the dotted ``module:Name`` each worker calls as
    ``factory(settings, target)`` to build its pipeline; tests pass a double.
    ``ready_wait_s`` bounds how long a request waits for a starting or restarting worker
    before it gets :class:`~immich_ml.errors.NotReady` (default: the start-up timeout).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        pipeline_factory: str = PIPELINE_FACTORY,
        ready_wait_s: float | None = None,
    ) -> None:
        self._table = SlotTable(settings, pipeline_factory)
        wait_s = float(settings.worker_start_timeout_s) if ready_wait_s is None else ready_wait_s
        self._dispatcher = Dispatcher(self._table, wait_s)
        self._supervisor = Supervisor(self._table)

    def start(self) -> None:
        """Spawn every worker and the supervisor; returns at once (see :meth:`wait_ready`)."""
        table = self._table
        with table.lock:
            for slot in table.slots:
                slot.spawn(table.context)
        self._supervisor.start()

    def wait_ready(self, timeout: float) -> bool:
        """Block until every slot is ready (True) or ``timeout`` seconds pass (False)."""
        deadline = time.monotonic() + timeout
        with self._table.changed:
            while not self._table.all_ready():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._table.changed.wait(remaining)
        return True

    def is_ready(self) -> bool:
        with self._table.lock:
            return self._table.all_ready()

    def close(self, timeout: float = 10.0) -> None:
        """Stop accepting work, let workers finish what they hold, then stop them."""
        table = self._table
        with table.lock:
            if table.closing:
                return
            table.closing = True
            table.changed.notify_all()
            slots = list(table.slots)
        for slot in slots:
            send(slot, Stop())
        deadline = time.monotonic() + timeout
        with table.changed:
            while any(s.process is not None for s in table.slots):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._supervisor.is_alive():
                    break
                table.changed.wait(remaining)
            for slot in table.slots:
                slot.kill(NotReady("The service is shutting down."))
        if self._supervisor.is_alive():
            # The supervisor reaps the killed processes.
            with table.changed:
                end = time.monotonic() + 5.0
                while any(s.process is not None for s in table.slots) and time.monotonic() < end:
                    table.changed.wait(0.1)
        self._supervisor.stop()

    def predict(
        self,
        entries: Sequence[Entry],
        *,
        image: bytes | memoryview | None = None,
        text: str | None = None,
    ) -> Prediction:
        """Run ``entries`` on a worker; raises the worker's error or a pool error (503/504).

        ``image`` may be a view into the HTTP body: it is written to the worker's pipe as is.
        """
        return self._dispatcher.predict(entries, image, text)

    def health(self, timeout: float = 2.0) -> list[dict[str, Any]]:
        """Per slot: :meth:`Slot.snapshot` plus the worker's ``pipeline.status()`` as ``models``."""
        return self._dispatcher.health(timeout)

    def snapshot(self) -> list[dict[str, Any]]:
        """Per-slot counters and state without asking the workers (cheap, for metrics)."""
        with self._table.lock:
            return [slot.snapshot() for slot in self._table.slots]
