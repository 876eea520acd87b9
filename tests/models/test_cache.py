"""Model cache layout (Immich's), path safety, and downloads against a local fake hub."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from model_testing import closed_port_endpoint, with_settings
from fakehub import FakeHub
from graphs import clip_repo, face_repo, write_repo

from immich_ml.config import Settings
from immich_ml.errors import ModelLoadError, ModelUnavailable, UnknownModel
from immich_ml.models.cache import ModelStore, rknn_soc
from immich_ml.models.catalog import ModelSpec, resolve
from immich_ml.models.constants import ModelSource
from immich_ml.schemas import ModelFormat, ModelTask, ModelType

FACES = ModelTask.FACIAL_RECOGNITION
DETECTION = resolve("buffalo_l", FACES, ModelType.DETECTION)
VISUAL = resolve("ViT-B-32__openai", ModelTask.SEARCH, ModelType.VISUAL)
TEXTUAL = resolve("ViT-B-32__openai", ModelTask.SEARCH, ModelType.TEXTUAL)
TEXT_FILES = ("config.json", "textual/tokenizer.json", "textual/tokenizer_config.json")


def raw_spec(name: str) -> ModelSpec:
    """A spec that skipped validation, to prove the store is safe on its own."""
    return ModelSpec(name, FACES, ModelType.DETECTION, ModelSource.INSIGHTFACE)


# --- layout ---------------------------------------------------------------------------------------


def test_layout_is_immichs(settings: Settings, cache: Path) -> None:
    store = ModelStore(settings)
    assert store.root(VISUAL) == cache.resolve() / "clip" / "ViT-B-32__openai"
    assert store.root(DETECTION) == cache.resolve() / "facial-recognition" / "buffalo_l"
    assert store.repo_id(DETECTION) == "immich-app/buffalo_l"
    write_repo(store.root(DETECTION), face_repo())
    files = store.locate(DETECTION, ())
    artifacts = files.artifacts()
    assert artifacts.onnx == cache.resolve() / "facial-recognition/buffalo_l/detection/model.onnx"
    assert artifacts.directory == artifacts.onnx.parent
    assert artifacts.armnn is None and artifacts.rknn is None


def test_revision_other_than_main_gets_its_own_folder(settings: Settings, cache: Path) -> None:
    store = ModelStore(with_settings(settings, model_revision="v2", model_organization="immich-testing"))
    assert store.root(DETECTION) == cache.resolve() / "facial-recognition" / "buffalo_l" / "v2"
    assert store.repo_id(DETECTION) == "immich-testing/buffalo_l"


def test_armnn_and_rknn_exports_are_found(settings: Settings) -> None:
    store = ModelStore(settings)
    root = write_repo(store.root(DETECTION), face_repo())
    (root / "detection" / "model.armnn").write_bytes(b"armnn")
    (root / "detection" / "rknpu" / "rk3588").mkdir(parents=True)
    (root / "detection" / "rknpu" / "rk3588" / "model.rknn").write_bytes(b"rknn")
    artifacts = store.locate(DETECTION, ()).artifacts()
    assert artifacts.armnn == root / "detection" / "model.armnn"
    assert artifacts.rknn == root / "detection" / "rknpu" / "rk3588" / "model.rknn"


@pytest.mark.parametrize(
    "name", ["..", ".", "", "../../etc", "/etc/passwd", "a\x00b", "a/b", "a\\b", "C:evil", " buffalo_l"]
)
def test_names_can_never_leave_the_cache(settings: Settings, name: str) -> None:
    with pytest.raises(UnknownModel):
        ModelStore(settings).root(raw_spec(name))


@pytest.mark.parametrize("revision", ["..", "../x", "/abs", "a/../../b", "x\x00", "a//b", "a\\b"])
def test_revisions_can_never_leave_the_cache(settings: Settings, revision: str) -> None:
    with pytest.raises(UnknownModel):
        ModelStore(with_settings(settings, model_revision=revision)).root(DETECTION)


def test_nested_revision_stays_inside(settings: Settings, cache: Path) -> None:
    store = ModelStore(with_settings(settings, model_revision="refs/pr/3"))
    assert store.root(DETECTION) == cache.resolve() / "facial-recognition/buffalo_l/refs/pr/3"


def test_symlink_out_of_the_cache_is_refused(settings: Settings, cache: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (cache / "facial-recognition").mkdir()
    (cache / "facial-recognition" / "buffalo_l").symlink_to(outside)
    with pytest.raises(UnknownModel, match="outside the cache"):
        ModelStore(settings).root(DETECTION)


# --- no network when the model is on disk ---------------------------------------------------------


def test_model_on_disk_makes_no_network_call(settings: Settings, fake_hub: FakeHub) -> None:
    store = ModelStore(settings, endpoint=fake_hub.endpoint)
    write_repo(store.root(TEXTUAL), clip_repo())
    files = store.locate(TEXTUAL, TEXT_FILES)
    assert files.format == ModelFormat.ONNX
    assert fake_hub.requests == []
    # An Immich cache works offline too: nothing listens on this endpoint.
    offline = ModelStore(settings, endpoint=closed_port_endpoint())
    assert offline.locate(VISUAL, ("visual/preprocess_cfg.json",)).root == store.root(VISUAL)


def test_starter_models_are_never_downloaded(settings: Settings, fake_hub: FakeHub, cache: Path) -> None:
    spec = resolve("scrfd_sface", FACES, ModelType.DETECTION)
    fake_hub.add_repo("immich-app/scrfd_sface", face_repo())
    with pytest.raises(ModelUnavailable, match="python -m immich_ml.models.starter install") as info:
        ModelStore(settings, endpoint=fake_hub.endpoint).locate(spec, ())
    assert str(cache.resolve()) in info.value.message
    assert fake_hub.requests == []


# --- downloads --------------------------------------------------------------------------------------


def hub_repo() -> dict[str, bytes]:
    files = dict(face_repo())
    files["detection/model.armnn"] = b"armnn binary"
    files["detection/rknpu/rk3588/model.rknn"] = b"rknn binary"
    files["recognition/model.armnn"] = b"armnn binary"
    return files


def test_download_once_and_only_needed_files(settings: Settings, fake_hub: FakeHub) -> None:
    fake_hub.add_repo("immich-app/buffalo_l", hub_repo())
    store = ModelStore(settings, endpoint=fake_hub.endpoint)
    files = store.locate(DETECTION, ())
    assert files.artifacts().onnx.read_bytes() == face_repo()["detection/model.onnx"]
    assert sorted(fake_hub.downloaded()) == ["detection/model.onnx", "recognition/model.onnx"]
    fake_hub.reset()
    again = ModelStore(settings, endpoint=fake_hub.endpoint)
    again.locate(DETECTION, ())
    again.locate(resolve("buffalo_l", FACES, ModelType.RECOGNITION), ())
    assert fake_hub.requests == []


@pytest.mark.parametrize(
    ("formats", "expected"),
    [
        ((ModelFormat.ARMNN, ModelFormat.ONNX), {"detection/model.onnx", "recognition/model.onnx",
                                                  "detection/model.armnn", "recognition/model.armnn"}),
        ((ModelFormat.RKNN, ModelFormat.ONNX), {"detection/model.onnx", "recognition/model.onnx",
                                                 "detection/rknpu/rk3588/model.rknn"}),
    ],
)
def test_accelerator_formats_fetch_their_files_only(
    settings: Settings, fake_hub: FakeHub, formats: tuple[ModelFormat, ...], expected: set[str]
) -> None:
    fake_hub.add_repo("immich-app/buffalo_l", hub_repo())
    store = ModelStore(settings, endpoint=fake_hub.endpoint, formats=formats)
    files = store.locate(DETECTION, ())
    assert set(fake_hub.downloaded()) == expected
    assert files.format == formats[0]


def test_missing_export_falls_back_to_onnx(
    settings: Settings, fake_hub: FakeHub, caplog: pytest.LogCaptureFixture
) -> None:
    fake_hub.add_repo("immich-app/buffalo_l", face_repo())
    store = ModelStore(settings, endpoint=fake_hub.endpoint, formats=(ModelFormat.ARMNN, ModelFormat.ONNX))
    assert store.locate(DETECTION, ()).format == ModelFormat.ONNX
    assert "ARMNN is available, but model 'buffalo_l' does not support it." in caplog.text


def test_onnx_on_disk_is_used_offline_when_the_export_cannot_be_fetched(settings: Settings) -> None:
    store = ModelStore(settings, endpoint=closed_port_endpoint(), formats=(ModelFormat.RKNN, ModelFormat.ONNX))
    write_repo(store.root(DETECTION), face_repo())
    assert store.locate(DETECTION, ()).format == ModelFormat.ONNX


def test_a_missing_export_is_asked_for_once(settings: Settings, fake_hub: FakeHub) -> None:
    fake_hub.add_repo("immich-app/buffalo_l", face_repo())
    store = ModelStore(settings, endpoint=fake_hub.endpoint, formats=(ModelFormat.ARMNN, ModelFormat.ONNX))
    store.locate(DETECTION, ())
    fake_hub.reset()
    for _ in range(3):  # every reload after a TTL eviction
        assert store.locate(DETECTION, ()).format == ModelFormat.ONNX
    assert fake_hub.requests == []


def test_rknn_exports_for_other_boards_count_as_fetched(settings: Settings, fake_hub: FakeHub) -> None:
    files = dict(face_repo())
    files["detection/rknpu/rk3566/model.rknn"] = b"rknn"
    files["detection/rknpu/rk3568/model.rknn"] = b"rknn"
    write_repo(ModelStore(settings).root(DETECTION), files)
    store = ModelStore(settings, endpoint=fake_hub.endpoint, formats=(ModelFormat.RKNN, ModelFormat.ONNX))
    files_found = store.locate(DETECTION, ())
    assert fake_hub.requests == []
    if rknn_soc() is None:  # not a Rockchip board: two exports, none known to be ours
        assert files_found.artifacts().rknn is None


def test_offline_and_missing_is_a_clear_error(settings: Settings, cache: Path) -> None:
    store = ModelStore(settings, endpoint=closed_port_endpoint())
    with pytest.raises(ModelUnavailable) as info:
        store.locate(DETECTION, ())
    message = info.value.message
    assert "buffalo_l" in message and "immich-app/buffalo_l" in message
    assert "internet" in message and str(cache.resolve() / "facial-recognition") in message
    assert info.value.status == 503


def test_unknown_repository_is_unavailable(settings: Settings, fake_hub: FakeHub) -> None:
    with pytest.raises(ModelUnavailable, match="immich-app/buffalo_l"):
        ModelStore(settings, endpoint=fake_hub.endpoint).locate(DETECTION, ())


def test_repository_without_the_needed_files(settings: Settings, fake_hub: FakeHub) -> None:
    fake_hub.add_repo("immich-app/ViT-B-32__openai", {"config.json": b"{}"})
    with pytest.raises(ModelUnavailable, match="visual/preprocess_cfg.json"):
        ModelStore(settings, endpoint=fake_hub.endpoint).locate(VISUAL, ("visual/preprocess_cfg.json",))


def test_partial_model_is_completed(settings: Settings, fake_hub: FakeHub) -> None:
    fake_hub.add_repo("immich-app/ViT-B-32__openai", clip_repo())
    store = ModelStore(settings, endpoint=fake_hub.endpoint)
    files = clip_repo()
    del files["textual/tokenizer.json"]
    write_repo(store.root(TEXTUAL), files)
    store.locate(TEXTUAL, TEXT_FILES)
    assert (store.root(TEXTUAL) / "textual" / "tokenizer.json").read_bytes() == clip_repo()["textual/tokenizer.json"]


# --- clearing --------------------------------------------------------------------------------------


def test_clear_removes_the_model_folder(settings: Settings) -> None:
    store = ModelStore(settings)
    root = write_repo(store.root(DETECTION), face_repo())
    store.clear(DETECTION)
    assert root.is_dir() and not any(root.iterdir())


def test_clear_replaces_a_file_with_a_folder(settings: Settings) -> None:
    store = ModelStore(settings)
    root = store.root(DETECTION)
    root.parent.mkdir(parents=True)
    root.write_bytes(b"not a folder")
    store.clear(DETECTION)
    assert root.is_dir()


def test_clear_refuses_when_rmtree_is_unsafe(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ModelStore(settings)
    root = write_repo(store.root(DETECTION), face_repo())
    monkeypatch.setattr(shutil.rmtree, "avoids_symlink_attacks", False)
    with pytest.raises(ModelLoadError, match="symlink"):
        store.clear(DETECTION)
    assert (root / "detection" / "model.onnx").is_file()


def test_clear_never_touches_starter_models(settings: Settings) -> None:
    spec = resolve("scrfd_sface", FACES, ModelType.DETECTION)
    store = ModelStore(settings)
    root = write_repo(store.root(spec), face_repo())
    store.clear(spec)
    assert (root / "detection" / "model.onnx").is_file()


def test_clear_of_a_missing_folder_only_warns(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    ModelStore(settings).clear(DETECTION)
    assert "does not exist" in caplog.text
