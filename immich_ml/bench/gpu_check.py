"""GPU throughput check: CLIP ViT-B-32 image embeddings at batch 1 vs cross-request batching.

    python -m immich_ml.bench.gpu_check --out gpu-report [--device-id 0] [--seconds 20]

Runs the CLIP image model of one worker in-process on ``cuda:<id>`` with
``MACHINE_LEARNING_DEVICE_STRICT`` (a fallback off the GPU fails the check), 64 request threads
sending pre-decoded photos, for three cases: no batching (batch 1, the reference), dynamic
batching at FP32, dynamic batching at FP16 (``MODEL_PRECISION=FP16``). The same run measures the
GPU's FP16 matrix throughput (a large MatMul through ONNX Runtime's CUDA provider) and turns it
into a compute floor for the model (``GFLOP per image / TFLOP/s``). Goals from issue 13:
batched ≥ 10× batch 1, and ≥ 50 % of the FP16 floor. Writes ``gpu_check.json`` and
``gpu_check.png`` to ``--out``; exits 1 when a goal is missed or anything ran off the GPU.
``--cpu-dry-run`` runs the same code on the CPU provider with small sizes (to check the script
itself on a machine without a GPU; its figures mean nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from immich_ml.backends.base import Target
from immich_ml.bench.batchable import batchable_cache
from immich_ml.bench.floor import model_gflop
from immich_ml.config import MaxBatchSize, Settings
from immich_ml.models import starter
from immich_ml.models.base import ModelRequest
from immich_ml.models.cache import ModelStore
from immich_ml.models.catalog import resolve
from immich_ml.models.manager import ModelManager
from immich_ml.models.timing import Stages
from immich_ml.schemas import ModelTask, ModelType

CONCURRENCY = 64


def fp16_matmul_tflops(device_id: str, n: int = 8192, repeats: int = 20, provider: str = "CUDAExecutionProvider") -> float:
    """Best FP16 ``n``×``n`` MatMul rate through ORT's CUDA provider, inputs already on the GPU."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT16, [n, n]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT16, [n, n])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT16, [n, n])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    options = {"device_id": device_id} if provider == "CUDAExecutionProvider" else {}
    session = ort.InferenceSession(model.SerializeToString(), providers=[(provider, options)])
    if session.get_providers()[0] != provider:
        raise SystemExit(f"the FP16 floor did not run on {provider}")
    where = "cuda" if provider == "CUDAExecutionProvider" else "cpu"
    rng = np.random.default_rng(0)
    a = ort.OrtValue.ortvalue_from_numpy(rng.random((n, n), dtype=np.float32).astype(np.float16), where, int(device_id))
    b = ort.OrtValue.ortvalue_from_numpy(rng.random((n, n), dtype=np.float32).astype(np.float16), where, int(device_id))
    binding = session.io_binding()
    binding.bind_ortvalue_input("a", a)
    binding.bind_ortvalue_input("b", b)
    binding.bind_output("c", where, int(device_id))
    session.run_with_iobinding(binding)
    best = float("inf")
    for _ in range(repeats):
        binding.synchronize_inputs()
        started = time.perf_counter()
        session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        best = min(best, time.perf_counter() - started)
    return 2.0 * n**3 / best / 1e12


def photos(cache: Path, size: int = 256) -> list[Any]:
    """The starter photos, decoded and resized once (the check measures the model, not JPEG)."""
    from PIL import Image

    out = []
    for path in starter.photos(cache).values():
        with Image.open(path) as image:
            out.append(np.asarray(image.convert("RGB").resize((size, size))))
    return out


