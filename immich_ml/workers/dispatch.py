"""Dispatch: which slot serves a request, the back-pressure limit, and the status queries.

A request goes to the least-loaded *ready* slot that serves its models; each slot accepts at most
``REQUEST_THREADS + MACHINE_LEARNING_QUEUE_DEPTH`` requests at a time, beyond that the caller gets
:class:`~immich_ml.errors.Overloaded` (HTTP 503 with ``Retry-After``), so memory never grows
without bound. While a slot starts or restarts, up to its capacity of callers wait for it (at
most ``ready_wait_s``); others get :class:`~immich_ml.errors.NotReady` at once.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from multiprocessing.connection import Connection
from typing import Any

from immich_ml.errors import NotReady, Overloaded, WorkerTimeout
from immich_ml.schemas import Entry
from immich_ml.workers import routing
from immich_ml.workers.protocol import Prediction, PredictJob, Role, StatusQuery, StatusReply
from immich_ml.workers.slot import Pending, Slot
from immich_ml.workers.slot_table import SlotTable, send

# Extra seconds a caller waits beyond WORKER_TIMEOUT before giving up on its own (the
# supervisor normally answers first by killing the worker).
_CALLER_GRACE_S = 30.0


class Dispatcher:
    """Sends requests and status queries to the table's slots; thread-safe."""

    def __init__(self, table: SlotTable, ready_wait_s: float) -> None:
        self._table = table
        self._ready_wait_s = ready_wait_s
        self._job_ids = itertools.count(1)
        self._rotation = itertools.count()
        self._waiters = 0  # callers waiting for a starting slot (guarded by the table's lock)

    def predict(
        self, entries: Sequence[Entry], image: bytes | memoryview | None, text: str | None
    ) -> Prediction:
        """Run ``entries`` on a worker; raises the worker's error or a pool error (503/504)."""
        table = self._table
        timeout = table.settings.worker_timeout
        future: Future[Prediction] = Future()
        with table.changed:
            slot = self._choose(self._role(entries), routing.device_for(self._table.settings, entries))
            job_id = next(self._job_ids)
            # No deadline until the worker says a thread started it (protocol.Started):
            # WORKER_TIMEOUT measures run time, not time queued behind other requests.
            slot.pending[job_id] = Pending(future, math.inf)
            # The longest this caller can wait: queued behind a full slot, every run before
            # it hitting the timeout.
            rounds = -(-slot.capacity // slot.threads)
            # The pipe of the process the job was registered with: should that process die
            # first, the job fails with it and must not reach its replacement.
            connection = slot.jobs
        # Entries are frozen dataclasses; the image follows as one raw message (no pickle copy).
        send(slot, PredictJob(job_id, tuple(entries), text, image is not None), image, connection)
        try:
            return future.result(timeout=timeout * rounds + _CALLER_GRACE_S)
        except FutureTimeout:
            raise WorkerTimeout(f"{slot.name} did not answer within {timeout} s.") from None

    def health(self, timeout: float) -> list[dict[str, Any]]:
        """Per slot: :meth:`Slot.snapshot` plus the worker's ``pipeline.status()`` as ``models``."""
        asked: list[tuple[Slot, int, Future[StatusReply] | None, Connection | None, dict[str, Any]]] = []
        with self._table.lock:
            for slot in self._table.slots:
                job_id = next(self._job_ids)
                future: Future[StatusReply] | None = None
                if slot.state == "ready":
                    future = Future()
                    slot.queries[job_id] = Pending(future, time.monotonic() + timeout)
                asked.append((slot, job_id, future, slot.jobs, slot.snapshot()))
        for slot, job_id, future, connection, _ in asked:
            if future is not None:
                send(slot, StatusQuery(job_id), connection=connection)
        report = []
        for slot, _, future, _, info in asked:
            info["models"] = slot.models
            if future is not None:
                try:
                    reply = future.result(timeout + 1.0)
                    info["models"], info["worker"] = reply.models, dict(reply.stats)
                except Exception as error:
                    info["status_error"] = str(error) or type(error).__name__
            report.append(info)
        return report

    # --- choosing a slot (caller holds the table's lock) -------------------------------------

    def _role(self, entries: Sequence[Entry]) -> Role:
        table = self._table
        return routing.role_for(table.settings, entries) if table.cpu_slots else "device"

    def _choose(self, role: Role, device_id: str | None = None) -> Slot:
        """The least-loaded ready slot of ``role`` (on ``device_id`` when the model is pinned there)."""
        table = self._table
        deadline = time.monotonic() + self._ready_wait_s
        waiting = False
        try:
            while True:
                if table.closing:
                    raise NotReady("The service is shutting down.")
                group = [
                    s for s in table.slots
                    if s.plan.role == role and (device_id is None or role == "cpu" or s.plan.device_id == device_id)
                ]
                ready = [s for s in group if s.state == "ready"]
                if ready:
                    return self._least_loaded(ready)
                coming = [
                    s for s in group if s.state in ("starting", "restarting") and not s.start_failures
                ]
                capacity = sum(s.capacity for s in group)
                remaining = deadline - time.monotonic()
                if not coming or remaining <= 0 or (not waiting and self._waiters >= capacity):
                    raise NotReady(_not_ready_message(group))
                if not waiting:
                    waiting = True
                    self._waiters += 1
                table.changed.wait(remaining)
        finally:
            if waiting:
                self._waiters -= 1

    def _least_loaded(self, ready: list[Slot]) -> Slot:
        # Rotating the starting point spreads ties (idle workers) round-robin.
        start = next(self._rotation) % len(ready)
        ordered = ready[start:] + ready[:start]
        best = min(ordered, key=lambda s: len(s.pending) / s.capacity)
        if len(best.pending) >= best.capacity:
            queued = sum(len(s.pending) for s in ready)
            raise Overloaded(
                f"All {len(ready)} worker(s) for these models are busy ({queued} requests in "
                f"flight, MACHINE_LEARNING_QUEUE_DEPTH={self._table.settings.queue_depth}); "
                "retry shortly."
            )
        return best


def _not_ready_message(group: list[Slot]) -> str:
    if not group:
        return "No worker serves these models."
    failed = [s for s in group if s.start_failures]
    if failed and len(failed) == len(group):
        reasons = "; ".join(f"{s.name}: {s.last_error}" for s in failed)
        return f"No worker for these models could start ({reasons}). See /health."
    return "The workers for these models are starting; retry shortly."
