"""One worker slot as the pool sees it: the process that fills it now, its pipes, its state and
the requests it owes answers to. A slot outlives its processes: a crashed worker is replaced in
the same slot, which keeps its counters.

Slots are plain state, changed under the lock of the pool's
:class:`~immich_ml.workers.slot_table.SlotTable`.
"""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnContext, SpawnProcess
from typing import Any, Literal

from immich_ml.config import Settings
from immich_ml.errors import ImmichMLError
from immich_ml.workers.entry import run_worker
from immich_ml.workers.protocol import WorkerSpec
from immich_ml.workers import routing
from immich_ml.workers.routing import SlotPlan

State = Literal["starting", "ready", "restarting", "failed", "stopped"]

# Seconds to wait before replacing a worker: doubled per consecutive failure, capped.
CRASH_BACKOFF_S = (0.25, 30.0)
START_BACKOFF_S = (1.0, 60.0)
# A worker that served this long resets its crash streak.
STABLE_AFTER_S = 60.0


@dataclass
class Pending:
    """A request (or status query) sent to a worker and not answered yet."""

    future: Future[Any]
    deadline: float
    sent: float = field(default_factory=time.monotonic)


def backoff(failures: int, limits: tuple[float, float]) -> float:
    """Delay before the next start after ``failures`` consecutive failures (>= 1)."""
    first, cap = limits
    return float(min(cap, first * 2 ** max(0, failures - 1)))


def describe_exit(exitcode: int | None) -> str:
    """``was killed by signal SIGKILL`` / ``exited with code 3``, for logs and errors."""
    if exitcode is None:
        return "stopped responding"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"was killed by signal {name}"
    return f"exited with code {exitcode}"


class Slot:
    """A worker position in the pool (see module docstring)."""

    def __init__(self, plan: SlotPlan, spec: WorkerSpec) -> None:
        self.plan = plan
        self.spec = spec
        self.state: State = "starting"
        self.process: SpawnProcess | None = None
        self.jobs: Connection | None = None
        self.results: Connection | None = None
        self.send_lock = threading.Lock()
        self.pending: dict[int, Pending] = {}
        self.queries: dict[int, Pending] = {}
        self.target = f"{plan.kind}:{plan.device_id}"
        # Models pinned to this slot (MACHINE_LEARNING_PLACEMENT__*): a device id, or cpu for CPU slots.
        self.placed_here = (
            routing.placed_on(spec.settings, plan.device_id)
            if plan.role == "device"
            else tuple(sorted("/".join(pair) for pair in spec.cpu_placed))
        )
        self.pid: int | None = None
        self.models: list[dict[str, Any]] = []
        self.restarts = 0
        self.requests = 0
        self.errors = 0
        self.last_error: str | None = None
        self.start_failures = 0
        self.crash_streak = 0
        self.spawned_at: float | None = None
        self.ready_since: float | None = None
        self.respawn_at: float | None = None
        self.kill_reason: ImmichMLError | None = None
        self.threads = max(1, spec.settings.request_threads)
        self.capacity = self.threads + spec.settings.queue_depth

    @property
    def name(self) -> str:
        return f"worker {self.plan.index} ({self.target})"

    def spawn(self, context: SpawnContext) -> None:
        """Start a fresh worker process in this slot (state ``starting`` or ``restarting``)."""
        jobs_read, jobs_write = context.Pipe(duplex=False)
        results_read, results_write = context.Pipe(duplex=False)
        process = context.Process(
            target=run_worker,
            args=(self.spec, jobs_read, results_write),
            name=f"immich-ml-worker-{self.plan.index}",
        )
        process.start()
        # The child holds its own copies; closing ours lets each side see end of file when the
        # other goes away.
        jobs_read.close()
        results_write.close()
        self.process, self.jobs, self.results = process, jobs_write, results_read
        self.pid = process.pid
        self.spawned_at = time.monotonic()
        self.ready_since = None
        self.respawn_at = None
        self.kill_reason = None

    def close_pipes(self) -> None:
        """Close both pipe ends; waits for a sender that is mid-write (it fails fast: the
        worker's end is gone, so its write gets EPIPE) so a send never sees a closed handle."""
        with self.send_lock:
            if self.jobs is not None:
                self.jobs.close()
            self.jobs = None
        if self.results is not None:
            self.results.close()
        self.results = None

    def kill(self, reason: ImmichMLError) -> None:
        """SIGKILL the process; its pending requests will fail with ``reason``."""
        if self.process is not None and self.kill_reason is None:
            self.kill_reason = reason
            self.process.kill()

    def snapshot(self) -> dict[str, Any]:
        """Health fields that need no round trip to the worker."""
        now = time.monotonic()
        inflight = len(self.pending)
        return {
            "slot": self.plan.index,
            "role": self.plan.role,
            "device_id": self.plan.device_id,
            "placed_here": list(self.placed_here),
            "target": self.target,
            "pid": self.pid,
            "state": self.state,
            "restarts": self.restarts,
            "last_error": self.last_error,
            "inflight": inflight,
            "queue_depth": max(0, inflight - self.threads),
            "capacity": self.capacity,
            "requests": self.requests,
            "errors": self.errors,
            "uptime_s": round(now - self.ready_since, 3) if self.ready_since is not None else None,
        }


def slot_spec(
    plan: SlotPlan,
    settings: Settings,
    *,
    pipeline_factory: str,
    cpu_placed: frozenset[tuple[str, str]],
) -> WorkerSpec:
    """The spawn arguments for ``plan``: CPU slots get ``device="cpu"`` in their settings."""
    slot_settings = settings.with_device_id(plan.device_id)
    if plan.role == "cpu":
        slot_settings = replace(slot_settings, device="cpu")
    return WorkerSpec(
        slot=plan.index,
        role=plan.role,
        device_id=plan.device_id,
        kind=plan.kind,
        settings=slot_settings,
        pipeline_factory=pipeline_factory,
        log_level=settings.log_level_number,
        cpu_placed=cpu_placed,
    )
