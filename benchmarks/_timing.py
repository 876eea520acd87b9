"""Shared timing for the kernel benchmarks: medians of interleaved runs."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def medians_ms(fns: list[Callable[[], object]], runs: int) -> list[tuple[float, float]]:
    """(median wall ms, median CPU ms) of each function.

    The functions take turns so that load from other processes hits all of them alike; CPU time
    (all threads of this process) is the steadier figure on a busy machine.
    """
    for fn in fns:
        fn()  # warm-up: first-touch page faults, lazy imports
    wall: list[list[float]] = [[] for _ in fns]
    cpu: list[list[float]] = [[] for _ in fns]
    for _ in range(runs):
        for i, fn in enumerate(fns):
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            wall[i].append(time.perf_counter() - t0)
            cpu[i].append(time.process_time() - c0)
    return [(statistics.median(w) * 1e3, statistics.median(c) * 1e3) for w, c in zip(wall, cpu)]
