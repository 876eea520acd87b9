"""What the pool (parent process) and a worker process say to each other, and what a worker's
pipeline must offer.

Each worker has two one-way pipes. Jobs flow parent → worker, results worker → parent. Messages
are small pickled ``NamedTuple``s; an image travels as the *next* raw message after its
:class:`PredictJob` (``Connection.send_bytes``), so its bytes are written once into the pipe and
read once out of it instead of being copied again into a pickle. Errors cross as
:class:`immich_ml.errors.ImmichMLError` instances (they are picklable by contract).

This module is imported by the parent, so it imports no model, runtime or backend code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol

from immich_ml.config import Settings
from immich_ml.errors import ImmichMLError
from immich_ml.schemas import Entry

# Dotted path ``module:attribute`` of the callable that builds a worker's pipeline:
# ``factory(settings, target) -> PipelineLike``. Tests inject a double through it.
PIPELINE_FACTORY = "immich_ml.pipeline:Pipeline"

Role = Literal["device", "cpu"]


class PipelineLike(Protocol):
    """The part of :class:`immich_ml.pipeline.Pipeline` a worker uses (semantics: its docstrings)."""

    def predict(
        self,
        entries: Sequence[Entry],
        *,
        image: bytes | None = None,
        text: str | None = None,
        timings: dict[str, float] | None = None,
    ) -> dict[str, Any]: ...

    def preload(self) -> None: ...

    def evict_expired(self) -> list[str]: ...

    def self_test(self) -> None: ...

    def status(self) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker process needs, fixed when it is spawned.

    ``kind`` is the family the slot was planned for (``MACHINE_LEARNING_DEVICE``, ``auto``
    included), used in names; the worker asks the backend registry which family it really uses. ``settings`` already carries this slot's ``device_id`` and, for CPU slots,
    ``device="cpu"``. ``cpu_placed`` lists the ``(task, type)`` pairs placed on CPU workers: a
    device worker whose target is not the CPU leaves those out of its preload, a CPU worker
    preloads only those.
    """

    slot: int
    role: Role
    device_id: str
    kind: str
    settings: Settings
    pipeline_factory: str
    log_level: int
    cpu_placed: frozenset[tuple[str, str]] = frozenset()

    @property
    def name(self) -> str:
        """Short identity for logs: ``worker 0 (cpu:0)``."""
        return f"worker {self.slot} ({self.kind}:{self.device_id})"


# --- parent → worker -----------------------------------------------------------------------------


class PredictJob(NamedTuple):
    """Run ``entries``; when ``has_image`` the image bytes follow as one raw message."""

    job_id: int
    entries: tuple[Entry, ...]
    text: str | None
    has_image: bool


class StatusQuery(NamedTuple):
    """Ask for ``pipeline.status()`` and the worker's own counters; answered out of band."""

    job_id: int


class Stop(NamedTuple):
    """Finish the jobs already received, close the pipeline and exit with status 0."""


# --- worker → parent -----------------------------------------------------------------------------


class Ready(NamedTuple):
    """Handshake: pipeline built, preload done, self-test passed on ``target``."""

    pid: int
    target: str
    models: list[dict[str, Any]]
    startup_s: float


class StartFailed(NamedTuple):
    """The worker could not become ready; it exits right after sending this."""

    message: str


class Started(NamedTuple):
    """A request thread began running the job: ``WORKER_TIMEOUT`` counts from here, so time a
    request spent queued behind others is not held against it."""

    job_id: int


class Done(NamedTuple):
    """A successful prediction: ``body`` is the Immich JSON response, already serialized.

    ``meta`` holds ``timings`` (seconds per stage, from the pipeline) and ``counts``
    (``"task/type"`` → items produced, e.g. faces embedded, used as batch sizes) ``models``
    (``(task, type, requested name, catalog name)`` per entry: the only metric label values) and
    ``worker_s`` (the whole job on the worker's thread, pipeline and serialization).
    """

    job_id: int
    body: bytes
    meta: Mapping[str, Any]


class Failed(NamedTuple):
    job_id: int
    error: ImmichMLError


class StatusReply(NamedTuple):
    job_id: int
    models: list[dict[str, Any]]
    stats: Mapping[str, Any]


class Prediction(NamedTuple):
    """A worker's answer: the Immich JSON body, stage timings and counts, and who served it."""

    body: bytes
    meta: dict[str, Any]
    slot: int


ToWorker = PredictJob | StatusQuery | Stop
FromWorker = Ready | StartFailed | Started | Done | Failed | StatusReply

# Exit status of a worker that could not start (after sending StartFailed).
EXIT_START_FAILED = 3
