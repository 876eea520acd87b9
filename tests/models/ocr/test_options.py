"""Per-request OCR options: defaults, validation, and the fixed shape sets."""

from __future__ import annotations

from typing import Any

import pytest

from immich_ml.errors import InvalidInput
from immich_ml.models.ocr import buckets
from immich_ml.models.ocr.options import DetectionOptions, RecognitionOptions, parse_detection, parse_recognition


def test_defaults_are_upstreams() -> None:
    assert parse_detection({}) == DetectionOptions(0.5, 736, "fast")
    assert parse_detection({}, 1024).max_resolution == 1024
    assert parse_recognition({}) == RecognitionOptions(0.9)


def test_server_options() -> None:
    assert parse_detection({"minScore": 0.3, "maxResolution": 1440, "scoreMode": "slow"}) == DetectionOptions(
        0.3, 1440, "slow"
    )
    assert parse_detection({"maxResolution": 640.0}).max_resolution == 640
    assert parse_recognition({"minScore": 0.8}).min_score == 0.8


@pytest.mark.parametrize(
    "options",
    [{"minScore": 1.5}, {"minScore": -0.1}, {"minScore": "0.5"}, {"minScore": True}, {"minScore": float("nan")},
     {"maxResolution": 0}, {"maxResolution": 12.5}, {"maxResolution": "736"}, {"scoreMode": "medium"}],
)
def test_bad_detection_options(options: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        parse_detection(options)


def test_bad_recognition_options() -> None:
    with pytest.raises(InvalidInput, match="recognition"):
        parse_recognition({"minScore": 2})


def test_detector_buckets_bound_every_size() -> None:
    seen = set()
    for side in range(32, 5000, 32):
        padded = buckets.bucket(side, buckets.DETECTOR_SIDES, buckets.DETECTOR_STEP_BEYOND)
        assert padded >= side and padded % 32 == 0
        assert padded - side <= 32 or side > 2048
        seen.add(padded)
    assert len(seen) <= len(buckets.DETECTOR_SIDES) + 1
    assert buckets.detector_bucket(736, 992) == (736, 1024)


def test_recognizer_widths_and_batches() -> None:
    assert buckets.recognizer_width(320) == 320
    assert buckets.recognizer_width(321) == 384
    assert buckets.recognizer_width(5000) == 5120
    assert all(b / a <= 1.2 for a, b in zip(buckets.RECOGNIZER_WIDTHS, buckets.RECOGNIZER_WIDTHS[1:]))
    assert buckets.batch_sizes(6) == (1, 2, 4, 6)
    assert [buckets.padded_batch(n, (1, 2, 4, 6)) for n in range(1, 7)] == [1, 2, 4, 4, 6, 6]
