"""The per-device process pool: spawn, dispatch, supervise, restart.

``WorkerPool`` keeps one worker process per slot (see :mod:`immich_ml.workers.routing`), started
with ``multiprocessing``'s *spawn* method (CUDA and other runtimes do not survive ``fork``).
A request goes to the least-loaded *ready* slot that serves its models; each slot accepts at
most ``REQUEST_THREADS + MACHINE_LEARNING_QUEUE_DEPTH`` requests at a time, beyond that the
caller gets :class:`~immich_ml.errors.Overloaded` (HTTP 503 with ``Retry-After``), so memory
never grows without bound.

One supervisor thread (:mod:`immich_ml.workers.supervisor`) notices a dead worker at once, fails
its in-flight requests with :class:`~immich_ml.errors.WorkerCrashed` naming the signal, and
refills the slot after a back-off; it also enforces ``WORKER_TIMEOUT``.

This module runs in the service process: it imports no model, pipeline or runtime code.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from multiprocessing.connection import Connection
from typing import Any

from immich_ml.config import Settings
from immich_ml.errors import NotReady, Overloaded, WorkerTimeout
from immich_ml.schemas import Entry
from immich_ml.workers import routing
from immich_ml.workers.protocol import (
    PIPELINE_FACTORY,
    Prediction,
    PredictJob,
    Role,
    StatusQuery,
    StatusReply,
    Stop,
)
from immich_ml.workers.slot import Pending, Slot
from immich_ml.workers.supervisor import Supervision

__all__ = ["Prediction", "WorkerPool"]

log = logging.getLogger(__name__)

# Extra seconds a caller waits beyond WORKER_TIMEOUT before giving up on its own (the
# supervisor normally answers first by killing the worker).
_CALLER_GRACE_S = 30.0


class WorkerPool(Supervision):
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
        self._settings = settings
        self._factory = pipeline_factory
        self._context = multiprocessing.get_context("spawn")
        self._ready_wait_s = (
            float(settings.worker_start_timeout_s) if ready_wait_s is None else ready_wait_s
        )
        self._cpu_placed = routing.cpu_placed(settings)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._slots = [self._new_slot(plan) for plan in routing.device_slots(settings)]
        self._cpu_slots: bool | None = routing.needs_cpu_slots(settings, None)
        if self._cpu_slots:
            self._add_cpu_slots()
        self._job_ids = itertools.count(1)
        self._rotation = itertools.count()
        self._waiters = 0
        self._closing = False
        self._stopped = False
        self._wake_read, self._wake_write = os.pipe()
        self._supervisor = threading.Thread(target=self._supervise, name="pool-supervisor", daemon=True)

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Spawn every worker and the supervisor; returns at once (see :meth:`wait_ready`)."""
        with self._lock:
            for slot in self._slots:
                slot.spawn(self._context)
        self._supervisor.start()

    def wait_ready(self, timeout: float) -> bool:
        """Block until every slot is ready (True) or ``timeout`` seconds pass (False)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not self._all_ready():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
        return True

    def is_ready(self) -> bool:
        with self._lock:
            return self._all_ready()

    def close(self, timeout: float = 10.0) -> None:
        """Stop accepting work, let workers finish what they hold, then stop them."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            self._changed.notify_all()
            slots = list(self._slots)
        for slot in slots:
            self._send(slot, Stop())
        deadline = time.monotonic() + timeout
        with self._changed:
            while any(s.process is not None for s in self._slots):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._supervisor.is_alive():
                    break
                self._changed.wait(remaining)
            for slot in self._slots:
                slot.kill(NotReady("The service is shutting down."))
        if self._supervisor.is_alive():
            with self._changed:
                end = time.monotonic() + 5.0
                while any(s.process is not None for s in self._slots) and time.monotonic() < end:
                    self._changed.wait(0.1)
        self._stopped = True
        self._wake()
        if self._supervisor.is_alive():
            self._supervisor.join(5.0)
        os.close(self._wake_write)
        os.close(self._wake_read)

    # --- requests ----------------------------------------------------------------------------

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
        future: Future[Prediction] = Future()
        with self._changed:
            slot = self._choose(self._role(entries), routing.device_for(self._settings, entries))
            job_id = next(self._job_ids)
            slot.pending[job_id] = Pending(future, time.monotonic() + self._settings.worker_timeout)
            # The pipe of the process the job was registered with: should that process die
            # first, the job fails with it and must not reach its replacement.
            connection = slot.jobs
        # Entries are frozen dataclasses; the image follows as one raw message (no pickle copy).
        self._send(slot, PredictJob(job_id, tuple(entries), text, image is not None), image, connection)
        try:
            return future.result(timeout=self._settings.worker_timeout + _CALLER_GRACE_S)
        except FutureTimeout:
            raise WorkerTimeout(
                f"{slot.name} did not answer within {self._settings.worker_timeout} s."
            ) from None

    def health(self, timeout: float = 2.0) -> list[dict[str, Any]]:
        """Per slot: :meth:`Slot.snapshot` plus the worker's ``pipeline.status()`` as ``models``."""
        asked: list[tuple[Slot, int, Future[StatusReply] | None, Connection | None, dict[str, Any]]] = []
        with self._lock:
            for slot in self._slots:
                job_id = next(self._job_ids)
                future: Future[StatusReply] | None = None
                if slot.state == "ready":
                    future = Future()
                    slot.queries[job_id] = Pending(future, time.monotonic() + timeout)
                asked.append((slot, job_id, future, slot.jobs, slot.snapshot()))
        for slot, job_id, future, connection, _ in asked:
            if future is not None:
                self._send(slot, StatusQuery(job_id), connection=connection)
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

    def snapshot(self) -> list[dict[str, Any]]:
        """Per-slot counters and state without asking the workers (cheap, for metrics)."""
        with self._lock:
            return [slot.snapshot() for slot in self._slots]

    # --- dispatch (caller holds the lock) ----------------------------------------------------

    def _role(self, entries: Sequence[Entry]) -> Role:
        return routing.role_for(self._settings, entries) if self._cpu_slots else "device"

    def _choose(self, role: Role, device_id: str | None = None) -> Slot:
        """The least-loaded ready slot of ``role`` (on ``device_id`` when the model is pinned there)."""
        deadline = time.monotonic() + self._ready_wait_s
        waiting = False
        try:
            while True:
                if self._closing:
                    raise NotReady("The service is shutting down.")
                group = [
                    s for s in self._slots
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
                self._changed.wait(remaining)
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
                f"flight, MACHINE_LEARNING_QUEUE_DEPTH={self._settings.queue_depth}); retry shortly."
            )
        return best

    def _all_ready(self) -> bool:
        return self._cpu_slots is not None and all(s.state == "ready" for s in self._slots)

    def _send(
        self,
        slot: Slot,
        message: PredictJob | StatusQuery | Stop,
        image: bytes | memoryview | None = None,
        connection: Connection | None = None,
    ) -> None:
        """Write to the worker (to ``connection`` if given, else the slot's current pipe).

        A dead or closed pipe is left to the supervisor, which fails the job when it reaps the
        process.
        """
        with slot.send_lock:
            target = connection if connection is not None else slot.jobs
            if target is None or target.closed:
                return
            try:
                target.send(message)
                if image is not None:
                    target.send_bytes(image)
            except (OSError, ValueError):
                pass


def _not_ready_message(group: list[Slot]) -> str:
    if not group:
        return "No worker serves these models."
    failed = [s for s in group if s.start_failures]
    if failed and len(failed) == len(group):
        reasons = "; ".join(f"{s.name}: {s.last_error}" for s in failed)
        return f"No worker for these models could start ({reasons}). See /health."
    return "The workers for these models are starting; retry shortly."
