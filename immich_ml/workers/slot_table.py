"""The pool's shared state: its slots and the one lock that guards them.

Dispatch (:mod:`immich_ml.workers.dispatch`), supervision (:mod:`immich_ml.workers.supervisor`)
and the pool's lifecycle (:mod:`immich_ml.workers.pool`) all read and change slots; each holds
this one table, so every piece of slot state has one owner and one lock.
"""

from __future__ import annotations

import multiprocessing
import threading
from multiprocessing.connection import Connection

from immich_ml.config import Settings
from immich_ml.workers import routing
from immich_ml.workers.protocol import PredictJob, StatusQuery, Stop
from immich_ml.workers.slot import Slot, slot_spec


class SlotTable:
    """Every worker slot of the pool, guarded by ``lock``; ``changed`` is notified whenever a
    slot's state changes or the pool starts closing."""

    def __init__(self, settings: Settings, pipeline_factory: str) -> None:
        self.settings = settings
        self.context = multiprocessing.get_context("spawn")
        self._factory = pipeline_factory
        self._cpu_placed = routing.cpu_placed(settings)
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.slots = [self._new_slot(plan) for plan in routing.device_slots(settings)]
        # Whether CPU slots run next to the device ones; None until a device worker reports
        # what it runs on.
        self.cpu_slots: bool | None = routing.needs_cpu_slots(settings, None)
        if self.cpu_slots:
            self.add_cpu_slots()
        self.closing = False

    def _new_slot(self, plan: routing.SlotPlan) -> Slot:
        spec = slot_spec(plan, self.settings, pipeline_factory=self._factory, cpu_placed=self._cpu_placed)
        return Slot(plan, spec)

    def add_cpu_slots(self) -> list[Slot]:
        """Appends the CPU slots (caller holds the lock); returns them, not yet spawned."""
        added = [self._new_slot(plan) for plan in routing.cpu_slots(self.settings, len(self.slots))]
        self.slots.extend(added)
        return added

    def all_ready(self) -> bool:
        """Every slot ready and the slot set final (caller holds the lock)."""
        return self.cpu_slots is not None and all(s.state == "ready" for s in self.slots)


def send(
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
