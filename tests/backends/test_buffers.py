"""Input buffer pool: reuse per shape, bounded size, one owner at a time."""

from __future__ import annotations

import numpy as np

from immich_ml.backends.buffers import BufferPool

LAYOUT = {"x": ((2, 3), "float32")}


def test_reuses_after_release_but_never_shares() -> None:
    pool = BufferPool()
    key, a = pool.acquire(LAYOUT)
    _, b = pool.acquire(LAYOUT)
    assert a["x"] is not b["x"]  # two concurrent calls never share memory
    pool.release(key, a)
    _, c = pool.acquire(LAYOUT)
    assert c["x"] is a["x"]
    assert c["x"].dtype == np.float32 and c["x"].shape == (2, 3) and c["x"].flags.c_contiguous


def test_bounded() -> None:
    pool = BufferPool(max_keys=2, per_key=1)
    for n in range(1, 5):
        key, bufs = pool.acquire({"x": ((n, 1000), "float32")})
        pool.release(key, bufs)
        key2, bufs2 = pool.acquire({"x": ((n, 1000), "float32")})
        extra = {"x": np.empty((n, 1000), np.float32)}
        pool.release(key2, bufs2)
        pool.release(key2, extra)  # over per_key: dropped
    assert pool.idle_bytes() == (3 + 4) * 1000 * 4
    pool.clear()
    assert pool.idle_bytes() == 0
