"""Optional per-model metadata written by the starter models: ``<type>/immich_ml.json``.

Immich's own face models carry no such file and use InsightFace's fixed normalisation. The starter
models come from other projects whose graphs expect other input scaling (SFace takes raw 0..255 RGB),
so their folder says so: ``{"mean": 0.0, "std": 1.0}``, meaning input = (pixel - mean) / std.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

METADATA_FILE = "immich_ml.json"


@dataclass(frozen=True)
class Normalization:
    """Input value = (pixel - mean) / std, pixel in 0..255, the same for the three channels."""

    mean: float
    std: float


def read_normalization(directory: Path, default: Normalization) -> Normalization:
    """``mean``/``std`` from ``directory/immich_ml.json`` if the file exists, else ``default``.

    A present but unreadable file raises (ValueError/OSError), which the loader treats as a broken model.
    """
    path = directory / METADATA_FILE
    if not path.is_file():
        return default
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object")
    mean = _scalar(data.get("mean", default.mean), "mean", path)
    std = _scalar(data.get("std", default.std), "std", path)
    if std == 0:
        raise ValueError(f"{path}: std must not be 0")
    return Normalization(mean, std)


def _scalar(value: object, key: str, path: Path) -> float:
    if isinstance(value, list) and value and all(v == value[0] for v in value):
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{path}: {key} must be one finite number, got {value!r}")
    return float(value)
