"""A model replica: the service's own :class:`~immich_ml.pipeline.Pipeline` inside a Ray Serve replica.

One deployment per group of :data:`immich_ml.config.RAY_GROUPS`. A replica

* picks its device the way a worker process does (backend registry; ``num_gpus`` makes Ray set
  ``CUDA_VISIBLE_DEVICES``, so the replica's device is always its local ``0``) and runs the
  device self-test before it accepts requests;
* holds one pipeline per multiplexed model id (:func:`immich_ml.ray.groups.multiplex_id`), at
  most ``MACHINE_LEARNING_RAY_MAX_MODELS_PER_REPLICA`` of them (Serve unloads the least recently
  used one and routes later requests for it to replicas that still hold it); preloaded models
  (``MACHINE_LEARNING_PRELOAD__*``) sit in a pinned pipeline that is never evicted;
* answers with :func:`immich_ml.workers.worker.run_job`, exactly as a worker process does: a
  :class:`Done` with the serialized body or a :class:`Failed` carrying the error to answer with;
* when ``MACHINE_LEARNING_BATCH_WAIT_MS`` > 0, gathers requests with ``@serve.batch`` for up to
  that long (at most ``REQUEST_THREADS`` per batch) and runs a batch's requests together on the
  replica's threads;
* pushes its health report to the :mod:`.health` board every second.

Face detection and recognition are one group, so a face request is one replica call.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import threading
import time
from dataclasses import replace
from typing import Any, cast

import ray
from ray import serve

from immich_ml.backends import registry
from immich_ml.backends.base import Target
from immich_ml.config import PreloadModels, Settings
from immich_ml.errors import ImmichMLError
from immich_ml.models.catalog import resolve
from immich_ml.pipeline import Pipeline
from immich_ml.ray.groups import group_of, multiplex_id
from immich_ml.ray.health import Reporter
from immich_ml.schemas import Entry
from immich_ml.workers.protocol import Done, Failed, PredictJob
from immich_ml.workers.worker import run_job, transportable_error

log = logging.getLogger(__name__)

# One multiplexed request as it waits in a batch: (model id, entries, image, text).
_Item = tuple[str, tuple[Entry, ...], bytes | None, str | None]


class _Held:
    """A pipeline in the multiplex cache; closed when evicted *and* no request still uses it."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self._users = 0
        self._evicted = False
        self._closed = False
        self._lock = threading.Lock()

    @property
    def evicted(self) -> bool:
        return self._evicted

    def acquire(self) -> None:
        with self._lock:
            self._users += 1

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            close = self._evicted and self._users == 0 and not self._closed
            self._closed = self._closed or close
        if close:
            self.pipeline.close()

    def __del__(self) -> None:
        # Serve calls this when it evicts the model id (least recently used), Python again later.
        with self._lock:
            self._evicted = True
            close = self._users == 0 and not self._closed
            self._closed = self._closed or close
        if close:
            self.pipeline.close()


def _group_preload(preload: PreloadModels, group: str) -> PreloadModels:
    """Only ``group``'s part of the preload list."""
    keep = {
        "clip-textual": ("clip_textual",),
        "clip-visual": ("clip_visual",),
        "facial-recognition": ("facial_recognition_detection", "facial_recognition_recognition"),
        "ocr": ("ocr_detection", "ocr_recognition"),
    }[group]
    cleared = {name: () for name in ("clip_textual", "clip_visual", "facial_recognition_detection",
                                     "facial_recognition_recognition", "ocr_detection", "ocr_recognition")}
    kept = {name: getattr(preload, name) for name in keep}
    return replace(preload, **{**cleared, **kept})


def _node_address(node_id: str) -> str:
    """The address the node joined the cluster with (``--node-ip-address``), as Ray lists it."""
    for node in cast(Any, ray).nodes():
        if node.get("NodeID") == node_id:
            return str(node.get("NodeManagerAddress", ""))
    return ""


