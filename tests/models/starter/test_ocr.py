"""The installed ``PP-OCRv5_mobile`` starter: pinned files in Immich's layout, the charset where upstream reads it."""

from __future__ import annotations

from pathlib import Path

import onnx
import onnxruntime as ort
import pytest

from immich_ml.models.ocr.charset import decoding_charset, read_dictionary
from immich_ml.models.starter import fetch, ocr


@pytest.fixture(scope="module")
def model_dir(starter_cache: Path) -> Path:
    return starter_cache / "ocr" / ocr.MODEL_NAME


def test_files_have_pinned_digests(model_dir: Path) -> None:
    assert fetch.sha256_file(model_dir / "detection" / "model.onnx") == ocr.DETECTOR_ONNX.sha256
    assert fetch.sha256_file(model_dir / "recognition" / "model.onnx") == ocr.RECOGNIZER_WITH_CHARSET_SHA256


def test_charset_is_in_the_metadata_and_fits_the_classes(model_dir: Path) -> None:
    path = model_dir / "recognition" / "model.onnx"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    stored = session.get_modelmeta().custom_metadata_map["character"].splitlines()  # how RapidOCR reads it
    assert len(stored) == ocr.DICTIONARY_ENTRIES
    assert read_dictionary(path) == stored
    assert len(decoding_charset(stored)) == session.get_outputs()[0].shape[-1] == 18385
    assert session.get_inputs()[0].shape[1:3] == [3, 48]


def test_appending_keeps_the_original_model(model_dir: Path) -> None:
    original = onnx.ModelProto()
    original.ir_version = 8
    original.producer_name = "test"
    data = original.SerializeToString()
    dictionary = "\n".join(f"c{i}" for i in range(ocr.DICTIONARY_ENTRIES)).encode()
    merged = onnx.load_from_string(ocr.with_charset(data, dictionary))
    assert merged.producer_name == "test" and merged.ir_version == 8
    assert [p.key for p in merged.metadata_props] == ["character"]
    with pytest.raises(ValueError, match="entries"):
        ocr.with_charset(data, b"a\nb\n")


def test_detector_is_the_wheels_file_unchanged(model_dir: Path) -> None:
    session = ort.InferenceSession(str(model_dir / "detection" / "model.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].name == "x"
    assert session.get_inputs()[0].shape[1] == 3 and session.get_outputs()[0].shape[1] == 1
