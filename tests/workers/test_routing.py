"""Slot plans and placement: Immich's DEVICE_IDS × WORKERS semantics and per-model placement."""

from __future__ import annotations

import pytest

from immich_ml.config import load_settings
from immich_ml.errors import SettingsError
from immich_ml.schemas import ModelTask, ModelType, parse_entries
from immich_ml.workers import routing

FACES = b'{"facial-recognition":{"detection":{"modelName":"f"},"recognition":{"modelName":"f"}}}'


def test_workers_are_dealt_device_ids_round_robin() -> None:
    settings = load_settings({"MACHINE_LEARNING_DEVICE_IDS": "0,1", "MACHINE_LEARNING_WORKERS": "3"})
    plans = routing.device_slots(settings)
    assert [(p.index, p.device_id, p.role) for p in plans] == [
        (0, "0", "device"), (1, "1", "device"), (2, "0", "device"),
    ]


def test_single_device_id_pins_every_worker() -> None:
    settings = load_settings({"MACHINE_LEARNING_DEVICE_IDS": "1", "MACHINE_LEARNING_WORKERS": "2"})
    assert [p.device_id for p in routing.device_slots(settings)] == ["1", "1"]


def test_recognition_follows_its_detection() -> None:
    settings = load_settings({"MACHINE_LEARNING_PLACEMENT__FACIAL_RECOGNITION__DETECTION": "cpu"})
    assert routing.cpu_placed(settings) == {
        ("facial-recognition", "detection"), ("facial-recognition", "recognition"),
    }
    assert routing.role_for(settings, parse_entries(FACES)) == "cpu"
    alone = load_settings({"MACHINE_LEARNING_PLACEMENT__FACIAL_RECOGNITION__RECOGNITION": "cpu"})
    assert routing.cpu_placed(alone) == frozenset()
    assert routing.placement_of(alone, ModelTask.FACIAL_RECOGNITION, ModelType.RECOGNITION) == "auto"


@pytest.mark.parametrize(
    ("device", "detected", "expected"),
    [("cuda", None, True), ("cpu", None, False), ("auto", None, None), ("auto", "cpu", False),
     ("auto", "openvino", True)],
)
def test_cpu_slots_only_when_the_device_is_not_the_cpu(
    device: str, detected: str | None, expected: bool | None
) -> None:
    settings = load_settings({
        "MACHINE_LEARNING_DEVICE": device, "MACHINE_LEARNING_PLACEMENT__CLIP__TEXTUAL": "cpu",
    })
    assert routing.needs_cpu_slots(settings, detected) is expected


def test_cpu_slot_count_and_ids() -> None:
    settings = load_settings({
        "MACHINE_LEARNING_PLACEMENT__CLIP__TEXTUAL": "cpu", "MACHINE_LEARNING_CPU_WORKERS": "2",
    })
    plans = routing.cpu_slots(settings, first_index=3)
    assert [(p.index, p.role, p.device_id, p.kind) for p in plans] == [
        (3, "cpu", "0", "cpu"), (4, "cpu", "1", "cpu"),
    ]
    assert routing.cpu_slots(load_settings({}), first_index=1) == []
    one = load_settings({"MACHINE_LEARNING_PLACEMENT__CLIP__TEXTUAL": "cpu"})
    assert len(routing.cpu_slots(one, first_index=1)) == 1


def test_mixed_requests_go_to_the_device_workers() -> None:
    settings = load_settings({"MACHINE_LEARNING_PLACEMENT__CLIP__TEXTUAL": "cpu"})
    text = parse_entries(b'{"clip":{"textual":{"modelName":"t"}}}')
    both = parse_entries(b'{"clip":{"textual":{"modelName":"t"},"visual":{"modelName":"t"}}}')
    assert routing.role_for(settings, text) == "cpu"
    assert routing.role_for(settings, both) == "device"


