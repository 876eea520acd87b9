"""Supervision of the pool's worker processes, run by one thread of the service process.

It waits on every worker's result pipe and process sentinel at once
(``multiprocessing.connection.wait``), so it hands results to waiting callers as they arrive and
sees a worker die the moment it does: the requests that worker held fail with
:class:`~immich_ml.errors.WorkerCrashed` naming the signal or exit code, and the slot is refilled
after a back-off. It also enforces ``WORKER_TIMEOUT`` (kills the worker; its requests get
:class:`~immich_ml.errors.WorkerTimeout`) and the start-up timeout, and starts the CPU slots once
the device workers report what they run on.

:class:`Supervisor` owns its thread and the pipe that wakes it; it works on the slots of the
pool's :class:`~immich_ml.workers.slot_table.SlotTable` under the table's lock.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from multiprocessing.connection import Connection, wait
from typing import Any

from immich_ml.errors import ImmichMLError, NotReady, WorkerCrashed, WorkerTimeout
from immich_ml.workers import routing
from immich_ml.workers.protocol import (
    EXIT_START_FAILED,
    Done,
    Failed,
    FromWorker,
    Prediction,
    Ready,
    StartFailed,
    Started,
    StatusReply,
)
from immich_ml.workers.slot import (
    CRASH_BACKOFF_S,
    STABLE_AFTER_S,
    START_BACKOFF_S,
    Pending,
    Slot,
    backoff,
    describe_exit,
)
from immich_ml.workers.slot_table import SlotTable

log = logging.getLogger("immich_ml.workers.pool")


class Supervisor:
    """One thread that watches every worker of ``table`` (see module docstring)."""

    def __init__(self, table: SlotTable) -> None:
        self._table = table
        self._stopped = False
        self._wake_read, self._wake_write = os.pipe()
        self._thread = threading.Thread(target=self._supervise, name="pool-supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        """Ends the thread (after the round in progress) and closes the wake pipe."""
        self._stopped = True
        self._wake()
        if self._thread.is_alive():
            self._thread.join(timeout)
        os.close(self._wake_write)
        os.close(self._wake_read)

    def _supervise(self) -> None:
        while not self._stopped:
            try:
                self._supervise_once()
            except Exception:
                # The pool must keep supervising whatever one iteration ran into.
                log.exception("worker pool supervisor: unexpected error (continuing)")
                time.sleep(0.1)

    def _supervise_once(self) -> None:
        """Wait for worker messages, exits or the next deadline, and handle what happened."""
        with self._table.lock:
            watched: dict[Any, Slot] = {}
            for slot in self._table.slots:
                if slot.results is not None:
                    watched[slot.results] = slot
                if slot.process is not None:
                    watched[slot.process.sentinel] = slot
            timeout = self._next_deadline() - time.monotonic()
        try:
            ready = wait([*watched, self._wake_read], max(0.0, min(timeout, 1.0)))
        except OSError:
            # A pipe was closed while we waited on it; the next round sees the new state.
            ready = []
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
            with self._table.lock:
                if slot.results is connection:
                    # The worker closed its end; its exit is handled when its sentinel fires.
                    slot.results = None
                    connection.close()

    def _handle(self, slot: Slot, message: FromWorker) -> None:
        if isinstance(message, Done | Failed):
            with self._table.lock:
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
        elif isinstance(message, Started):
            with self._table.lock:
                running = slot.pending.get(message.job_id)
                if running is not None:
                    running.deadline = time.monotonic() + self._table.settings.worker_timeout
        elif isinstance(message, StatusReply):
            with self._table.lock:
                query = slot.queries.pop(message.job_id, None)
                slot.models = message.models
            if query is not None:
                query.future.set_result(message)
        elif isinstance(message, Ready):
            self._on_ready(slot, message)
        elif isinstance(message, StartFailed):
            with self._table.lock:
                slot.last_error = message.message

    def _on_ready(self, slot: Slot, message: Ready) -> None:
        with self._table.changed:
            startup_s = time.monotonic() - (slot.spawned_at or time.monotonic())
            slot.state = "ready"
            slot.target, slot.pid, slot.models = message.target, message.pid, message.models
            slot.ready_since = time.monotonic()
            slot.start_failures = 0
            if slot.plan.role == "device" and self._table.cpu_slots is None:
                self._table.cpu_slots = routing.needs_cpu_slots(self._table.settings, message.target.split(":")[0])
                if self._table.cpu_slots and not self._table.closing:
                    for cpu_slot in self._table.add_cpu_slots():
                        cpu_slot.spawn(self._table.context)
            self._table.changed.notify_all()
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
        with self._table.changed:
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
            slot.models = []
            if self._table.closing:
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
            self._table.changed.notify_all()
        if not self._table.closing:
            delay = (slot.respawn_at or now) - now
            log.error("%s %s; restarting it in %.2f s (%s)", slot.name, what, delay, slot.last_error)
        for pending in owed:
            pending.future.set_exception(error)

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        expired: list[Pending] = []
        with self._table.changed:
            for slot in self._table.slots:
                late = [p for p in slot.pending.values() if p.deadline <= now]
                if late and slot.kill_reason is None:
                    seconds = self._table.settings.worker_timeout
                    log.error("%s: a request ran longer than %d s; restarting the worker", slot.name, seconds)
                    slot.kill(WorkerTimeout(
                        f"The request ran longer than MACHINE_LEARNING_WORKER_TIMEOUT ({seconds} s) "
                        f"on {slot.name}; the worker is being restarted."
                    ))
                for job_id in [j for j, p in slot.queries.items() if p.deadline <= now]:
                    expired.append(slot.queries.pop(job_id))
                started = slot.spawned_at or now
                limit = self._table.settings.worker_start_timeout_s
                if slot.state in ("starting", "restarting", "failed") and slot.process is not None:
                    if now - started > limit and slot.kill_reason is None:
                        slot.last_error = f"{slot.name} did not become ready within {limit} s"
                        slot.kill(NotReady(slot.last_error))
                if (
                    slot.process is None
                    and slot.respawn_at is not None
                    and slot.respawn_at <= now
                    and not self._table.closing
                ):
                    # A failed slot stays "failed" while it retries; requests do not wait for it.
                    slot.restarts += 1
                    slot.spawn(self._table.context)
        for query in expired:
            query.future.set_exception(TimeoutError("the worker did not answer the status query in time"))

    def _next_deadline(self) -> float:
        """The earliest moment the supervisor must act even if no worker says anything."""
        moments = [time.monotonic() + 1.0]
        for slot in self._table.slots:
            moments.extend(p.deadline for p in slot.pending.values())
            moments.extend(p.deadline for p in slot.queries.values())
            if slot.respawn_at is not None:
                moments.append(slot.respawn_at)
        return min(moments)
