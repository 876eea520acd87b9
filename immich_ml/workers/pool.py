"""The per-device process pool: spawn, dispatch, supervise, restart.

``WorkerPool`` keeps one worker process per slot (see :mod:`immich_ml.workers.routing`), started
with ``multiprocessing``'s *spawn* method (CUDA and other runtimes do not survive ``fork``).
A request goes to the least-loaded *ready* slot that serves its models; each slot accepts at
most ``REQUEST_THREADS + MACHINE_LEARNING_QUEUE_DEPTH`` requests at a time, beyond that the
caller gets :class:`~immich_ml.errors.Overloaded` (HTTP 503 with ``Retry-After``), so memory
never grows without bound.

One supervisor thread waits on every worker's result pipe and process sentinel at once, so a
worker that dies (segfault, out-of-memory kill, ``os._exit``) is noticed immediately: its
in-flight requests fail with :class:`~immich_ml.errors.WorkerCrashed` naming the signal, and
the slot is refilled after a back-off. The same thread enforces ``WORKER_TIMEOUT`` (the worker
is killed and its requests get :class:`~immich_ml.errors.WorkerTimeout`) and the start-up
timeout.

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
from multiprocessing.connection import Connection, wait
from typing import Any, NamedTuple

from immich_ml.config import Settings
from immich_ml.errors import ImmichMLError, NotReady, Overloaded, WorkerCrashed, WorkerTimeout
from immich_ml.schemas import Entry
from immich_ml.workers import routing
from immich_ml.workers.protocol import (
    EXIT_START_FAILED,
    PIPELINE_FACTORY,
    Done,
    Failed,
    FromWorker,
    PredictJob,
    Ready,
    Role,
    StartFailed,
    StatusQuery,
    StatusReply,
    Stop,
)
from immich_ml.workers.slot import (
    CRASH_BACKOFF_S,
    STABLE_AFTER_S,
    START_BACKOFF_S,
    Pending,
    Slot,
    backoff,
    describe_exit,
    slot_spec,
)

log = logging.getLogger(__name__)

# Extra seconds a caller waits beyond WORKER_TIMEOUT before giving up on its own (the
# supervisor normally answers first by killing the worker).
_CALLER_GRACE_S = 30.0


class Prediction(NamedTuple):
    """A worker's answer: the Immich JSON body, stage timings and counts, and who served it."""

    body: bytes
    meta: dict[str, Any]
    slot: int


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
        self, entries: Sequence[Entry], *, image: bytes | None = None, text: str | None = None
    ) -> Prediction:
        """Run ``entries`` on a worker; raises the worker's error or a pool error (503/504)."""
        future: Future[Prediction] = Future()
        with self._changed:
            slot = self._choose(self._role(entries))
            job_id = next(self._job_ids)
            slot.pending[job_id] = Pending(future, time.monotonic() + self._settings.worker_timeout)
        # Entries are frozen dataclasses; the image follows as one raw message (no pickle copy).
        self._send(slot, PredictJob(job_id, tuple(entries), text, image is not None), image)
        try:
            return future.result(timeout=self._settings.worker_timeout + _CALLER_GRACE_S)
        except FutureTimeout:
            raise WorkerTimeout(
                f"{slot.name} did not answer within {self._settings.worker_timeout} s."
            ) from None

    def health(self, timeout: float = 2.0) -> list[dict[str, Any]]:
        """Per slot: :meth:`Slot.snapshot` plus the worker's ``pipeline.status()`` as ``models``."""
        asked: list[tuple[Slot, int, Future[StatusReply] | None, dict[str, Any]]] = []
        with self._lock:
            for slot in self._slots:
                job_id = next(self._job_ids)
                future: Future[StatusReply] | None = None
                if slot.state == "ready":
                    future = Future()
                    slot.queries[job_id] = Pending(future, time.monotonic() + timeout)
                asked.append((slot, job_id, future, slot.snapshot()))
        for slot, job_id, future, _ in asked:
            if future is not None:
                self._send(slot, StatusQuery(job_id))
        report = []
        for slot, _, future, info in asked:
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

    def _choose(self, role: Role) -> Slot:
        deadline = time.monotonic() + self._ready_wait_s
        waiting = False
        try:
            while True:
                if self._closing:
                    raise NotReady("The service is shutting down.")
                group = [s for s in self._slots if s.plan.role == role]
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

    def _send(self, slot: Slot, message: PredictJob | StatusQuery | Stop, image: bytes | None = None) -> None:
        """Write to the worker; a dead pipe is left to the supervisor, which fails the job."""
        with slot.send_lock:
            connection = slot.jobs
            if connection is None:
                return
            try:
                connection.send(message)
                if image is not None:
                    connection.send_bytes(image)
            except (OSError, ValueError):
                pass

    # --- supervision (supervisor thread) -----------------------------------------------------

    def _supervise(self) -> None:
        while not self._stopped:
            with self._lock:
                watched: dict[Any, Slot] = {}
                for slot in self._slots:
                    if slot.results is not None:
                        watched[slot.results] = slot
                    if slot.process is not None:
                        watched[slot.process.sentinel] = slot
                timeout = self._next_deadline() - time.monotonic()
            try:
                ready = wait([*watched, self._wake_read], max(0.0, min(timeout, 1.0)))
            except OSError:
                continue
            for handle in ready:
                if handle == self._wake_read:
                    os.read(self._wake_read, 4096)
                    continue
                slot = watched[handle]
                if isinstance(handle, Connection):
                    self._drain(slot, handle)
                elif slot.process is not None and slot.process.sentinel == handle:
                    self._reap(slot)
            self._enforce_deadlines()

    def _wake(self) -> None:
        try:
            os.write(self._wake_write, b"x")
        except OSError:
            pass

    def _drain(self, slot: Slot, connection: Connection) -> None:
        """Handle every message the worker has written so far."""
        try:
            while connection.poll():
                self._handle(slot, connection.recv())
        except (EOFError, OSError):
            with self._lock:
                if slot.results is connection:
                    # The worker closed its end; its exit is handled when its sentinel fires.
                    slot.results = None
                    connection.close()

    def _handle(self, slot: Slot, message: FromWorker) -> None:
        if isinstance(message, Done | Failed):
            with self._lock:
                pending = slot.pending.pop(message.job_id, None)
                slot.requests += 1
                if isinstance(message, Failed):
                    slot.errors += 1
            if pending is not None:
                if isinstance(message, Done):
                    meta = dict(message.meta)
                    pending.future.set_result(Prediction(message.body, meta, slot.plan.index))
                else:
                    pending.future.set_exception(message.error)
        elif isinstance(message, StatusReply):
            with self._lock:
                query = slot.queries.pop(message.job_id, None)
                slot.models = message.models
            if query is not None:
                query.future.set_result(message)
        elif isinstance(message, Ready):
            self._on_ready(slot, message)
        elif isinstance(message, StartFailed):
            with self._lock:
                slot.last_error = message.message

    def _on_ready(self, slot: Slot, message: Ready) -> None:
        with self._changed:
            startup_s = time.monotonic() - (slot.spawned_at or time.monotonic())
            slot.state = "ready"
            slot.target, slot.pid, slot.models = message.target, message.pid, message.models
            slot.ready_since = time.monotonic()
            slot.start_failures = 0
            if slot.plan.role == "device" and self._cpu_slots is None:
                self._cpu_slots = routing.needs_cpu_slots(self._settings, message.target.split(":")[0])
                if self._cpu_slots and not self._closing:
                    for cpu_slot in self._add_cpu_slots():
                        cpu_slot.spawn(self._context)
            self._changed.notify_all()
        log.info(
            "%s is ready (pid %d, started in %.2f s, pipeline built in %.2f s)",
            slot.name, message.pid, startup_s, message.startup_s,
        )

    def _reap(self, slot: Slot) -> None:
        """The slot's process exited: fail what it owed, then schedule its replacement."""
        process = slot.process
        if process is None:
            return
        process.join()
        if slot.results is not None:
            self._drain(slot, slot.results)
        what = describe_exit(process.exitcode)
        now = time.monotonic()
        with self._changed:
            was_ready = slot.state == "ready"
            error: ImmichMLError = slot.kill_reason or WorkerCrashed(
                f"{slot.name} {what} while running this request; it is being restarted, retry shortly."
            )
            owed = list(slot.pending.values()) + list(slot.queries.values())
            slot.pending.clear()
            slot.queries.clear()
            slot.close_pipes()
            slot.process = None
            slot.pid = None
            slot.ready_since = None
            if self._closing:
                slot.state = "stopped"
            elif was_ready and process.exitcode != EXIT_START_FAILED:
                stable = slot.ready_since is not None and now - slot.ready_since > STABLE_AFTER_S
                slot.crash_streak = 1 if stable else slot.crash_streak + 1
                slot.state = "restarting"
                slot.last_error = slot.kill_reason.message if slot.kill_reason else f"{slot.name} {what}"
                slot.respawn_at = now + backoff(slot.crash_streak, CRASH_BACKOFF_S)
            else:
                slot.start_failures += 1
                slot.state = "failed"
                if slot.last_error is None or not slot.last_error.strip():
                    slot.last_error = f"{slot.name} {what} while starting"
                slot.respawn_at = now + backoff(slot.start_failures, START_BACKOFF_S)
            self._changed.notify_all()
        if not self._closing:
            delay = (slot.respawn_at or now) - now
            log.error("%s %s; restarting it in %.2f s (%s)", slot.name, what, delay, slot.last_error)
        for pending in owed:
            pending.future.set_exception(error)

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        expired: list[Pending] = []
        with self._changed:
            for slot in self._slots:
                late = [p for p in slot.pending.values() if p.deadline <= now]
                if late and slot.kill_reason is None:
                    seconds = self._settings.worker_timeout
                    log.error("%s: a request ran longer than %d s; restarting the worker", slot.name, seconds)
                    slot.kill(WorkerTimeout(
                        f"The request ran longer than MACHINE_LEARNING_WORKER_TIMEOUT ({seconds} s) "
                        f"on {slot.name}; the worker is being restarted."
                    ))
                for job_id in [j for j, p in slot.queries.items() if p.deadline <= now]:
                    expired.append(slot.queries.pop(job_id))
                started = slot.spawned_at or now
                limit = self._settings.worker_start_timeout_s
                if slot.state in ("starting", "restarting", "failed") and slot.process is not None:
                    if now - started > limit and slot.kill_reason is None:
                        slot.last_error = f"{slot.name} did not become ready within {limit} s"
                        slot.kill(NotReady(slot.last_error))
                if (
                    slot.process is None
                    and slot.respawn_at is not None
                    and slot.respawn_at <= now
                    and not self._closing
                ):
                    # A failed slot stays "failed" while it retries; requests do not wait for it.
                    slot.restarts += 1
                    slot.spawn(self._context)
        for query in expired:
            query.future.set_exception(TimeoutError("the worker did not answer the status query in time"))

    def _next_deadline(self) -> float:
        """The earliest moment the supervisor must act even if no worker says anything."""
        moments = [time.monotonic() + 1.0]
        for slot in self._slots:
            moments.extend(p.deadline for p in slot.pending.values())
            moments.extend(p.deadline for p in slot.queries.values())
            if slot.respawn_at is not None:
                moments.append(slot.respawn_at)
        return min(moments)

    # --- slots -------------------------------------------------------------------------------

    def _new_slot(self, plan: routing.SlotPlan) -> Slot:
        spec = slot_spec(plan, self._settings, pipeline_factory=self._factory, cpu_placed=self._cpu_placed)
        return Slot(plan, spec)

    def _add_cpu_slots(self) -> list[Slot]:
        added = [self._new_slot(plan) for plan in routing.cpu_slots(self._settings, len(self._slots))]
        self._slots.extend(added)
        return added


def _not_ready_message(group: list[Slot]) -> str:
    if not group:
        return "No worker serves these models."
    failed = [s for s in group if s.start_failures]
    if failed and len(failed) == len(group):
        reasons = "; ".join(f"{s.name}: {s.last_error}" for s in failed)
        return f"No worker for these models could start ({reasons}). See /health."
    return "The workers for these models are starting; retry shortly."