def test_preload_is_split_between_roles() -> None:
    settings = load_settings({
        "MACHINE_LEARNING_PLACEMENT__CLIP__TEXTUAL": "cpu",
        "MACHINE_LEARNING_PRELOAD__CLIP__TEXTUAL": "a,b",
        "MACHINE_LEARNING_PRELOAD__CLIP__VISUAL": "c",
        "MACHINE_LEARNING_PRELOAD__OCR__MAX_RESOLUTION": "1024",
    })
    placed = routing.cpu_placed(settings)
    cpu = routing.preload_for(settings, "cpu", placed)
    device = routing.preload_for(settings, "device", placed)
    assert (cpu.clip_textual, cpu.clip_visual) == (("a", "b"), ())
    assert (device.clip_textual, device.clip_visual) == ((), ("c",))
    assert cpu.ocr_max_resolution == device.ocr_max_resolution == 1024
    everything = routing.preload_for(settings, "device", frozenset())
    assert (everything.clip_textual, everything.clip_visual) == (("a", "b"), ("c",))


def test_placement_on_a_device_id() -> None:
    settings = load_settings({
        "MACHINE_LEARNING_DEVICE_IDS": "0,1",
        "MACHINE_LEARNING_WORKERS": "2",
        "MACHINE_LEARNING_PLACEMENT__CLIP__VISUAL": "cuda:1",
        "MACHINE_LEARNING_PLACEMENT__FACIAL_RECOGNITION__DETECTION": "0",
        "MACHINE_LEARNING_PRELOAD__CLIP__VISUAL": "v",
        "MACHINE_LEARNING_PRELOAD__FACIAL_RECOGNITION__DETECTION": "d",
        "MACHINE_LEARNING_PRELOAD__FACIAL_RECOGNITION__RECOGNITION": "r",
    })
    assert routing.device_placed(settings) == {
        ("clip", "visual"): "1",
        ("facial-recognition", "detection"): "0",
        ("facial-recognition", "recognition"): "0",  # follows its detection
    }
    visual = parse_entries(b'{"clip":{"visual":{"modelName":"v"}}}')
    text = parse_entries(b'{"clip":{"textual":{"modelName":"t"}}}')
    assert routing.device_for(settings, visual) == "1" and routing.device_for(settings, text) is None
    assert routing.cpu_placed(settings) == frozenset()
    on_1 = routing.preload_for(settings, "device", frozenset(), "1")
    on_0 = routing.preload_for(settings, "device", frozenset(), "0")
    assert (on_1.clip_visual, on_1.facial_recognition_detection) == (("v",), ())
    assert (on_0.clip_visual, on_0.facial_recognition_recognition) == ((), ("r",))
    assert routing.placed_on(settings, "0") == ("facial-recognition/detection", "facial-recognition/recognition")


@pytest.mark.parametrize("value", ["2", "cuda:7", "gpu1", "npu:1"])
def test_placement_on_an_unknown_device_id_stops_start_up(value: str) -> None:
    with pytest.raises(SettingsError, match="MACHINE_LEARNING_PLACEMENT__CLIP__VISUAL.*DEVICE_IDS \\(0, 1\\)"):
        load_settings({"MACHINE_LEARNING_DEVICE_IDS": "0,1", "MACHINE_LEARNING_PLACEMENT__CLIP__VISUAL": value})


def test_placement_on_a_device_without_a_worker_stops_start_up() -> None:
    env = {"MACHINE_LEARNING_DEVICE_IDS": "0,1", "MACHINE_LEARNING_PLACEMENT__FACIAL_RECOGNITION__DETECTION": "1"}
    with pytest.raises(SettingsError, match="MACHINE_LEARNING_PLACEMENT__FACIAL_RECOGNITION__DETECTION.*WORKERS to at least 2"):
        load_settings(env)
    assert load_settings({**env, "MACHINE_LEARNING_WORKERS": "2"}).placement.facial_recognition_detection == "1"