def throughput(settings: Settings, target: Target, images: list[Any], seconds: float) -> dict[str, Any]:
    """Images per second of the CLIP visual model at CONCURRENCY request threads for ``seconds``."""
    manager = ModelManager(settings, target, ModelStore(settings))
    model = manager.get(resolve(starter.CLIP_MODEL, ModelTask.SEARCH, ModelType.VISUAL))
    model.load()
    for image in images:
        model.predict(ModelRequest(image=image), Stages())
    stop = time.perf_counter() + seconds
    counts = [0] * CONCURRENCY
    latencies: list[float] = []
    lock = threading.Lock()

    def run(index: int) -> None:
        mine = []
        while time.perf_counter() < stop:
            started = time.perf_counter()
            model.predict(ModelRequest(image=images[(index + counts[index]) % len(images)]), Stages())
            mine.append(time.perf_counter() - started)
            counts[index] += 1
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(CONCURRENCY)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    status = model.status(0)
    manager.close()
    wanted = "CUDAExecutionProvider" if target.kind == "cuda" else "CPUExecutionProvider"
    if status["provider"] != wanted or status["fallback_reason"]:
        raise SystemExit(f"CLIP visual did not run on {wanted}: {status}")
    batching = status["batching"] or {}
    return {
        "images_per_s": sum(counts) / wall,
        "requests": sum(counts),
        "p50_ms": float(np.percentile(latencies, 50) * 1000),
        "p95_ms": float(np.percentile(latencies, 95) * 1000),
        "mean_batch": (batching["items"] / batching["batches"]) if batching.get("batches") else 1.0,
        "precision": status["precision"],
        "provider": status["provider"],
        "oom": status["oom"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cache", type=Path, default=Path(".cache/models"))
    parser.add_argument("--device-id", default="0")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--wait-ms", type=float, default=5.0)
    parser.add_argument("--cpu-dry-run", action="store_true")
    args = parser.parse_args()
    kind = "cpu" if args.cpu_dry_run else "cuda"
    target = Target(kind, args.device_id)
    args.out.mkdir(parents=True, exist_ok=True)
    cache = batchable_cache(args.cache, args.out / "cache", (starter.CLIP_MODEL,))
    images = photos(args.cache)
    base = Settings(cache_folder=cache, device=kind, device_strict=True, model_ttl=0,
                    max_batch_size=MaxBatchSize(clip=CONCURRENCY), request_threads=CONCURRENCY)
    tflops = (fp16_matmul_tflops(args.device_id, n=512, repeats=3, provider="CPUExecutionProvider")
              if args.cpu_dry_run else fp16_matmul_tflops(args.device_id))
    gflop = model_gflop(cache / "clip" / starter.CLIP_MODEL / "visual" / "model.onnx") or float("nan")
    floor = tflops * 1e3 / gflop
    cases = {
        "batch1_fp32": throughput(replace(base, batch_wait_ms=0.0), target, images, args.seconds),
        "batched_fp32": throughput(replace(base, batch_wait_ms=args.wait_ms), target, images, args.seconds),
        "batched_fp16": throughput(replace(base, batch_wait_ms=args.wait_ms, model_precision="FP16"),
                                   target, images, args.seconds),
    }
    reference = cases["batch1_fp32"]["images_per_s"]
    best = max(c["images_per_s"] for c in cases.values())
    report = {
        "model": starter.CLIP_MODEL, "concurrency": CONCURRENCY, "wait_ms": args.wait_ms,
        "fp16_matmul_tflops": tflops, "model_gflop_per_image": gflop, "fp16_floor_images_per_s": floor,
        "cases": cases,
        "speedup_vs_batch1": best / reference,
        "fraction_of_fp16_floor": best / floor,
        "goals": {"speedup>=10": best / reference >= 10, "floor>=0.5": best / floor >= 0.5},
        "host": {"cpus": os.cpu_count()},
        "dry_run_on_cpu": args.cpu_dry_run,
    }
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2))
    _plot(report, args.out / "gpu_check.png")
    print(json.dumps({k: v for k, v in report.items() if k != "cases"}, indent=2))
    return 0 if all(report["goals"].values()) else 1


def _plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [*report["cases"], "FP16 floor"]
    values = [c["images_per_s"] for c in report["cases"].values()] + [report["fp16_floor_images_per_s"]]
    figure, axis = plt.subplots(figsize=(7, 4))
    axis.bar(names, values, color=["#888", "#36c", "#3a3", "#c33"])
    axis.set_ylabel("images / s")
    axis.set_title(f"{report['model']} at concurrency {report['concurrency']}: "
                   f"{report['speedup_vs_batch1']:.1f}× batch 1, {100 * report['fraction_of_fp16_floor']:.0f}% of floor")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


if __name__ == "__main__":
    sys.exit(main())
