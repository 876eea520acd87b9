"""The machine's floor: float32 matrix throughput, and how many FLOPs a model needs per run.

``floor time = model GFLOP / matmul GFLOP/s`` is how fast a run could be if every multiply-add ran
at the speed of a large, cache-friendly matrix product on all cores; real layers (attention, small
convolutions, memory-bound element-wise ops) run slower, so inference never beats it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class MatmulFloor:
    """``n``×``n`` float32 matrix product: GFLOP/s (2n³ FLOPs per product) by wall and CPU time.

    ``gflops`` is the best wall-clock rate over the repeats (all cores numpy's BLAS uses);
    ``gflops_per_core_cpu`` divides by CPU seconds instead, so it is not lowered by other
    processes taking turns on the cores.
    """

    n: int
    repeats: int
    gflops: float
    gflops_median: float
    gflops_per_core_cpu: float
    threads: int

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n, "repeats": self.repeats, "gflops": round(self.gflops, 2),
            "gflops_median": round(self.gflops_median, 2),
            "gflops_per_core_cpu": round(self.gflops_per_core_cpu, 2), "cores": self.threads,
        }


def matmul_floor(n: int = 2048, repeats: int = 7) -> MatmulFloor:
    """Time ``repeats`` float32 ``n``×``n`` products (after one warm-up)."""
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)
    np.matmul(a, b, out=out)
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        np.matmul(a, b, out=out)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    flop = 2.0 * n**3 / 1e9
    return MatmulFloor(
        n=n,
        repeats=repeats,
        gflops=flop / min(walls),
        gflops_median=flop / float(np.median(walls)),
        gflops_per_core_cpu=flop / max(float(np.median(cpus)), 1e-9),
        threads=os.cpu_count() or 1,
    )


def model_gflop(path: Path) -> float | None:
    """GFLOP (2 per multiply-add) of one run of the ONNX model at ``path`` with batch 1.

    Counts MatMul, Gemm and Conv, which hold nearly all the arithmetic of CNNs and transformers;
    symbolic dimensions are taken as 1. ``None`` when shapes cannot be inferred.
    """
    import onnx

    try:
        model = onnx.load(str(path))
        for tensor in model.graph.input:
            for dim in tensor.type.tensor_type.shape.dim:
                if not dim.HasField("dim_value"):
                    dim.dim_value = 1
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # noqa: BLE001 - unreadable or unsupported graphs simply have no figure
        return None
    shapes: dict[str, list[int]] = {}
    for info in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        dims = [d.dim_value if d.HasField("dim_value") else 0 for d in info.type.tensor_type.shape.dim]
        shapes[info.name] = dims
    for init in inferred.graph.initializer:
        shapes[init.name] = list(init.dims)
    total = 0.0
    for node in inferred.graph.node:
        flop = _node_flop(node, shapes)
        if flop is None:
            return None
        total += flop
    return total / 1e9


def _node_flop(node: Any, shapes: dict[str, list[int]]) -> float | None:
    if node.op_type not in ("MatMul", "Gemm", "Conv"):
        return 0.0
    if node.op_type == "Conv":
        out, weight = shapes.get(node.output[0]), shapes.get(node.input[1])
        if not out or not weight or 0 in out or 0 in weight:
            return None
        # every output element: C_in/groups × kh × kw multiply-adds (weight is [C_out, C_in/g, kh, kw])
        return 2.0 * float(np.prod(out)) * float(np.prod(weight[1:]))
    a, out = shapes.get(node.input[0]), shapes.get(node.output[0])
    if not a or not out or 0 in a or 0 in out:
        return None
    inner = a[-1]
    if node.op_type == "Gemm":
        trans_a = next((attr.i for attr in node.attribute if attr.name == "transA"), 0)
        inner = a[0] if trans_a else a[-1]
    return 2.0 * float(np.prod(out)) * float(inner)
