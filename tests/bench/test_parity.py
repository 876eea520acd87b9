"""The speed settings keep the answers: fast JPEG decode vs full decode, INT8 vs FP32.

Real starter models on the benchmark's inputs (1440-px previews of the offline photos and the
4000×3000 phone photos). The starter CLIP has random weights, so next to the embedding cosine the
CLIP input tensor itself is compared.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from immich_ml.bench import parity
from immich_ml.bench.inputs import SEARCH_TEXTS, BenchImage, load_inputs
from immich_ml.bench.workloads import Workload, build_workloads
from immich_ml.config import Settings
from immich_ml.models.starter import CLIP_MODEL, FACE_MODEL


@pytest.fixture(scope="module")
def images(starter_cache: Path, photos: dict[str, Path]) -> list[BenchImage]:
    return load_inputs(starter_cache, photos)


def _workload(name: str, cache: Path, images: list[BenchImage]) -> Workload:
    return build_workloads([name], cache, clip_model=CLIP_MODEL, face_model=FACE_MODEL, images=images,
                           texts=SEARCH_TEXTS)[0]


@pytest.fixture(scope="module")
def fp32(starter_cache: Path) -> Settings:
    return Settings(cache_folder=starter_cache, model_ttl=0, model_precision="FP32")


def test_fast_decode_clip(starter_cache: Path, images: list[BenchImage], fp32: Settings) -> None:
    workload = _workload("clip-visual", starter_cache, images)
    result = parity.compare("fast_decode", workload, replace(fp32, fast_decode=False), replace(fp32, fast_decode=True))
    parity.clip_tensor_difference(workload.model_dir, [i.data for i in images], result)
    assert result.payloads == len(images) >= 10
    assert result.min_cosine >= 0.999, result.per_payload
    assert result.tensor_rel_rms is not None and result.tensor_rel_rms <= 0.03


def test_int8_clip(starter_cache: Path, images: list[BenchImage], fp32: Settings) -> None:
    previews = [i for i in images if i.kind == "preview"]
    for name, payloads in (("clip-visual", previews), ("clip-textual", previews)):
        workload = _workload(name, starter_cache, payloads)
        result = parity.compare("int8", workload, fp32, replace(fp32, model_precision="INT8"))
        assert result.min_cosine >= 0.99, (name, result.per_payload)


def test_int8_faces_are_the_same_faces(starter_cache: Path, images: list[BenchImage], fp32: Settings) -> None:
    chosen = [i for i in images if i.kind == "preview" or i.name == "phone-group"]
    workload = _workload("faces", starter_cache, chosen)
    result = parity.compare("int8", workload, fp32, replace(fp32, model_precision="INT8"))
    assert result.faces_a == result.faces_b == result.faces_matched >= 60  # 2 x 29 in the group photos
    assert result.max_box_shift_px <= 1.0
    assert result.min_cosine >= 0.99, result.per_payload
    assert result.identity_kept == result.faces_a  # every face still closest to itself
