"""GPU verification (marker ``gpu``): every test here runs on CUDA with
``MACHINE_LEARNING_DEVICE_STRICT``, so anything that falls back off the GPU fails instead of
passing slowly. Without a working CUDA provider the whole directory is skipped with the reason.
Run by ``scripts/gpu-check.sh``; not part of the CPU CI run's figures."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from gpu_testing import DEVICE_ID

from immich_ml.backends.base import Target
from immich_ml.config import Settings


@functools.cache
def cuda_unavailable() -> str | None:
    """Why CUDA cannot be tested here, or ``None`` when a one-node model really runs on it."""
    try:
        import onnxruntime as ort
    except ImportError:
        return "onnxruntime is not installed"
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return f"this ONNX Runtime build has no CUDA provider ({ort.get_available_providers()}); install immich-ml[cuda]"
    from immich_ml.backends import registry

    try:
        registry.self_test(Settings(device="cuda", device_strict=True), Target("cuda", DEVICE_ID))
    except Exception as exc:  # noqa: BLE001 - any failure means no usable GPU here
        return f"CUDA is listed but does not run: {exc}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    mine = [item for item in items if here in Path(str(item.fspath)).parents]
    for item in mine:
        item.add_marker(pytest.mark.gpu)
    if mine:
        reason = cuda_unavailable()
        if reason is not None:
            for item in mine:
                item.add_marker(pytest.mark.skip(reason=f"no GPU: {reason}"))


@pytest.fixture(scope="session")
def gpu_cache(starter_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The starter models with symbolic CLIP batch axes (Immich's exports have them too)."""
    from immich_ml.bench.batchable import batchable_cache
    from immich_ml.models import starter

    return batchable_cache(starter_cache, tmp_path_factory.mktemp("gpu-cache"), (starter.CLIP_MODEL,))
