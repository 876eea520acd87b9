"""The process main of one worker slot: one pipeline on one device, many requests at a time.

Start-up is a handshake: build the pipeline on the slot's target, preload, run the self-test on
the device, then send :class:`~immich_ml.workers.protocol.Ready`. Any failure sends
:class:`~immich_ml.workers.protocol.StartFailed` with the reason and exits with
``EXIT_START_FAILED``, so the pool can report it and retry later.

Serving: ``max(1, REQUEST_THREADS)`` jobs run at once (the runtimes release the GIL while they
compute), on threads that take turns reading the job pipe (see :class:`_Server`); status queries
run on a separate thread so they are answered even while every request thread is busy.
A TTL thread calls ``pipeline.evict_expired()`` every ``MODEL_TTL_POLL_S`` seconds. When the
parent goes away (end of file on the job pipe) the worker exits at once.
"""

from __future__ import annotations

import importlib
import logging
import os
import pickle
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import Any, cast

import orjson

from immich_ml.backends.base import Target
from immich_ml.config import Settings
from immich_ml.errors import ImmichMLError, UnknownModel
from immich_ml.models.catalog import resolve
from immich_ml.models.memory import release_memory
from immich_ml.workers import routing
from immich_ml.workers.logs import configure_logging
from immich_ml.workers.protocol import (
    EXIT_START_FAILED,
    Done,
    Failed,
    FromWorker,
    PipelineLike,
    PredictJob,
    Ready,
    StartFailed,
    Started,
    StatusQuery,
    StatusReply,
    Stop,
    WorkerSpec,
)

log = logging.getLogger(__name__)

PipelineFactory = Callable[[Settings, Target], PipelineLike]


def load_factory(path: str) -> PipelineFactory:
    """Import ``module:attribute`` and return the callable."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"pipeline factory must look like 'package.module:Name', got {path!r}")
    return cast(PipelineFactory, getattr(importlib.import_module(module_name), attribute))


def resolve_kind(spec: WorkerSpec) -> str:
    """The accelerator family for this slot: the backend registry decides it
    (:func:`~immich_ml.backends.registry.detect_target_kind`, the one place that does)."""
    from immich_ml.backends import registry  # loads runtime probing: only in the worker process

    return registry.detect_target_kind(spec.settings)


def worker_settings(spec: WorkerSpec, kind: str) -> Settings:
    """The settings this slot's pipeline gets: its device id and its share of the preload."""
    settings = spec.settings.with_device_id(spec.device_id)
    # CPU-placed models move off a device worker only when that worker is not on the CPU itself
    # (the pool starts CPU slots on the same condition).
    placed = spec.cpu_placed if (spec.role == "cpu" or kind != "cpu") else frozenset()
    return replace(settings, preload=routing.preload_for(settings, spec.role, placed, spec.device_id))


