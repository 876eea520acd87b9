"""Which worker slots exist and which of them may serve a request.

Device slots follow Immich's ``MACHINE_LEARNING_DEVICE_IDS`` × ``MACHINE_LEARNING_WORKERS``
semantics: ``WORKERS`` processes, worker ``i`` on ``device_ids[i % len(device_ids)]``.

Per-model placement (``MACHINE_LEARNING_PLACEMENT__<TASK>__<TYPE>=cpu``) moves models to extra
CPU-only slots (``MACHINE_LEARNING_CPU_WORKERS``, at least one) so that, for example, text search
stays fast on the CPU while a GPU embeds images. A dependent model (face recognition, OCR
recognition) always runs where its detection runs: detection hands its crops over in-process.

A placement may also name a device id of ``MACHINE_LEARNING_DEVICE_IDS`` (``1`` or ``cuda:1``):
those models then run only on the device slots of that id (CLIP on GPU 1, faces on GPU 0), and
only those slots preload them. ``config`` rejects an id that is not in ``DEVICE_IDS``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from immich_ml.config import PreloadModels, Settings
from immich_ml.schemas import DEPENDENCIES, Entry, ModelTask, ModelType
from immich_ml.workers.protocol import Role

# Every (task, type) a placement setting exists for, in preload order.
PLACEABLE: tuple[tuple[ModelTask, ModelType], ...] = (
    (ModelTask.SEARCH, ModelType.TEXTUAL),
    (ModelTask.SEARCH, ModelType.VISUAL),
    (ModelTask.FACIAL_RECOGNITION, ModelType.DETECTION),
    (ModelTask.FACIAL_RECOGNITION, ModelType.RECOGNITION),
    (ModelTask.OCR, ModelType.DETECTION),
    (ModelTask.OCR, ModelType.RECOGNITION),
)


@dataclass(frozen=True)
class SlotPlan:
    """One worker process to keep running: its index, role, device id and accelerator kind."""

    index: int
    role: Role
    device_id: str
    kind: str


def placement_of(settings: Settings, task: ModelTask, model_type: ModelType) -> str:
    """``cpu``, ``auto`` or a device id for one model; dependents follow their dependency's placement."""
    task, model_type = DEPENDENCIES.get((task, model_type), (task, model_type))
    return settings.placement.for_model(task.value, model_type.value)


def cpu_placed(settings: Settings) -> frozenset[tuple[str, str]]:
    """``(task, type)`` pairs that run on CPU slots when the device is not the CPU."""
    return frozenset(
        (task.value, model_type.value)
        for task, model_type in PLACEABLE
        if placement_of(settings, task, model_type) == "cpu"
    )


def device_placed(settings: Settings) -> dict[tuple[str, str], str]:
    """``(task, type)`` → the device id it is pinned to (only models placed on a device id)."""
    pinned: dict[tuple[str, str], str] = {}
    for task, model_type in PLACEABLE:
        where = placement_of(settings, task, model_type)
        if where not in ("auto", "cpu"):
            pinned[(task.value, model_type.value)] = where
    return pinned


def device_for(settings: Settings, entries: Iterable[Entry]) -> str | None:
    """The device id a request must run on, or ``None`` when any device slot may serve it.

    Immich sends one task per request; should a request mix models pinned to different devices,
    the first pinned entry decides (its dependents must run in the same process anyway).
    """
    for entry in entries:
        where = placement_of(settings, entry.task, entry.type)
        if where not in ("auto", "cpu"):
            return where
    return None


def placed_on(settings: Settings, device_id: str) -> tuple[str, ...]:
    """``task/type`` of the models pinned to ``device_id`` (for /health and the start-up log)."""
    return tuple(sorted("/".join(pair) for pair, where in device_placed(settings).items() if where == device_id))


def device_slots(settings: Settings) -> list[SlotPlan]:
    """The ``WORKERS`` device slots, device ids dealt round-robin."""
    ids = settings.device_ids
    kind = settings.device
    return [SlotPlan(i, "device", ids[i % len(ids)], kind) for i in range(settings.workers)]


def cpu_slots(settings: Settings, first_index: int) -> list[SlotPlan]:
    """The CPU slots serving CPU-placed models (none when nothing is placed on the CPU)."""
    if not cpu_placed(settings):
        return []
    count = max(settings.cpu_workers, 1)
    return [SlotPlan(first_index + j, "cpu", str(j), "cpu") for j in range(count)]


def needs_cpu_slots(settings: Settings, device_kind: str | None) -> bool | None:
    """Whether CPU slots must run, ``None`` while the device kind is still unknown (``auto``).

    Placement on the CPU means nothing when the device slots already run on the CPU.
    """
    if not cpu_placed(settings):
        return False
    kind = settings.device if settings.device != "auto" else device_kind
    if kind is None:
        return None
    return kind != "cpu"


def role_for(settings: Settings, entries: Iterable[Entry]) -> Role:
    """``cpu`` when every entry of the request is placed on the CPU, else ``device``.

    Immich sends one task per request, so a request is either wholly CPU-placed or not; a mixed
    request (possible only from other clients) runs on the device slots, which can run anything.
    """
    roles = {placement_of(settings, entry.task, entry.type) for entry in entries}
    return "cpu" if roles == {"cpu"} else "device"


def preload_for(
    settings: Settings, role: Role, placed: frozenset[tuple[str, str]], device_id: str | None = None
) -> PreloadModels:
    """The share of ``settings.preload`` a slot of ``role`` loads, given the CPU-placed models.

    ``placed`` is empty when there are no CPU slots: device slots then preload everything. A
    device slot (``device_id``) leaves out models pinned to another device id.
    """
    preload = settings.preload
    pinned = device_placed(settings)

    def share(task: ModelTask, model_type: ModelType, names: tuple[str, ...]) -> tuple[str, ...]:
        key = (task.value, model_type.value)
        if role == "device" and device_id is not None and pinned.get(key, device_id) != device_id:
            return ()
        on_cpu = key in placed
        return names if (role == "cpu") == on_cpu else ()

    fr, clip, ocr = ModelTask.FACIAL_RECOGNITION, ModelTask.SEARCH, ModelTask.OCR
    return PreloadModels(
        clip_textual=share(clip, ModelType.TEXTUAL, preload.clip_textual),
        clip_visual=share(clip, ModelType.VISUAL, preload.clip_visual),
        facial_recognition_detection=share(
            fr, ModelType.DETECTION, preload.facial_recognition_detection
        ),
        facial_recognition_recognition=share(
            fr, ModelType.RECOGNITION, preload.facial_recognition_recognition
        ),
        ocr_detection=share(ocr, ModelType.DETECTION, preload.ocr_detection),
        ocr_recognition=share(ocr, ModelType.RECOGNITION, preload.ocr_recognition),
        ocr_max_resolution=preload.ocr_max_resolution,
    )
