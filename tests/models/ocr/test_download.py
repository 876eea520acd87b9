"""OCR models come from RapidOCR's registry (URL + SHA256 per file), into Immich's layout, offline rules kept."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import render
from fake_registry import FakeRegistry

from immich_ml.backends.base import Target
from immich_ml.config import Settings
from immich_ml.errors import ModelUnavailable
from immich_ml.models.cache import ModelStore
from immich_ml.models.catalog import resolve
from immich_ml.models.constants import PADDLE_MODELS
from immich_ml.models.ocr import download
from immich_ml.pipeline import Pipeline
from immich_ml.schemas import ModelTask, ModelType, parse_entries

DET = "det/ch_PP-OCRv5_det_mobile.onnx"
REC_EN = "rec/en_PP-OCRv5_rec_mobile.onnx"


@pytest.mark.parametrize("name", sorted(PADDLE_MODELS))
def test_every_immich_name_has_registry_files(name: str) -> None:
    det = download.registry_file(name, ModelType.DETECTION)
    rec = download.registry_file(name, ModelType.RECOGNITION)
    kind = "server" if name.endswith("server") else "mobile"
    assert det.path == f"det/ch_PP-OCRv5_det_{kind}.onnx"
    language = name.split("__")[0].lower() if "__" in name else "ch"
    assert rec.path == f"rec/{language}_PP-OCRv5_rec_{kind}.onnx"
    assert len(rec.sha256) == len(det.sha256) == 64


def test_language_variants_share_the_detector() -> None:
    spec = resolve("EN__PP-OCRv5_mobile", ModelTask.OCR, ModelType.DETECTION)
    assert spec.name == "PP-OCRv5_mobile"
    assert resolve("EN__PP-OCRv5_mobile", ModelTask.OCR, ModelType.RECOGNITION).name == "EN__PP-OCRv5_mobile"


@pytest.fixture
def served(fake_registry: FakeRegistry, ocr_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> FakeRegistry:
    """The registry serves the starter's files under upstream's names, pinned to their digests."""
    for path, source in ((DET, "detection"), (REC_EN, "recognition")):
        data = (ocr_model_dir / source / "model.onnx").read_bytes()
        fake_registry.files[path] = data
        entry = download.RegistryFile(path, hashlib.sha256(data).hexdigest())
        if path == DET:
            monkeypatch.setitem(download.DETECTORS, "mobile", entry)
        else:
            monkeypatch.setitem(download.RECOGNIZERS, ("en", "mobile"), entry)
    return fake_registry


def settings_for(cache: Path, registry: FakeRegistry, **extra: object) -> Settings:
    return Settings(cache_folder=cache, ocr_model_url=registry.base_url, **extra)  # type: ignore[arg-type]


def test_download_then_no_network(served: FakeRegistry, cache: Path) -> None:
    store = ModelStore(settings_for(cache, served))
    for model_type in (ModelType.DETECTION, ModelType.RECOGNITION):
        for name in ("EN__PP-OCRv5_mobile", "EN__PP-OCRv5_mobile"):
            store.locate(resolve(name, ModelTask.OCR, model_type), ())
    assert (cache / "ocr" / "PP-OCRv5_mobile" / "detection" / "model.onnx").is_file()
    assert (cache / "ocr" / "EN__PP-OCRv5_mobile" / "recognition" / "model.onnx").is_file()
    assert [p.rsplit("/", 2)[-2:] for p in served.requests] == [["det", DET[4:]], ["rec", REC_EN[4:]]]
    # (The cross-process lock files under <cache>/.locks stay by design: models/cache.py FolderLock.)
    leftovers = [p.name for p in cache.rglob("*") if p.is_file() and p.name != "model.onnx" and p.parent.name != ".locks"]
    assert leftovers == []


def test_end_to_end_from_the_registry(served: FakeRegistry, cache: Path) -> None:
    pipeline = Pipeline(settings_for(cache, served), Target("cpu"))
    try:
        entries = parse_entries(json.dumps({"ocr": {
            "detection": {"modelName": "EN__PP-OCRv5_mobile"}, "recognition": {"modelName": "EN__PP-OCRv5_mobile"},
        }}))
        assert pipeline.predict(entries, image=render.sign())["ocr"]["text"] == [render.SIGN]
    finally:
        pipeline.close()


def test_digest_mismatch_leaves_nothing_behind(served: FakeRegistry, cache: Path) -> None:
    served.files[DET] = served.files[DET][:-10]
    store = ModelStore(settings_for(cache, served))
    with pytest.raises(ModelUnavailable, match="sha256") as caught:
        store.locate(resolve("PP-OCRv5_mobile", ModelTask.OCR, ModelType.DETECTION), ())
    target = cache / "ocr" / "PP-OCRv5_mobile" / "detection" / "model.onnx"
    assert str(target) in caught.value.message
    assert [p for p in cache.rglob("*") if p.is_file() and p.parent.name != ".locks"] == []


def test_missing_file_names_the_url_and_the_folder(served: FakeRegistry, cache: Path) -> None:
    del served.files[REC_EN]
    store = ModelStore(settings_for(cache, served))
    with pytest.raises(ModelUnavailable) as caught:
        store.locate(resolve("EN__PP-OCRv5_mobile", ModelTask.OCR, ModelType.RECOGNITION), ())
    message = caught.value.message
    assert "HTTP 404" in message and REC_EN in message
    assert str(cache / "ocr" / "EN__PP-OCRv5_mobile" / "recognition" / "model.onnx") in message


def test_offline_never_asks(served: FakeRegistry, cache: Path) -> None:
    store = ModelStore(settings_for(cache, served, hf_hub_offline=True))
    with pytest.raises(ModelUnavailable, match="HF_HUB_OFFLINE"):
        store.locate(resolve("PP-OCRv5_mobile", ModelTask.OCR, ModelType.DETECTION), ())
    assert served.requests == []


def test_cached_files_need_no_network(served: FakeRegistry, cache: Path, ocr_model_dir: Path) -> None:
    folder = cache / "ocr" / "PP-OCRv5_mobile" / "detection"
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes((ocr_model_dir / "detection" / "model.onnx").read_bytes())
    ModelStore(settings_for(cache, served, hf_hub_offline=True)).locate(
        resolve("PP-OCRv5_mobile", ModelTask.OCR, ModelType.DETECTION), ()
    )
    assert served.requests == []


def test_unknown_name_lists_every_valid_one() -> None:
    from immich_ml.errors import UnknownModel

    with pytest.raises(UnknownModel) as caught:
        resolve("PP-OCRv9_tiny", ModelTask.OCR, ModelType.DETECTION)
    assert all(name in caught.value.message for name in PADDLE_MODELS)
