"""Which model names are valid for which task and type, and the identity of a validated model."""

from __future__ import annotations

from dataclasses import dataclass

from immich_ml.errors import UnknownModel
from immich_ml.models.constants import (
    INSIGHTFACE_MODELS,
    MCLIP_MODELS,
    OPENCLIP_MODELS,
    PADDLE_MODELS,
    STARTER_CLIP_MODELS,
    STARTER_FACE_MODELS,
    ModelSource,
    clean_name,
    is_starter,
    model_source,
)
from immich_ml.schemas import ModelTask, ModelType

# Families each (task, type) accepts, as in Immich's get_model_class.
_ACCEPTS: dict[tuple[ModelTask, ModelType], frozenset[ModelSource]] = {
    (ModelTask.SEARCH, ModelType.VISUAL): frozenset({ModelSource.OPENCLIP, ModelSource.MCLIP}),
    (ModelTask.SEARCH, ModelType.TEXTUAL): frozenset({ModelSource.OPENCLIP, ModelSource.MCLIP}),
    (ModelTask.FACIAL_RECOGNITION, ModelType.DETECTION): frozenset({ModelSource.INSIGHTFACE}),
    (ModelTask.FACIAL_RECOGNITION, ModelType.RECOGNITION): frozenset({ModelSource.INSIGHTFACE}),
    (ModelTask.OCR, ModelType.DETECTION): frozenset({ModelSource.PADDLE}),
    (ModelTask.OCR, ModelType.RECOGNITION): frozenset({ModelSource.PADDLE}),
}

# What an error message suggests: Immich's default for the task first, then the offline starters.
_SUGGEST: dict[ModelTask, tuple[str, ...]] = {
    ModelTask.SEARCH: ("ViT-B-32__openai", *sorted(STARTER_CLIP_MODELS)),
    ModelTask.FACIAL_RECOGNITION: ("buffalo_l", *sorted(STARTER_FACE_MODELS)),
    # Short enough to list whole: Immich's default first.
    ModelTask.OCR: ("PP-OCRv5_mobile", *sorted(PADDLE_MODELS - {"PP-OCRv5_mobile"})),
}
_COUNTS: dict[ModelTask, int] = {
    ModelTask.SEARCH: len(OPENCLIP_MODELS | MCLIP_MODELS | STARTER_CLIP_MODELS),
    ModelTask.FACIAL_RECOGNITION: len(INSIGHTFACE_MODELS | STARTER_FACE_MODELS),
    ModelTask.OCR: len(PADDLE_MODELS),
}


@dataclass(frozen=True)
class ModelSpec:
    """A validated model: Immich's cleaned ``name``, what it does, and its family."""

    name: str
    task: ModelTask
    type: ModelType
    source: ModelSource

    @property
    def starter(self) -> bool:
        """Offline starter model: installed locally, never downloaded."""
        return is_starter(self.name)

    @property
    def label(self) -> str:
        """``task/name/type``, as logs and health show it."""
        return f"{self.task.value}/{self.name}/{self.type.value}"


def resolve(model_name: str, task: ModelTask, model_type: ModelType) -> ModelSpec:
    """Validate ``model_name`` for ``task``/``model_type``; raise :class:`UnknownModel` with suggestions."""
    accepted = _ACCEPTS.get((task, model_type))
    if accepted is None:
        raise UnknownModel(f"Task {task.value} has no model type {model_type.value}.")
    name = clean_name(model_name)
    source = model_source(name) if name else None
    if source is None or source not in accepted:
        suggestions = ", ".join(_SUGGEST[task])
        what = "Unknown model" if source is None else "Model"
        shown = model_name if len(model_name) <= 80 else model_name[:77] + "..."
        raise UnknownModel(
            f"{what} {shown!r} cannot be used for {task.value} {model_type.value}. "
            f"Valid names include {suggestions} ({_COUNTS[task]} in all; see README 'Models' for the "
            "full list)."
        )
    if task == ModelTask.OCR and model_type == ModelType.DETECTION:
        # Language variants (EN__PP-OCRv5_mobile ...) share one detector, cached and loaded once.
        name = name.split("__")[-1]
    return ModelSpec(name, task, model_type, source)
