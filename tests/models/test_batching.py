"""The cross-request Batcher (models/batching.py): shared runs, bounds, errors, withdrawal."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from immich_ml.config import Settings
from immich_ml.models.batching import Batcher, batch_sizes, batch_wait_ms, plan_runs


class Recorder:
    """A run function that doubles each item and records the batch sizes it was given."""

    def __init__(self, delay_s: float = 0.0, fail_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.delay_s = delay_s
        self.fail_on = fail_on
        self.lock = threading.Lock()

    def __call__(self, items: list[int]) -> list[int]:
        with self.lock:
            self.batches.append(list(items))
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail_on is not None and self.fail_on in items:
            raise RuntimeError(f"item {self.fail_on} broke the run")
        return [2 * i for i in items]


def concurrently(count: int, call: Callable[[int], object]) -> list[object]:
    start = threading.Barrier(count)

    def one(i: int) -> object:
        start.wait()
        return call(i)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def test_concurrent_requests_share_runs() -> None:
    run = Recorder()
    batcher = Batcher("m", run, max_items=8, wait_s=0.2)
    results = concurrently(8, lambda i: batcher.submit([i]))
    assert results == [[2 * i] for i in range(8)]  # each request gets its own item's result
    # Without batching there would be 8 runs of 1; the window gathers all 8 (at most a straggler run).
    assert len(run.batches) <= 2 and max(len(b) for b in run.batches) >= 4
    assert sorted(i for b in run.batches for i in b) == list(range(8))
    stats = batcher.stats()
    assert stats["batches"] == len(run.batches) and stats["items"] == 8
    assert stats["size"]["count"] == len(run.batches) and stats["wait"]["count"] == 8


def test_max_items_bounds_every_run_and_requests_with_many_items_are_split() -> None:
    run = Recorder()
    batcher = Batcher("m", run, max_items=3, wait_s=0.05)
    results = concurrently(4, lambda i: batcher.submit([10 * i + k for k in range(4)]))
    assert results == [[2 * (10 * i + k) for k in range(4)] for i in range(4)]
    assert all(len(b) <= 3 for b in run.batches) and sum(len(b) for b in run.batches) == 16


def test_a_full_batch_does_not_wait_for_the_window() -> None:
    run = Recorder()
    batcher = Batcher("m", run, max_items=4, wait_s=30.0)
    started = time.monotonic()
    concurrently(4, lambda i: batcher.submit([i]))
    assert time.monotonic() - started < 10  # far below the 30 s window: closed when full
    assert [len(b) for b in run.batches] == [4]


def test_a_lone_request_waits_for_the_window_only() -> None:
    run = Recorder()
    batcher = Batcher("m", run, max_items=8, wait_s=0.05)
    assert batcher.submit([3]) == [6]
    waited_ms = batcher.stats()["wait"]["sum"]
    assert 45 <= waited_ms < 5000


def test_an_error_reaches_only_the_requests_of_its_batch() -> None:
    run = Recorder(fail_on=1)
    batcher = Batcher("m", run, max_items=2, wait_s=0.2)
    gate = threading.Event()
    outcomes: dict[int, object] = {}

    def request(i: int) -> None:
        if i >= 2:
            gate.wait()
        try:
            outcomes[i] = batcher.submit([i])
        except RuntimeError as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=request, args=(i,)) for i in range(4)]
    for t in threads[:2]:
        t.start()
    threads[0].join(10), threads[1].join(10)
    gate.set()
    for t in threads[2:]:
        t.start()
    for t in threads:
        t.join(10)
    assert isinstance(outcomes[0], RuntimeError) and isinstance(outcomes[1], RuntimeError)
    assert outcomes[2] == [4] and outcomes[3] == [6]  # the next batch is unaffected


def run_first(batcher: Batcher[int, int], items: list[int], results: dict[str, object]) -> threading.Thread:
    def first() -> None:
        results["first"] = batcher.submit(items)

    thread = threading.Thread(target=first)
    thread.start()
    time.sleep(0.05)
    return thread


def test_a_request_that_gives_up_leaves_the_running_batch_intact() -> None:
    run = Recorder(delay_s=0.5)
    batcher = Batcher("m", run, max_items=2, wait_s=0.2)
    results: dict[str, object] = {}
    first = run_first(batcher, [1], results)
    with pytest.raises(TimeoutError):
        batcher.submit([5], timeout_s=0.2)  # joins the first request's batch, gives up while it runs
    first.join(10)
    assert results["first"] == [2] and run.batches == [[1, 5]]


def test_a_request_that_gives_up_before_its_batch_is_taken_is_withdrawn() -> None:
    run = Recorder()
    batcher = Batcher("m", run, max_items=4, wait_s=0.5)
    results: dict[str, object] = {}
    first = run_first(batcher, [1], results)  # holds a 0.5 s window open
    with pytest.raises(TimeoutError):
        batcher.submit([5], timeout_s=0.05)
    first.join(10)
    assert results["first"] == [2] and run.batches == [[1]]  # the withdrawn item never ran
    assert batcher.submit([7]) == [14]


def test_plan_runs_pads_only_on_accelerators() -> None:
    assert plan_runs(29, (1, 2, 4, 8, 16), pad=False) == [(16, 16), (8, 8), (4, 4), (1, 1)]
    assert plan_runs(29, (1, 2, 4, 8, 16), pad=True) == [(16, 16), (13, 16)]
    assert plan_runs(3, (1, 2, 4), pad=True) == [(3, 4)]
    assert plan_runs(0, (1, 2), pad=True) == []


@pytest.mark.parametrize(
    ("maximum", "fixed", "sizes"),
    [(16, None, (1, 2, 4, 8, 16)), (6, None, (1, 2, 4, 6)), (1, None, (1,)), (32, None, (1, 2, 4, 8, 16, 32)),
     (16, 1, (1,)), (16, 4, (4,))],
)
def test_batch_sizes(maximum: int, fixed: int | None, sizes: tuple[int, ...]) -> None:
    assert batch_sizes(maximum, fixed) == sizes


@pytest.mark.parametrize(
    ("count", "sizes", "runs"),
    [
        (5, (1, 2), [(2, 2), (2, 2), (1, 1)]),
        (10, (1, 6), [(6, 6), (1, 1), (1, 1), (1, 1), (1, 1)]),
        (3, (4,), [(3, 4)]),
        (9, (4,), [(4, 4), (4, 4), (1, 4)]),
    ],
)
def test_plan_runs_without_padding(count: int, sizes: tuple[int, ...], runs: list[tuple[int, int]]) -> None:
    assert plan_runs(count, sizes, pad=False) == runs


def test_default_windows() -> None:
    default = Settings()
    assert batch_wait_ms(default, "cuda", "visual") > 0
    assert batch_wait_ms(default, "cuda", "textual") == 0  # interactive search is never held back
    assert batch_wait_ms(Settings(batch_wait_ms=0.0), "cuda", "visual") == 0
    assert batch_wait_ms(Settings(batch_wait_ms=7.0), "cpu", "textual") == 7.0