class ModelReplica:
    """The body of every model deployment (see module docstring); built by :mod:`.app`."""

    def __init__(self, settings: Settings, group: str) -> None:
        logging.getLogger("immich_ml").setLevel(settings.log_level_number)
        started = time.perf_counter()
        self._group = group
        self._kind = registry.detect_target_kind(settings)
        self._target = Target(self._kind, "0")
        self._settings = replace(
            settings.with_device_id("0"), preload=_group_preload(settings.preload, group)
        )
        self._placement = registry.self_test(self._settings, self._target)
        self._pinned = Pipeline(self._settings, self._target)
        self._pinned.preload()
        self._pinned_ids = {model.spec.name for model in self._pinned.manager.models()}
        self._pinned_held = _Held(self._pinned)
        self._held: dict[str, _Held] = {}
        self._held_lock = threading.Lock()
        self._jobs = itertools.count(1)
        self._counts = {"requests": 0, "errors": 0, "inflight": 0}
        self._counts_lock = threading.Lock()
        self._load = serve.multiplexed(max_num_models_per_replica=settings.ray.max_models_per_replica)(
            self._make_loader()
        )
        threads = max(1, settings.request_threads)
        self._batching = bool(settings.batch_wait_ms)
        batcher = cast(Any, self._predict_batch)  # Serve's batch wrapper carries the setters
        batcher.set_max_batch_size(threads)
        batcher.set_batch_wait_timeout_s((settings.batch_wait_ms or 0) / 1000.0)
        self._node_ip = _node_address(ray.get_runtime_context().get_node_id())
        context = serve.get_replica_context()
        self._replica = context.replica_id.unique_id
        self._started_at = time.time()
        self._startup_s = time.perf_counter() - started
        self._reporter = Reporter(self._replica, self.report)
        self._reporter.start()
        self._ttl_stop = threading.Event()
        threading.Thread(target=self._evict_loop, name="ttl", daemon=True).start()
        log.info(
            "replica %s of %s ready on %s (%s, %s) in %.2f s",
            self._replica, group, self._target, self._placement.provider, socket.gethostname(),
            self._startup_s,
        )

    # --- requests --------------------------------------------------------------------------------

    async def predict(
        self, entries: tuple[Entry, ...], image: bytes | None, text: str | None
    ) -> Done | Failed:
        """Run one request's entries of this group; errors come back as :class:`Failed`."""
        job = PredictJob(next(self._jobs), entries, text, image is not None)
        try:
            self._check(entries)
        except ImmichMLError as error:
            return self._account(Failed(job.job_id, transportable_error(error)))
        model_id = multiplex_id(entries)
        if self._batching:
            return self._account(await self._predict_batch((model_id, entries, image, text)))
        return self._account(await self._run(job, model_id, image))

    @serve.batch(max_batch_size=1, batch_wait_timeout_s=0.0)
    async def _predict_batch(self, items: list[_Item]) -> list[Done | Failed]:
        jobs = [
            (PredictJob(next(self._jobs), entries, text, image is not None), model_id, image)
            for model_id, entries, image, text in items
        ]
        return list(await asyncio.gather(*(self._run(job, mid, image) for job, mid, image in jobs)))

    async def _run(self, job: PredictJob, model_id: str, image: bytes | None) -> Done | Failed:
        with self._counts_lock:
            self._counts["inflight"] += 1
        try:
            held = await self._pipeline_for(model_id)
            held.acquire()
            try:
                return await asyncio.to_thread(run_job, held.pipeline, job, image, self._replica)
            finally:
                held.release()
        except ImmichMLError as error:
            return Failed(job.job_id, transportable_error(error))
        finally:
            with self._counts_lock:
                self._counts["inflight"] -= 1

    def _check(self, entries: tuple[Entry, ...]) -> None:
        """Only this group's entries, with names the catalog knows (before they take a cache slot)."""
        for entry in entries:
            if group_of(entry) != self._group:
                raise ImmichMLError(f"{entry.task.value}/{entry.type.value} sent to {self._group}")
            resolve(entry.name, entry.task, entry.type)

    async def _pipeline_for(self, model_id: str) -> _Held:
        if model_id in self._pinned_ids:
            return self._pinned_held
        held: _Held = await self._load(model_id)
        return held

    def _make_loader(self) -> Any:
        async def load(model_id: str) -> _Held:
            held = _Held(Pipeline(self._settings, self._target))
            with self._held_lock:
                self._held = {k: v for k, v in self._held.items() if not v.evicted}
                self._held[model_id] = held
            return held

        return load

    def _account(self, answer: Done | Failed) -> Done | Failed:
        with self._counts_lock:
            self._counts["requests"] += 1
            if isinstance(answer, Failed):
                self._counts["errors"] += 1
        return answer

    # --- health ------------------------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        """This replica as ``/health`` shows it (also the shape the metrics read)."""
        with self._held_lock:
            pipelines = [self._pinned, *(h.pipeline for h in self._held.values() if not h.evicted)]
            multiplexed = sorted(k for k, h in self._held.items() if not h.evicted)
        models = [model for pipeline in pipelines for model in pipeline.status()]
        with self._counts_lock:
            counts = dict(self._counts)
        context = ray.get_runtime_context()
        return {
            "slot": self._replica,
            "replica": self._replica,
            "deployment": self._group,
            "role": self._group,
            "state": "ready",
            "target": str(self._target),
            "node": context.get_node_id(),
            "node_ip": self._node_ip,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
            "self_test": {
                "provider": self._placement.provider,
                "device": self._placement.device,
                "fallback_reason": self._placement.fallback_reason,
            },
            "multiplexed_models": multiplexed,
            "models": models,
            "startup_s": round(self._startup_s, 3),
            "started_at": self._started_at,
            **counts,
        }

    def _evict_loop(self) -> None:
        settings = self._settings
        if settings.model_ttl <= 0 or settings.model_ttl_poll_s <= 0:
            return
        while not self._ttl_stop.wait(settings.model_ttl_poll_s):
            with self._held_lock:
                pipelines = [self._pinned, *(h.pipeline for h in self._held.values() if not h.evicted)]
            for pipeline in pipelines:
                for label in pipeline.evict_expired():
                    log.info("replica %s: unloaded %s after %d s idle", self._replica, label, settings.model_ttl)

    def __del__(self) -> None:
        reporter = getattr(self, "_reporter", None)
        if reporter is not None:
            reporter.stop()
        stop = getattr(self, "_ttl_stop", None)
        if stop is not None:
            stop.set()
