"""Run rows of a batched input through a session in bucket-sized runs, surviving accelerator OOM.

Every batching model (CLIP image and text, face recognition, OCR recognition) turns a list of
items into one output row each. :class:`RowRunner` plans the runs over the model's shape
buckets (:func:`~immich_ml.models.batching.plan_runs`), lets the model fill each bound buffer
and collects the rows. When a run fails with
:class:`~immich_ml.errors.AcceleratorOutOfMemory` it frees what the session can give back,
retries the same items in runs of at most half the size and, when even one item does not fit,
runs those items on a CPU session of the same model (opened on first need, logged at WARNING,
counted, shown in /health; never with ``MACHINE_LEARNING_DEVICE_STRICT`` or
``MACHINE_LEARNING_OOM_CPU_FALLBACK=false``, where the request gets the 503 instead). The worker
never stays stuck: every failure either resolves or reaches the request that caused it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import numpy as np
import numpy.typing as npt

from immich_ml.backends.base import Session
from immich_ml.errors import AcceleratorOutOfMemory
from immich_ml.models.batching import plan_runs
from immich_ml.models.memory import release_memory

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Row = npt.NDArray[np.float32]
Shapes = Callable[[int], Mapping[str, tuple[int, ...]]]
# fill(input buffers, items, batch): write the items' rows, zero the padding rows.
Fill = Callable[[Mapping[str, npt.NDArray[np.generic]], Sequence[Item], int], None]


class RowRunner(Generic[Item]):
    """Bucketed runs with OOM recovery for one model. Thread-safe.

    ``shapes(batch)`` gives the bound input shapes for a batch size; ``output_index`` the output
    holding one row per item. ``open_cpu`` opens the CPU session used after an OOM at the
    smallest batch; ``None`` means the CPU fallback is not allowed.
    """

    def __init__(
        self,
        label: str,
        shapes: Shapes,
        sizes: Sequence[int],
        *,
        output_index: int = 0,
        pad: bool = False,
        open_cpu: Callable[[], Session] | None = None,
    ) -> None:
        self.label = label
        self.sizes = tuple(sorted(set(sizes)))
        self._shapes = shapes
        self._output_index = output_index
        self._pad = pad
        self._open_cpu = open_cpu
        self._cpu: Session | None = None
        self._lock = threading.Lock()
        self.oom_events = 0
        self.oom_retries = 0
        self.oom_cpu_runs = 0
        self.last_oom: str | None = None

    def rows(self, session: Session, items: Sequence[Item] | npt.NDArray[Any], fill: Fill[Item]) -> list[Row]:
        """One float32 row per item (a list, or the rows of an array), in order."""
        out: list[Row] = []
        start = 0
        for count, bucket in plan_runs(len(items), self.sizes, pad=self._pad):
            out += self._run_chunk(session, items[start : start + count], bucket, self.sizes, fill)
            start += count
        return out

    def _run_chunk(
        self, session: Session, chunk: Any, bucket: int, sizes: tuple[int, ...], fill: Fill[Item]
    ) -> list[Row]:
        try:
            return self._run_once(session, chunk, bucket, fill)
        except AcceleratorOutOfMemory as exc:
            self._note_oom(exc, bucket)
            free = getattr(session, "free_memory", None)
            if callable(free):
                free()
            release_memory()
            smaller = tuple(s for s in sizes if s <= max(1, bucket // 2))
            if len(chunk) > 1 and smaller and smaller != sizes:
                with self._lock:
                    self.oom_retries += 1
                log.warning("%s: retrying %d items in runs of at most %d", self.label, len(chunk), smaller[-1])
                out: list[Row] = []
                start = 0
                for count, sub in plan_runs(len(chunk), smaller, pad=self._pad):
                    out += self._run_chunk(session, chunk[start : start + count], sub, smaller, fill)
                    start += count
                return out
            cpu = self._cpu_session()
            if cpu is None:
                raise
            with self._lock:
                self.oom_cpu_runs += 1
            log.warning("%s: out of accelerator memory even at batch %d; running %d item(s) on the CPU",
                        self.label, bucket, len(chunk))
            return self._run_once(cpu, chunk, bucket, fill)

    def _run_once(self, session: Session, chunk: Any, bucket: int, fill: Fill[Item]) -> list[Row]:
        with session.bind(self._shapes(bucket)) as call:
            fill(call.inputs, chunk, bucket)
            outputs = call.run()
            values = np.asarray(outputs[self._output_index], dtype=np.float32).reshape(bucket, -1)
            return [values[i].copy() for i in range(len(chunk))]

    def _note_oom(self, exc: AcceleratorOutOfMemory, bucket: int) -> None:
        with self._lock:
            self.oom_events += 1
            self.last_oom = exc.message
        log.warning("%s: %s (batch %d)", self.label, exc.message, bucket)

    def _cpu_session(self) -> Session | None:
        if self._open_cpu is None:
            return None
        with self._lock:
            if self._cpu is None:
                self._cpu = self._open_cpu()
            return self._cpu

    def close(self) -> None:
        """Close the CPU fallback session, if one was opened."""
        with self._lock:
            cpu, self._cpu = self._cpu, None
        if cpu is not None:
            cpu.close()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "events": self.oom_events,
                "retries": self.oom_retries,
                "cpu_runs": self.oom_cpu_runs,
                "cpu_session": self._cpu is not None,
                "last": self.last_oom,
            }


def copy_rows(name: str) -> Fill[npt.NDArray[Any]]:
    """A fill that copies per-item arrays (already preprocessed) into input ``name``, zero padding."""

    def fill(buffers: Mapping[str, npt.NDArray[np.generic]], items: Sequence[npt.NDArray[Any]], batch: int) -> None:
        buffer = buffers[name]
        for i, item in enumerate(items):
            buffer[i] = item
        if len(items) < batch:
            buffer[len(items) :] = 0

    return fill
