"""TensorRT provider on a real GPU (when the ORT build has it): the model runs on TensorRT (strict),
matches the CPU, and its engines are written next to the model and reused by the next load."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest
from gpu_testing import DEVICE_ID, cosine, entries

from immich_ml.backends.base import Target
from immich_ml.config import Settings
from immich_ml.models import starter
from immich_ml.pipeline import Pipeline


def test_tensorrt_engines_are_cached_next_to_the_model(gpu_cache: Path, photos: dict[str, Path]) -> None:
    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this ONNX Runtime build has no TensorRT provider")
    visual = entries({"clip": {"visual": {"modelName": starter.CLIP_MODEL}}})
    data = photos["chelsea"].read_bytes()
    cpu = Pipeline(Settings(cache_folder=gpu_cache, batch_wait_ms=0.0), Target("cpu"))
    want = cpu.predict(visual, image=data)["clip"]
    cpu.close()
    settings = Settings(cache_folder=gpu_cache, device="tensorrt", device_strict=True, model_ttl=0)
    cache = gpu_cache / "clip" / starter.CLIP_MODEL / "visual" / "tensorrt"
    loads = []
    for _ in range(2):  # the second pipeline is a restart: it must find the engines
        engine = Pipeline(settings, Target("tensorrt", DEVICE_ID))
        got = engine.predict(visual, image=data)["clip"]
        (status,) = engine.status()
        engine.close()
        assert status["provider"] == "TensorrtExecutionProvider" and not status["fallback_reason"], status
        assert cosine(want, got) >= 0.99  # FP16 engine
        loads.append(status["load_time_s"])
        engines = sorted(p.name for p in cache.iterdir() if p.suffix in (".engine", ".profile", ".timing"))
        assert engines, f"no TensorRT engine in {cache}"
    assert loads[1] < loads[0], f"the second load did not reuse the engines: {loads}"
