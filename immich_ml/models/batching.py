"""Dynamic cross-request batching inside one worker: items from concurrent requests share one run.

A model that batches gives each request's items (a preprocessed image, a token row, the aligned
crops of one photo, OCR text crops) to its :class:`Batcher` and blocks until their results come
back. No extra thread: the request threads themselves take turns as the *collector*. The first
waiting item opens a window of ``wait_s``; the collector closes it early when ``max_items`` are
queued, takes up to ``max_items`` (oldest first) and runs them with the model's ``run`` function,
outside the lock, so the next collector can already gather the next batch while this one runs.

Guarantees:

* an item waits at most ``wait_s`` after the oldest queued item arrived, plus the collections
  ahead of it (each at most ``max_items``): "the bound plus one batch";
* each item's result is the row ``run`` produced for it (the model runs the same graph on a
  larger batch; tests check cosine ≥ 0.9999 against running alone);
* a request that is abandoned (its thread gave up) never breaks the batch: its items still run
  and their results are dropped; an error in ``run`` reaches every request of that batch only.

``wait_s = 0`` means no batcher at all (the model keeps its single-request path).
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from immich_ml.config import Settings

Item = TypeVar("Item")
Result = TypeVar("Result")

# Batch sizes and waits worth telling apart in /metrics (items; milliseconds).
SIZE_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128)
WAIT_BUCKETS_MS: tuple[float, ...] = (0.5, 1, 2, 5, 10, 20, 50, 100, 250, 1000)


# Default windows (ms) when MACHINE_LEARNING_BATCH_WAIT_MS is unset. CPU: off, from the figures
# at concurrency 4 and 8 on the 2-core VM (benchmarks/README.md "Cross-request batching"): faces
# gained nothing per request (same CPU ms), CLIP's gain was no larger than the same settings
# showed at concurrency 1 where nothing can batch. Accelerators: not measured yet (no GPU was
# lent); a few ms is what Triton-style servers use for image encoders.
CPU_WAIT_MS = 0.0
ACCELERATOR_WAIT_MS = 5.0
# CLIP text is interactive search: batching it would add the window to a person's wait.
UNBATCHED_BY_DEFAULT = frozenset({"textual"})


def batch_wait_ms(settings: Settings, device_kind: str, model_type: str) -> float:
    """The batching window of one model: ``MACHINE_LEARNING_BATCH_WAIT_MS`` when set, else the
    default for its device kind (0 = off)."""
    if settings.batch_wait_ms is not None:
        return settings.batch_wait_ms
    if model_type in UNBATCHED_BY_DEFAULT:
        return 0.0
    return CPU_WAIT_MS if device_kind == "cpu" else ACCELERATOR_WAIT_MS


def batch_sizes(maximum: int, fixed: int | None = None) -> tuple[int, ...]:
    """The batch sizes (shape buckets) a model runs: powers of two below ``maximum`` plus
    ``maximum`` itself, or only ``fixed`` when the model's batch axis is static. A handful of
    shapes keeps compiled programs few and the runtime's memory flat."""
    if fixed is not None:
        return (fixed,)
    sizes = {1, max(1, maximum)}
    size = 2
    while size < maximum:
        sizes.add(size)
        size *= 2
    return tuple(sorted(sizes))


def static_batch(dim: object) -> int | None:
    """The graph's batch size when its batch axis is static, else ``None``."""
    return dim if isinstance(dim, int) and dim > 0 else None


@dataclass
class Distribution:
    """A cumulative histogram kept inside the worker and shown in /health and /metrics."""

    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(self.buckets, value)
        for i in range(index, len(self.buckets)):
            self.counts[i] += 1
        self.total += value
        self.count += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "buckets": list(self.buckets),
            "cumulative": list(self.counts),
            "sum": round(self.total, 6),
            "count": self.count,
        }


class _Job(Generic[Item, Result]):
    """One request's items and, once every one of them has run, their results (or an error)."""

    __slots__ = ("items", "results", "left", "error", "done")

    def __init__(self, items: Sequence[Item]) -> None:
        self.items = items
        self.results: list[Result | None] = [None] * len(items)
        self.left = len(items)
        self.error: BaseException | None = None
        self.done = False


@dataclass(frozen=True)
class _Queued(Generic[Item, Result]):
    job: _Job[Item, Result]
    index: int
    arrived: float