class _Sender:
    """Serializes writes to the result pipe from the request threads."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._lock = threading.Lock()

    def send(self, message: FromWorker) -> None:
        with self._lock:
            try:
                self._connection.send(message)
            except (OSError, ValueError):
                # The parent is gone; the reader notices end of file and exits.
                pass


def produced_counts(result: Mapping[str, Any]) -> dict[str, int]:
    """Items produced per dependent model, the batch sizes the pool reports."""
    counts: dict[str, int] = {}
    faces = result.get("facial-recognition")
    if isinstance(faces, list):
        counts["facial-recognition/recognition"] = len(faces)
    ocr = result.get("ocr")
    if isinstance(ocr, dict) and isinstance(ocr.get("text"), list):
        counts["ocr/recognition"] = len(ocr["text"])
    return counts


def _resolved(job: PredictJob) -> list[tuple[str, str, str, str]]:
    """``(task, type, requested name, catalog name)`` per entry of a job that succeeded: the
    only model names the service uses as metric labels (a client cannot invent series)."""
    rows = []
    for entry in job.entries:
        try:
            name = resolve(entry.name, entry.task, entry.type).name
        except UnknownModel:  # a pipeline that runs models the catalog does not list (test doubles)
            continue
        rows.append((entry.task.value, entry.type.value, entry.name, name))
    return rows


def transportable_error(error: ImmichMLError) -> ImmichMLError:
    """``error`` if it survives pickling, else its nearest ``immich_ml.errors`` ancestor.

    Every class in :mod:`immich_ml.errors` except SettingsError is built from the message
    alone, so the parent still answers with the right status and message.
    """
    try:
        pickle.dumps(error)
        return error
    except Exception:
        pass
    for cls in type(error).__mro__:
        if cls.__module__ == ImmichMLError.__module__ and issubclass(cls, ImmichMLError):
            try:
                candidate = cls(error.message)
                pickle.dumps(candidate)
            except Exception:
                continue
            return candidate
    return ImmichMLError(error.message)


def run_job(pipeline: PipelineLike, job: PredictJob, image: bytes | None, name: str) -> Done | Failed:
    """Run ``job`` on ``pipeline``: the serialized Immich body, or the error to answer with.

    Shared by worker processes and Ray replicas (:mod:`immich_ml.ray.replica`), so both answer
    alike; an unexpected exception is logged here and becomes a bare 500.
    """
    timings: dict[str, float] = {}
    try:
        received = time.perf_counter()
        result = pipeline.predict(job.entries, image=image, text=job.text, timings=timings)
        started = time.perf_counter()
        body = orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY)
        finished = time.perf_counter()
        timings["serialize"] = timings.get("serialize", 0.0) + finished - started
        # "worker_s": the whole job on this thread, for the Server-Timing header (the rest of a
        # request's latency is the service: HTTP, parsing, the pipes).
        meta = {"timings": timings, "counts": produced_counts(result), "worker_s": finished - received,
                "models": _resolved(job)}
        return Done(job.job_id, body, meta)
    except ImmichMLError as error:
        return Failed(job.job_id, transportable_error(error))
    except Exception:
        log.exception("%s: request failed with an unexpected error", name)
        return Failed(job.job_id, ImmichMLError("Internal server error"))


class _Server:
    """Runs jobs for one ready pipeline until told to stop or the parent disappears.

    Leader/followers: ``REQUEST_THREADS + 1`` threads take turns reading the job pipe, and the
    thread that reads a job runs it itself when another thread is free to take over the reading
    (no hand-over to a second thread: one wake-up less per request, ~0.1 ms on a busy host, see
    benchmarks/README.md). When every other thread is busy the reader queues the job and keeps
    reading, so the pipe is always drained (status queries are never stuck behind a job) and at
    most ``REQUEST_THREADS`` jobs run at once; a thread that finishes a job takes queued ones first.
    """

    def __init__(self, spec: WorkerSpec, name: str, pipeline: PipelineLike, sender: _Sender) -> None:
        self._spec = spec
        self._name = name
        self._pipeline = pipeline
        self._sender = sender
        self._threads = max(1, spec.settings.request_threads)
        self._control = ThreadPoolExecutor(1, thread_name_prefix="status")
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._queued: deque[tuple[PredictJob, bytes | None]] = deque()
        self._followers = 0
        self._running = 0
        self._served = 0
        self._trimmed_at = 0  # value of _served when freed memory was last given back
        self._last_done = time.monotonic()

    def serve(self, jobs: Connection) -> None:
        ttl = threading.Thread(target=self._evict_loop, name="ttl", daemon=True)
        ttl.start()
        threads = [
            threading.Thread(target=self._take_turns, args=(jobs,), name=f"predict_{i}", daemon=True)
            for i in range(self._threads + 1)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self._control.shutdown(wait=True)
        self._pipeline.close()
        log.info("%s stopped after %d requests", self._name, self._served)

    def _take_turns(self, jobs: Connection) -> None:
        """Run queued jobs, else read the pipe until a job comes; return once told to stop."""
        while True:
            with self._lock:
                job = self._queued.popleft() if self._queued else None
                if job is None:
                    self._followers += 1
            if job is None:
                with self._read_lock:
                    with self._lock:
                        self._followers -= 1
                    job = self._read(jobs)
                if job is None:
                    return
            self._predict(*job)

    def _read(self, jobs: Connection) -> tuple[PredictJob, bytes | None] | None:
        """As the reader (holding ``_read_lock``): the next job this thread should run, or None."""
        while not self._stopping.is_set():
            try:
                message = jobs.recv()
                if isinstance(message, PredictJob):
                    job = (message, jobs.recv_bytes() if message.has_image else None)
                    with self._lock:
                        if self._followers:  # a free thread takes over the reading
                            return job
                        self._queued.append(job)
                elif isinstance(message, StatusQuery):
                    self._control.submit(self._status, message)
                elif isinstance(message, Stop):
                    self._stopping.set()
            except (EOFError, OSError):
                # Nobody is left to answer to: skip the orderly shutdown.
                log.info("%s: the service went away, exiting", self._name)
                os._exit(0)
        # Stopping: jobs received before Stop still run (queued ones by the threads that finish).
        return None

    def _predict(self, job: PredictJob, image: bytes | None) -> None:
        with self._lock:
            self._running += 1
        self._sender.send(Started(job.job_id))
        try:
            message = run_job(self._pipeline, job, image, self._name)
        finally:
            with self._lock:
                self._running -= 1
                self._served += 1
                self._last_done = time.monotonic()
        self._sender.send(message)

    def _status(self, query: StatusQuery) -> None:
        try:
            models = self._pipeline.status()
        except Exception as error:
            log.exception("%s: status failed", self._name)
            models = [{"state": "unknown", "last_error": f"status failed: {error}"}]
        with self._lock:
            stats = {"running": self._running, "served": self._served, "threads": self._threads}
        self._sender.send(StatusReply(query.job_id, models, stats))

    def _evict_loop(self) -> None:
        settings = self._spec.settings
        if settings.model_ttl_poll_s <= 0:
            return
        while not self._stopping.wait(settings.model_ttl_poll_s):
            self._trim_when_idle(settings.model_ttl_poll_s)
            if settings.model_ttl <= 0:
                continue
            try:
                evicted = self._pipeline.evict_expired()
            except Exception:
                log.exception("%s: evicting idle models failed", self._name)
                continue
            for label in evicted:
                log.info("%s: unloaded %s after %d s idle", self._name, label, settings.model_ttl)

    def _trim_when_idle(self, idle_s: float) -> None:
        """Give the allocator's free pages back once the worker has been idle ``idle_s`` after
        serving: glibc keeps the peak of every request's buffers (a 12 MP photo's decode and
        resize) mapped. Measured: −113 MB RSS after faces on phone photos (benchmarks/README.md)."""
        with self._lock:
            idle = (self._running == 0 and self._served != self._trimmed_at
                    and time.monotonic() - self._last_done >= idle_s)
            if idle:
                self._trimmed_at = self._served
        if idle:
            log.debug("%s: idle, freed memory returned (%s)", self._name, release_memory())


def _start(spec: WorkerSpec, kind: str) -> tuple[PipelineLike, Ready]:
    started = time.perf_counter()
    target = Target(kind, spec.device_id)
    factory = load_factory(spec.pipeline_factory)
    pipeline = factory(worker_settings(spec, kind), target)
    try:
        pipeline.preload()
        pipeline.self_test()
        where = f"{target.kind}:{target.device_id}"
        ready = Ready(os.getpid(), where, pipeline.status(), time.perf_counter() - started)
    except BaseException:
        pipeline.close()
        raise
    return pipeline, ready


def worker_main(spec: WorkerSpec, jobs: Connection, results: Connection) -> None:
    """Entry point of the spawned process (``multiprocessing`` target)."""
    # Ctrl-C and `timeout`/`kill -- -pgid` reach the whole process group; the service decides
    # when its workers stop (after their in-flight requests), and they exit on their own if the
    # service disappears.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    configure_logging(spec.log_level, tag=f"worker {spec.slot}")
    sender = _Sender(results)
    name = spec.name
    try:
        kind = resolve_kind(spec)
        name = f"worker {spec.slot} ({kind}:{spec.device_id})"
        pipeline, ready = _start(spec, kind)
    except BaseException as error:
        reason = str(error) or type(error).__name__
        if not isinstance(error, ImmichMLError):
            reason = f"{type(error).__name__}: {reason}"
            log.exception("%s failed to start", name)
        else:
            log.error("%s failed to start: %s", name, reason)
        sender.send(StartFailed(reason))
        os._exit(EXIT_START_FAILED)
    log.debug(
        "%s ready on %s in %.2f s (pid %d, %d request threads)",
        name, ready.target, ready.startup_s, ready.pid, max(1, spec.settings.request_threads),
    )
    sender.send(ready)
    _Server(spec, name, pipeline, sender).serve(jobs)
