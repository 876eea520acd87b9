"""Embedding output: the JSON string Immich stores.

Run: python benchmarks/bench_embed.py [--runs N]

  * serialize_embedding vs ``orjson.dumps(v, option=OPT_SERIALIZE_NUMPY).decode()`` (Immich's
    serialize_np_array). serialize_embedding *is* orjson behind input validation: a C++17
    std::to_chars serializer formatted to orjson's bytes was measured and lost (see
    benchmarks/README.md), so this row shows the façade's overhead.
Each row prints the median time per call in microseconds (calls batched to get above the clock's
resolution) and "x ref", the reference's median divided by the row's, measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import orjson

from immich_ml.ops.embed import serialize_embedding

BATCH = 200  # calls per timing sample


def medians_us(fns: list[Callable[[], object]], runs: int) -> list[float]:
    """Median microseconds per call of each function; the functions take turns."""
    for fn in fns:
        fn()
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(runs):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            for _ in range(BATCH):
                fn()
            samples[i].append((time.perf_counter() - t0) / BATCH)
    return [statistics.median(s) * 1e6 for s in samples]


def numpy_l2(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows: list[tuple[str, str, Callable[[], object]]] = []
    for dim in (512, 128):
        v = numpy_l2(rng.standard_normal(dim).astype(np.float32))
        case = f"serialize {dim}-d"
        rows += [
            (case, "orjson", lambda v=v: orjson.dumps(v, option=orjson.OPT_SERIALIZE_NUMPY).decode()),
            (case, "immich_ml serialize_embedding", lambda v=v: serialize_embedding(v)),
        ]
    results = medians_us([fn for _, _, fn in rows], args.runs)
    print(f"{'case':<16} {'implementation':<32} {'us/call':>8} {'x ref':>6}")
    for start in range(0, len(rows), 2):
        ref = results[start]
        for (case, name, _), us in zip(rows[start : start + 2], results[start : start + 2]):
            print(f"{case:<16} {name:<32} {us:>8.2f} {ref / us:>6.2f}")


if __name__ == "__main__":
    main()