class Batcher(Generic[Item, Result]):
    """Collects items of concurrent requests into runs of at most ``max_items``.

    ``run(items)`` returns one result per item, in order (it may split the items into several
    bucket-sized runs itself). ``label`` names the model in logs and statistics.
    """

    def __init__(
        self,
        label: str,
        run: Callable[[list[Item]], Sequence[Result]],
        *,
        max_items: int,
        wait_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items}")
        self.label = label
        self.max_items = max_items
        self.wait_s = max(0.0, wait_s)
        self._run = run
        self._clock = clock
        self._cond = threading.Condition()
        self._queue: deque[_Queued[Item, Result]] = deque()
        self._collecting = False
        self.sizes = Distribution(SIZE_BUCKETS)
        self.waits_ms = Distribution(WAIT_BUCKETS_MS)
        self.batches = 0
        self.items = 0

    def submit(self, items: Sequence[Item], timeout_s: float | None = None) -> list[Result]:
        """Run ``items`` (in one or more batches shared with other requests); their results in order.

        ``timeout_s`` bounds how long this call waits; on expiry it raises TimeoutError and the
        items still run with their batch (their results are dropped).
        """
        if not items:
            return []
        job: _Job[Item, Result] = _Job(items)
        deadline = None if timeout_s is None else self._clock() + timeout_s
        with self._cond:
            now = self._clock()
            self._queue.extend(_Queued(job, i, now) for i in range(len(items)))
            self._cond.notify_all()
        while True:
            try:
                batch = self._next_batch(job, deadline)
            except TimeoutError:
                self._withdraw(job)
                raise
            if batch is None:
                break
            self._execute(batch)
        if job.error is not None:
            raise job.error
        return [r for r in job.results]  # type: ignore[misc]  # every slot is filled once done

    def _next_batch(
        self, job: _Job[Item, Result], deadline: float | None
    ) -> list[_Queued[Item, Result]] | None:
        """Wait until ``job`` is done (None) or it is this thread's turn to collect (the batch)."""
        with self._cond:
            while not job.done:
                if self._queue and not self._collecting:
                    return self._collect()
                if deadline is not None and self._clock() >= deadline:
                    raise TimeoutError(f"{self.label}: no result within the request's time limit")
                self._cond.wait(None if deadline is None else max(0.0, deadline - self._clock()))
            return None

    def _collect(self) -> list[_Queued[Item, Result]]:
        """Hold the window open (caller holds the lock), then take the batch. Other threads may
        add items meanwhile; only one thread collects at a time."""
        self._collecting = True
        try:
            close = self._queue[0].arrived + self.wait_s
            while len(self._queue) < self.max_items:
                left = close - self._clock()
                if left <= 0:
                    break
                self._cond.wait(left)
            count = min(self.max_items, len(self._queue))
            batch = [self._queue.popleft() for _ in range(count)]
        finally:
            self._collecting = False
            self._cond.notify_all()
        now = self._clock()
        self.batches += 1
        self.items += len(batch)
        self.sizes.observe(len(batch))
        for queued in batch:
            self.waits_ms.observe((now - queued.arrived) * 1000.0)
        return batch

    def _execute(self, batch: list[_Queued[Item, Result]]) -> None:
        """Run one batch outside the lock and hand every item's result (or the error) to its job."""
        error: BaseException | None = None
        results: Sequence[Result] = ()
        try:
            results = self._run([q.job.items[q.index] for q in batch])
            if len(results) != len(batch):
                raise RuntimeError(
                    f"{self.label}: batch run returned {len(results)} results for {len(batch)} items"
                )
        except BaseException as exc:  # noqa: BLE001 - delivered to every request of the batch
            error = exc
        with self._cond:
            for position, queued in enumerate(batch):
                job = queued.job
                if error is not None:
                    job.error = job.error or error
                else:
                    job.results[queued.index] = results[position]
                job.left -= 1
                if job.left == 0 or (job.error is not None and not self._still_queued(job)):
                    job.done = True
            self._cond.notify_all()

    def _withdraw(self, job: _Job[Item, Result]) -> None:
        """Drop a given-up request's items that no batch has taken yet (taken ones still run)."""
        with self._cond:
            kept = [q for q in self._queue if q.job is not job]
            self._queue.clear()
            self._queue.extend(kept)

    def _still_queued(self, job: _Job[Item, Result]) -> bool:
        return any(q.job is job for q in self._queue)

    def stats(self) -> dict[str, Any]:
        """For /health and /metrics: settings, totals and the two histograms."""
        with self._cond:
            return {
                "wait_ms": round(self.wait_s * 1000.0, 3),
                "max_items": self.max_items,
                "batches": self.batches,
                "items": self.items,
                "size": self.sizes.as_dict(),
                "wait": self.waits_ms.as_dict(),
            }


def plan_runs(count: int, sizes: Sequence[int], *, pad: bool) -> list[tuple[int, int]]:
    """Split ``count`` items into runs of ``(items, bucket)`` over the allowed bucket ``sizes``.

    ``pad=False`` (CPU: every padded row costs as much as a real one): greedy largest bucket that
    fits, so nothing is padded unless the smallest bucket exceeds what is left. ``pad=True``
    (accelerators: a larger batch costs almost nothing more): the fewest runs, each padded up to
    the smallest bucket that holds it.
    """
    ordered = sorted(set(sizes))
    runs: list[tuple[int, int]] = []
    left = count
    while left > 0:
        if pad:
            bucket = next((s for s in ordered if s >= left), ordered[-1])
        else:
            fitting = [s for s in ordered if s <= left]
            bucket = fitting[-1] if fitting else ordered[0]
        items = min(bucket, left)
        runs.append((items, bucket))
        left -= items
    return runs
