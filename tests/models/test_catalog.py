"""Validation of model names per task and type, with short, useful errors."""

from __future__ import annotations

import pytest

from immich_ml.errors import UnknownModel
from immich_ml.models.catalog import resolve
from immich_ml.models.constants import ModelSource
from immich_ml.schemas import ModelTask, ModelType

CLIP, FACES, OCR = ModelTask.SEARCH, ModelTask.FACIAL_RECOGNITION, ModelTask.OCR


def test_resolves_immich_names() -> None:
    spec = resolve("immich-app/ViT-B-32__openai", CLIP, ModelType.VISUAL)
    assert (spec.name, spec.source, spec.starter) == ("ViT-B-32__openai", ModelSource.OPENCLIP, False)
    assert spec.label == "clip/ViT-B-32__openai/visual"
    assert resolve("XLM-Roberta-Large-Vit-B-32", CLIP, ModelType.TEXTUAL).source == ModelSource.MCLIP
    assert resolve("buffalo_l", FACES, ModelType.RECOGNITION).source == ModelSource.INSIGHTFACE
    assert resolve("PP-OCRv5_mobile", OCR, ModelType.DETECTION).source == ModelSource.PADDLE
    assert resolve("scrfd_sface", FACES, ModelType.DETECTION).starter


@pytest.mark.parametrize(
    ("name", "task", "model_type"),
    [
        ("buffalo_l", CLIP, ModelType.VISUAL),
        ("ViT-B-32__openai", FACES, ModelType.DETECTION),
        ("ViT-B-32__openai", OCR, ModelType.RECOGNITION),
        ("not-a-model", CLIP, ModelType.TEXTUAL),
        ("", FACES, ModelType.DETECTION),
        ("buffalo_l", FACES, ModelType.VISUAL),
    ],
)
def test_rejects_wrong_names_and_combinations(name: str, task: ModelTask, model_type: ModelType) -> None:
    with pytest.raises(UnknownModel):
        resolve(name, task, model_type)


def test_error_lists_a_few_valid_names_not_all() -> None:
    with pytest.raises(UnknownModel) as info:
        resolve("ViT-B-33__openai", CLIP, ModelType.VISUAL)
    message = info.value.message
    assert "ViT-B-32__openai" in message and "ViT-B-32__nonsemantic" in message
    assert "README" in message
    assert "RN50__openai" not in message  # not the whole list
    assert len(message) < 400
    with pytest.raises(UnknownModel) as info:
        resolve("x" * 5000, FACES, ModelType.DETECTION)
    assert "buffalo_l" in info.value.message and "scrfd_sface" in info.value.message
    assert len(info.value.message) < 400
