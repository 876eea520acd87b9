"""Cross-request batching on the GPU: 64 concurrent requests share runs and match running alone."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gpu_testing import assert_all_on_cuda, cosine, engine, entries

from immich_ml.config import MaxBatchSize
from immich_ml.models import starter


def test_64_concurrent_images_run_in_large_batches(gpu_cache: Path, photos: dict[str, Path]) -> None:
    visual = entries({"clip": {"visual": {"modelName": starter.CLIP_MODEL}}})
    images = [path.read_bytes() for path in photos.values()] * 10
    with engine(gpu_cache, "cuda", batch_wait_ms=0.0) as alone:
        want = [alone.predict(visual, image=data)["clip"] for data in images[: len(photos)]]
    with engine(gpu_cache, "cuda", batch_wait_ms=20.0, max_batch_size=MaxBatchSize(clip=64),
                request_threads=64) as gpu:
        gpu.predict(visual, image=images[0])
        with ThreadPoolExecutor(64) as pool:
            got = list(pool.map(lambda data: gpu.predict(visual, image=data)["clip"], images))
        stats = next(m for m in gpu.status() if m["type"] == "visual")["batching"]
        assert_all_on_cuda(gpu)
    assert stats["items"] / stats["batches"] >= 8, stats
    assert all(cosine(want[i % len(want)], g) >= 0.999 for i, g in enumerate(got))
