"""GPU memory stays flat whatever the face count (and OCR crop shapes): the shape buckets keep
the runtime to a handful of shapes, so ORT's arena stops growing after the first pass."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from gpu_testing import DEVICE_ID, assert_all_on_cuda, cuda_settings, gpu_memory_mib

from immich_ml.backends.base import Target
from immich_ml.models import starter
from immich_ml.models.base import ModelRequest
from immich_ml.models.cache import ModelStore
from immich_ml.models.catalog import resolve
from immich_ml.models.manager import ModelManager
from immich_ml.models.timing import Stages
from immich_ml.ops.align import ARCFACE_TEMPLATE
from immich_ml.ops.detect import Detections
from immich_ml.schemas import ModelTask, ModelType

GROWTH_MIB = 16  # one allocator chunk of slack


def detections(count: int, size: int = 1024) -> Detections:
    rng = np.random.default_rng(count)
    landmarks = np.stack([ARCFACE_TEMPLATE * rng.uniform(0.6, 1.4) + rng.uniform(20, size - 200, 2)
                          for _ in range(count)]).astype(np.float32)
    boxes = np.concatenate([landmarks.min(axis=1) - 10, landmarks.max(axis=1) + 10], axis=1).astype(np.float32)
    return Detections(boxes, np.full(count, 0.9, np.float32), landmarks)


def test_face_recognition_memory_is_flat_across_face_counts(gpu_cache: Path) -> None:
    settings = cuda_settings(gpu_cache)
    manager = ModelManager(settings, Target("cuda", DEVICE_ID), ModelStore(settings))
    model = manager.get(resolve(starter.FACE_MODEL, ModelTask.FACIAL_RECOGNITION, ModelType.RECOGNITION))
    image = np.random.default_rng(0).integers(0, 256, (1024, 1024, 3), dtype=np.uint8)
    try:
        model.load()  # warm-up ran every bucket
        for count in (1, 2, 3, 5, 8, 16, 17):
            model.predict(ModelRequest(image=image, upstream=detections(count)), Stages())
        settled = gpu_memory_mib(os.getpid())
        for count in (29, 40, 7, 63, 1, 100, 11, 33, 64, 4):
            model.predict(ModelRequest(image=image, upstream=detections(count)), Stages())
        after = gpu_memory_mib(os.getpid())
        assert model.status(0)["provider"] == "CUDAExecutionProvider"
    finally:
        manager.close()
    if settled is None or after is None:
        pytest.skip("nvidia-smi cannot report this process's GPU memory")
    assert after - settled <= GROWTH_MIB, f"GPU memory grew from {settled} to {after} MiB over face counts"


def test_ocr_memory_is_flat_across_crop_shapes(gpu_cache: Path, photos: dict[str, Path]) -> None:
    pytest.importorskip("immich_ml.models.ocr", reason="OCR models are not part of this build yet")
    model = getattr(starter, "OCR_MODEL", None)
    if model is None:
        pytest.skip("no starter OCR model in this build")
    from gpu_testing import engine, entries

    request = entries({"ocr": {"detection": {"modelName": model}, "recognition": {"modelName": model}}})
    images = [p.read_bytes() for p in photos.values()]
    with engine(gpu_cache, "cuda") as gpu:
        for data in images:
            gpu.predict(request, image=data)
        settled = gpu_memory_mib(os.getpid())
        for data in images * 3:
            gpu.predict(request, image=data)
        after = gpu_memory_mib(os.getpid())
        assert_all_on_cuda(gpu)
    assert settled is not None and after is not None and after - settled <= GROWTH_MIB

