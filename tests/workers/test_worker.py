"""Worker-side helpers that run without spawning a process."""

from __future__ import annotations

from typing import Any

import pytest

from immich_ml.config import load_settings
from immich_ml.errors import InvalidImage
from immich_ml.workers import worker
from immich_ml.workers.protocol import WorkerSpec


def spec(env: dict[str, str] | None = None, **changes: Any) -> WorkerSpec:
    settings = load_settings(env or {})
    fields: dict[str, Any] = {
        "slot": 0, "role": "device", "device_id": "1", "kind": "auto", "settings": settings,
        "pipeline_factory": "pipeline_double:PipelineDouble", "log_level": 20,
    }
    fields.update(changes)
    return WorkerSpec(**fields)


def test_kind_comes_from_the_backend_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    from immich_ml.backends import registry

    seen: list[str] = []

    def detect(settings: Any) -> str:
        seen.append(settings.device)
        return "openvino"

    monkeypatch.setattr(registry, "detect_target_kind", detect)
    assert worker.resolve_kind(spec()) == "openvino"
    assert worker.resolve_kind(spec(kind="cuda")) == "openvino"
    assert seen == ["auto", "auto"]


def test_factory_paths_are_checked() -> None:
    from pipeline_double import PipelineDouble

    assert worker.load_factory("pipeline_double:PipelineDouble") is PipelineDouble
    with pytest.raises(ValueError, match="package.module:Name"):
        worker.load_factory("pipeline_double.PipelineDouble")
    with pytest.raises(ModuleNotFoundError):
        worker.load_factory("no_such_module_here:X")


def test_worker_settings_carry_device_id_and_preload_share() -> None:
    env = {
        "MACHINE_LEARNING_PRELOAD__CLIP__TEXTUAL": "t",
        "MACHINE_LEARNING_PRELOAD__CLIP__VISUAL": "v",
    }
    placed = frozenset({("clip", "textual")})
    on_gpu = worker.worker_settings(spec(env, cpu_placed=placed), "cuda")
    assert on_gpu.device_id == "1"
    assert (on_gpu.preload.clip_textual, on_gpu.preload.clip_visual) == ((), ("v",))
    # On the CPU the device worker keeps everything: there are no CPU workers to take over.
    on_cpu = worker.worker_settings(spec(env, cpu_placed=placed), "cpu")
    assert (on_cpu.preload.clip_textual, on_cpu.preload.clip_visual) == (("t",), ("v",))
    cpu_slot = worker.worker_settings(spec(env, role="cpu", cpu_placed=placed), "cpu")
    assert (cpu_slot.preload.clip_textual, cpu_slot.preload.clip_visual) == (("t",), ())


def test_counts_report_dependent_batch_sizes() -> None:
    faces = {"facial-recognition": [{}, {}, {}], "imageHeight": 1, "imageWidth": 1}
    ocr = {"ocr": {"text": ["a", "b"], "box": [], "boxScore": [], "textScore": []}}
    assert worker.produced_counts(faces) == {"facial-recognition/recognition": 3}
    assert worker.produced_counts(ocr) == {"ocr/recognition": 2}
    assert worker.produced_counts({"clip": "[1]"}) == {}


def test_unpicklable_errors_become_their_nearest_known_class() -> None:
    class Odd(InvalidImage):
        def __init__(self, message: str, extra: object) -> None:
            super().__init__(message)
            self.extra = extra

        def __reduce__(self) -> tuple[Any, ...]:
            return (type(self), (self.message, lambda: None))

    sent = worker.transportable_error(Odd("cannot decode", None))
    assert type(sent) is InvalidImage
    assert (sent.status, sent.kind, sent.message) == (400, "invalid_image", "cannot decode")
    kept = InvalidImage("fine")
    assert worker.transportable_error(kept) is kept


def test_freed_memory_is_returned_once_per_idle_period(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(worker, "release_memory", lambda: calls.append("trim") or "gc")
    server = worker._Server(spec(), "worker 0", object(), object())  # type: ignore[arg-type]
    server._trim_when_idle(0.0)
    assert calls == []  # nothing served since start
    server._served, server._last_done = 3, 0.0
    server._running = 1
    server._trim_when_idle(0.0)
    assert calls == []  # a request is running
    server._running = 0
    server._last_done = worker.time.monotonic()
    server._trim_when_idle(60.0)
    assert calls == []  # not idle long enough
    server._trim_when_idle(0.0)
    server._trim_when_idle(0.0)
    assert calls == ["trim"]  # once until more requests are served
    server._served = 4
    server._trim_when_idle(0.0)
    assert calls == ["trim", "trim"]
    server._control.shutdown()
