"""Real ORT CUDA out-of-memory: the CUDA provider's arena is capped (``gpu_mem_limit``) just above
the model's weights, so large batches fail with CUDA's own error text. The worker halves the batch,
then runs on the CPU; every request still gets the right answer and nothing gets stuck."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from gpu_testing import cosine, engine, entries

from immich_ml.backends import providers
from immich_ml.config import MaxBatchSize
from immich_ml.models import starter


@pytest.fixture
def arena_limit(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    limit = {"bytes": 0}
    real = providers.provider_options

    def capped(provider: str, *args: Any, **kwargs: Any) -> dict[str, str]:
        options = real(provider, *args, **kwargs)
        if provider == providers.CUDA and limit["bytes"]:
            options["gpu_mem_limit"] = str(limit["bytes"])
        return options

    monkeypatch.setattr(providers, "provider_options", capped)
    return limit


def test_cuda_oom_halves_then_falls_back_to_cpu(gpu_cache: Path, photos: dict[str, Path],
                                                arena_limit: dict[str, int]) -> None:
    visual = entries({"clip": {"visual": {"modelName": starter.CLIP_MODEL}}})
    images = [p.read_bytes() for p in photos.values()] * 9
    weights = (gpu_cache / "clip" / starter.CLIP_MODEL / "visual" / "model.onnx").stat().st_size
    with engine(gpu_cache, "cpu", batch_wait_ms=0.0) as cpu:
        want = {data: cpu.predict(visual, image=data)["clip"] for data in set(images)}
    triggered = []
    for factor in (1.05, 1.15, 1.3, 1.6):
        arena_limit["bytes"] = int(weights * factor)
        try:
            gpu_engine = engine(gpu_cache, "cuda", device_strict=False, batch_wait_ms=20.0,
                                max_batch_size=MaxBatchSize(clip=64), request_threads=64, warmup=False)
            with gpu_engine as gpu:
                try:
                    gpu.predict(visual, image=images[0])
                except Exception:  # noqa: BLE001 - the weights alone do not fit: try a larger cap
                    continue
                with ThreadPoolExecutor(64) as pool:
                    got = list(pool.map(lambda data: gpu.predict(visual, image=data)["clip"], images))
                status = next(m for m in gpu.status() if m["type"] == "visual")
        finally:
            arena_limit["bytes"] = 0
        assert status["provider"] == "CUDAExecutionProvider", status  # the model stays on the GPU
        assert all(cosine(want[data], g) >= 0.999 for data, g in zip(images, got, strict=True))
        oom = status["oom"]
        if oom["events"]:
            assert oom["retries"] > 0 or oom["cpu_runs"] > 0
            assert "memory" in (oom["last"] or "").lower()
            triggered.append((factor, oom))
    assert triggered, "no arena cap between the weights and 1.6× them made a batch of 64 run out of memory"
