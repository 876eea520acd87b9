"""Loading: once per model under concurrency, broken files cleared and fetched once more, clear errors."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from model_testing import closed_port_endpoint
from fakehub import FakeHub
from graphs import clip_repo, clip_visual, face_repo, write_repo

from immich_ml.backends import registry
from immich_ml.backends.base import Target
from immich_ml.config import Settings
from immich_ml.errors import ModelLoadError
from immich_ml.models.cache import ModelStore
from immich_ml.models.catalog import resolve
from immich_ml.models.manager import ModelManager
from immich_ml.schemas import ModelTask, ModelType

FACES = ModelTask.FACIAL_RECOGNITION
DETECTION = resolve("buffalo_l", FACES, ModelType.DETECTION)
VISUAL = resolve("ViT-B-32__openai", ModelTask.SEARCH, ModelType.VISUAL)


def manager(settings: Settings, endpoint: str | None = None) -> ModelManager:
    return ModelManager(settings, Target(), ModelStore(settings, endpoint=endpoint))


def count_opens(monkeypatch: pytest.MonkeyPatch, delay_s: float = 0.0) -> list[Any]:
    opened: list[Any] = []
    real = registry.open_session

    def spy(*args: Any, **kwargs: Any) -> Any:
        time.sleep(delay_s)
        session = real(*args, **kwargs)
        opened.append(session)
        return session

    monkeypatch.setattr(registry, "open_session", spy)
    return opened


def test_loads_once_under_concurrent_first_use(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    write_repo(ModelStore(settings).root(DETECTION), face_repo())
    opened = count_opens(monkeypatch, delay_s=0.2)
    model = manager(settings).get(DETECTION)
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def first_use() -> None:
        barrier.wait()
        try:
            model.load()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(opened) == 1 and model.loaded and model.state == "loaded"


def test_corrupt_model_is_cleared_and_fetched_once_more(
    settings: Settings, fake_hub: FakeHub, caplog: pytest.LogCaptureFixture
) -> None:
    fake_hub.add_repo("immich-app/buffalo_l", face_repo())
    root = write_repo(ModelStore(settings).root(DETECTION), face_repo())
    (root / "detection" / "model.onnx").write_bytes(b"\x08\x07truncated protobuf")
    model = manager(settings, fake_hub.endpoint).get(DETECTION)
    model.load()
    assert model.loaded
    assert sorted(fake_hub.downloaded()) == ["detection/model.onnx", "recognition/model.onnx"]
    assert (root / "detection" / "model.onnx").read_bytes() == face_repo()["detection/model.onnx"]
    assert "Clearing its cache folder" in caplog.text


def test_corrupt_config_is_cleared_and_fetched_once_more(settings: Settings, fake_hub: FakeHub) -> None:
    fake_hub.add_repo("immich-app/ViT-B-32__openai", clip_repo())
    root = write_repo(ModelStore(settings).root(VISUAL), clip_repo())
    (root / "visual" / "preprocess_cfg.json").write_text('{"size": ')
    model = manager(settings, fake_hub.endpoint).get(VISUAL)
    model.load()
    assert model.loaded and "visual/preprocess_cfg.json" in fake_hub.downloaded()


def test_second_failure_is_a_load_error(settings: Settings, fake_hub: FakeHub) -> None:
    broken = dict(face_repo())
    broken["detection/model.onnx"] = b"still not a model"
    fake_hub.add_repo("immich-app/buffalo_l", broken)
    write_repo(ModelStore(settings).root(DETECTION), broken)
    model = manager(settings, fake_hub.endpoint).get(DETECTION)
    with pytest.raises(ModelLoadError, match="Failed to load model 'buffalo_l'") as info:
        model.load()
    assert info.value.status == 500
    assert fake_hub.downloaded().count("detection/model.onnx") == 1  # one refetch, no loop
    assert model.state == "failed" and model.last_error is not None
    assert model.status(300)["last_error"] == model.last_error


def test_wrong_graph_is_not_mistaken_for_a_broken_file(settings: Settings, fake_hub: FakeHub) -> None:
    files = dict(face_repo())
    files["detection/model.onnx"] = clip_visual().SerializeToString()
    write_repo(ModelStore(settings).root(DETECTION), files)
    model = manager(settings, fake_hub.endpoint).get(DETECTION)
    with pytest.raises(ModelLoadError, match="Not an SCRFD face detector"):
        model.load()
    assert fake_hub.requests == []  # nothing cleared, nothing fetched


def test_broken_starter_model_is_not_deleted(settings: Settings) -> None:
    spec = resolve("scrfd_sface", FACES, ModelType.DETECTION)
    root = write_repo(ModelStore(settings).root(spec), {"detection/model.onnx": b"garbage"})
    with pytest.raises(ModelLoadError, match="starter install"):
        manager(settings).get(spec).load()
    assert (root / "detection" / "model.onnx").read_bytes() == b"garbage"


def test_failed_load_can_succeed_later(settings: Settings, cache: Path) -> None:
    model = manager(settings, closed_port_endpoint()).get(DETECTION)
    with pytest.raises(ModelLoadError):
        model.load()
    assert model.state == "failed"
    write_repo(ModelStore(settings).root(DETECTION), face_repo())
    model.load()
    assert model.loaded and model.last_error is None
