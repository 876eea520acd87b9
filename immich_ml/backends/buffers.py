"""Reusable input buffers for bound calls, keyed by (input name, shape, dtype).

A 640x640 detector input is 4.9 MB of float32; allocating it per request costs page faults and
lets the allocator's footprint drift. With fixed shape buckets the set of keys is small, so
buffers are kept and handed out again. Each buffer set belongs to one call at a time.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

Key = tuple[tuple[str, tuple[int, ...], str], ...]
Buffers = dict[str, npt.NDArray[np.generic]]


class BufferPool:
    """Thread-safe free lists of input buffer sets.

    ``max_keys`` bounds how many distinct shape sets are remembered (least recently used go
    first), ``per_key`` how many idle sets each keeps (about the number of concurrent callers).
    """

    def __init__(self, *, max_keys: int = 16, per_key: int = 4) -> None:
        self._free: OrderedDict[Key, list[Buffers]] = OrderedDict()
        self._lock = threading.Lock()
        self._max_keys = max_keys
        self._per_key = per_key

    def acquire(self, layout: Mapping[str, tuple[tuple[int, ...], str]]) -> tuple[Key, Buffers]:
        """A buffer set for ``{name: (shape, dtype)}``: reused if one is idle, else new (uninitialised)."""
        key: Key = tuple(sorted((name, shape, dtype) for name, (shape, dtype) in layout.items()))
        with self._lock:
            free = self._free.get(key)
            if free:
                self._free.move_to_end(key)
                return key, free.pop()
        return key, {name: np.empty(shape, dtype=dtype) for name, shape, dtype in key}

    def release(self, key: Key, buffers: Buffers) -> None:
        """Give a set back after its call; dropped if the pool is full."""
        with self._lock:
            free = self._free.setdefault(key, [])
            self._free.move_to_end(key)
            if len(free) < self._per_key:
                free.append(buffers)
            while len(self._free) > self._max_keys:
                self._free.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._free.clear()

    def idle_bytes(self) -> int:
        """Bytes held by idle buffer sets (for tests and benchmarks)."""
        with self._lock:
            return sum(a.nbytes for sets in self._free.values() for s in sets for a in s.values())
