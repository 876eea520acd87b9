"""Helpers shared by the GPU tests (fixtures and the skip rule live in conftest.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from immich_ml.backends.base import Target
from immich_ml.config import Settings
from immich_ml.pipeline import Pipeline
from immich_ml.schemas import parse_entries

DEVICE_ID = "0"


def cuda_settings(cache: Path, **changes: Any) -> Settings:
    return replace(Settings(cache_folder=cache, device="cuda", device_strict=True, model_ttl=0), **changes)


@contextmanager
def engine(cache: Path, kind: str, **changes: Any) -> Iterator[Pipeline]:
    settings = cuda_settings(cache, **changes) if kind == "cuda" else replace(
        Settings(cache_folder=cache, model_ttl=0), **changes
    )
    pipeline = Pipeline(settings, Target(kind, DEVICE_ID))
    try:
        yield pipeline
    finally:
        pipeline.close()


def assert_all_on_cuda(pipeline: Pipeline) -> None:
    for model in pipeline.status():
        if model["state"] == "loaded":
            assert model["provider"] == "CUDAExecutionProvider" and not model["fallback_reason"], model


def entries(raw: dict[str, Any]) -> Any:
    return parse_entries(json.dumps(raw))


def cosine(a: str | list[float], b: str | list[float]) -> float:
    x = np.array(json.loads(a) if isinstance(a, str) else a)
    y = np.array(json.loads(b) if isinstance(b, str) else b)
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))


def gpu_memory_mib(pid: int) -> float | None:
    """GPU memory this process holds (MiB), from nvidia-smi; ``None`` when it cannot tell."""
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return None
    out = subprocess.run(
        [tool, "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
        capture_output=True, text=True, check=False,
    ).stdout
    for line in out.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) == 2 and fields[0] == str(pid):
            return float(fields[1])
    return None
