"""Pure data shared by every layer: tasks, model types, request entries, response shapes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypedDict

import orjson

from immich_ml.errors import InvalidInput, InvalidRequest


class ModelTask(StrEnum):
    SEARCH = "clip"
    FACIAL_RECOGNITION = "facial-recognition"
    OCR = "ocr"


class ModelType(StrEnum):
    VISUAL = "visual"
    TEXTUAL = "textual"
    DETECTION = "detection"
    RECOGNITION = "recognition"


class ModelFormat(StrEnum):
    ONNX = "onnx"
    ARMNN = "armnn"
    RKNN = "rknn"


@dataclass(frozen=True)
class Entry:
    """One model to run for a request: ``entries[task][type] = {modelName, options}``."""

    name: str
    task: ModelTask
    type: ModelType
    options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.task.value, self.type.value, self.name)


# Which (task, type) needs the output of which other entry of the same request.
DEPENDENCIES: dict[tuple[ModelTask, ModelType], tuple[ModelTask, ModelType]] = {
    (ModelTask.FACIAL_RECOGNITION, ModelType.RECOGNITION): (
        ModelTask.FACIAL_RECOGNITION,
        ModelType.DETECTION,
    ),
    (ModelTask.OCR, ModelType.RECOGNITION): (ModelTask.OCR, ModelType.DETECTION),
}


# Entries of these types read the image; the others (textual) read the text.
IMAGE_TYPES = frozenset({ModelType.VISUAL, ModelType.DETECTION, ModelType.RECOGNITION})

# Immich's wording, kept so clients see the message they know.
PAYLOAD_MISSING = "Either image or text must be provided"


def missing_dependency(task: ModelTask, model_type: ModelType) -> InvalidInput:
    """The error for an entry sent without the entry it depends on (Immich's wording + the fix)."""
    needed_task, needed_type = DEPENDENCIES[(task, model_type)]
    return InvalidInput(
        f"Task {task.value} of type {model_type.value} depends on output of {needed_type.value}: "
        f"add entries[{needed_task.value!r}][{needed_type.value!r}] to the request."
    )


def check_request(entries: Iterable[Entry], *, has_image: bool, has_text: bool) -> None:
    """Raises InvalidInput (HTTP 400) when an entry's dependency is not requested too, or when the
    payload an entry reads (image or text) is missing. The server checks this before a request
    reaches a worker; the pipeline checks it again for callers that do not come through HTTP."""
    entries = tuple(entries)
    requested = {(e.task, e.type) for e in entries}
    for entry in entries:
        needed = DEPENDENCIES.get((entry.task, entry.type))
        if needed is not None and needed not in requested:
            raise missing_dependency(entry.task, entry.type)
        if not (has_image if entry.type in IMAGE_TYPES else has_text):
            raise InvalidInput(PAYLOAD_MISSING)


def _shown(name: str) -> str:
    """A client's name quoted for a message, cut to 80 characters (a key can be megabytes)."""
    return repr(name if len(name) <= 80 else name[:77] + "...")


def parse_entries(raw: str | bytes) -> tuple[Entry, ...]:
    """Parse the ``entries`` form field exactly as Immich sends it (``JSON.stringify`` of the request).

    Raises :class:`InvalidRequest` (HTTP 422, Immich's ``Invalid request format.``) for anything that
    is not ``{task: {type: {"modelName": str, "options"?: object}}}`` with known task and type names.
    """
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest("Invalid request format: 'entries' is not valid JSON.") from None
    if not isinstance(data, dict) or not data:
        raise InvalidRequest("Invalid request format: 'entries' must be a non-empty JSON object.")
    entries: list[Entry] = []
    for task_name, types in data.items():
        try:
            task = ModelTask(task_name)
        except ValueError:
            valid = ", ".join(t.value for t in ModelTask)
            raise InvalidRequest(
                f"Invalid request format: unknown task {_shown(task_name)} (valid: {valid})."
            ) from None
        if not isinstance(types, dict) or not types:
            raise InvalidRequest(f"Invalid request format: task {task_name!r} must map types to models.")
        for type_name, spec in types.items():
            try:
                model_type = ModelType(type_name)
            except ValueError:
                valid = ", ".join(t.value for t in ModelType)
                raise InvalidRequest(
                    f"Invalid request format: unknown type {_shown(type_name)} for task {task_name!r} "
                    f"(valid: {valid})."
                ) from None
            if not isinstance(spec, dict) or not isinstance(spec.get("modelName"), str):
                raise InvalidRequest(
                    f"Invalid request format: {task_name}.{type_name} needs a string 'modelName'."
                )
            options = spec.get("options") or {}
            if not isinstance(options, dict):
                raise InvalidRequest(
                    f"Invalid request format: {task_name}.{type_name}.options must be an object."
                )
            entries.append(Entry(spec["modelName"], task, model_type, dict(options)))
    return tuple(entries)


class BoundingBox(TypedDict):
    x1: float
    y1: float
    x2: float
    y2: float


class DetectedFace(TypedDict):
    boundingBox: BoundingBox
    embedding: str
    score: float


class OcrResult(TypedDict):
    text: list[str]
    box: list[float]
    boxScore: list[float]
    textScore: list[float]
