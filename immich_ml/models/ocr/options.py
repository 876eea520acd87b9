"""Per-request OCR options, parsed and validated on every call (never stored on the shared model).

Immich's server sends ``detection.options = {minScore, maxResolution}`` and ``recognition.options =
{minScore}``; upstream's service also understands ``scoreMode`` (``fast`` or ``slow``). The server
validates scores to 0.1-1 and ``maxResolution`` to an integer >= 1; this side accepts 0-1 and any
integer >= 1 and answers 422-style InvalidInput for anything else.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from immich_ml.errors import InvalidInput

DEFAULT_DETECTION_MIN_SCORE = 0.5
DEFAULT_MAX_RESOLUTION = 736
DEFAULT_RECOGNITION_MIN_SCORE = 0.9
SCORE_MODES = ("fast", "slow")

ScoreMode = Literal["fast", "slow"]


@dataclass(frozen=True)
class DetectionOptions:
    min_score: float = DEFAULT_DETECTION_MIN_SCORE
    max_resolution: int = DEFAULT_MAX_RESOLUTION
    score_mode: ScoreMode = "fast"


@dataclass(frozen=True)
class RecognitionOptions:
    min_score: float = DEFAULT_RECOGNITION_MIN_SCORE


def _score(options: Mapping[str, Any], default: float, what: str) -> float:
    value = options.get("minScore", default)
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not 0.0 <= float(value) <= 1.0
    ):
        raise InvalidInput(f"Option 'minScore' of OCR {what} must be a number from 0 to 1, got {value!r}.")
    return float(value)


def parse_detection(options: Mapping[str, Any], max_resolution: int = DEFAULT_MAX_RESOLUTION) -> DetectionOptions:
    """Detection options of one request; ``max_resolution`` is the service default when absent."""
    min_score = _score(options, DEFAULT_DETECTION_MIN_SCORE, "detection")
    resolution = options.get("maxResolution", max_resolution)
    if isinstance(resolution, float) and resolution.is_integer():
        resolution = int(resolution)
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise InvalidInput(f"Option 'maxResolution' must be an integer >= 1, got {resolution!r}.")
    mode = options.get("scoreMode", "fast")
    if mode not in SCORE_MODES:
        raise InvalidInput(f"Option 'scoreMode' must be one of {', '.join(SCORE_MODES)}, got {mode!r}.")
    return DetectionOptions(min_score, resolution, "slow" if mode == "slow" else "fast")


def parse_recognition(options: Mapping[str, Any]) -> RecognitionOptions:
    return RecognitionOptions(_score(options, DEFAULT_RECOGNITION_MIN_SCORE, "recognition"))
