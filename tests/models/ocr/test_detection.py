"""Text detector: bucket shapes, edge padding, where it runs on NPU boards, the detection-only answer."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from immich_ml.backends.base import Target
from immich_ml.config import Settings
from immich_ml.models.cache import ModelStore
from immich_ml.models.catalog import resolve
from immich_ml.models.ocr.detection import TextBoxes, TextDetector, replicate_edges, text_boxes_to_json
from immich_ml.models.ocr.recognition import TextRecognizer
from immich_ml.schemas import ModelTask, ModelType

DET = resolve("PP-OCRv5_mobile", ModelTask.OCR, ModelType.DETECTION)
REC = resolve("PP-OCRv5_mobile", ModelTask.OCR, ModelType.RECOGNITION)


def detector(starter_cache: Path, target: Target = Target("cpu"), **changes: object) -> TextDetector:
    settings = replace(Settings(cache_folder=starter_cache), **changes)  # type: ignore[arg-type]
    return TextDetector(DET, ModelStore(settings), settings, target)


def test_upstream_size_then_bucket(starter_cache: Path) -> None:
    model = detector(starter_cache)
    assert model.shape_for(3000, 4000, 736) == ((736, 992), (736, 1024))
    assert model.shape_for(240, 640, 736) == ((256, 640), (256, 640))
    assert model.shape_for(260, 560, 736) == ((256, 576), (256, 576))
    assert model.shape_for(4000, 3000, 736) == ((992, 736), (1024, 736))


def test_static_input_is_the_only_bucket(starter_cache: Path) -> None:
    model = detector(starter_cache)
    model._static = (640, 640)
    assert model.shape_for(3000, 4000, 736) == ((480, 640), (640, 640))
    assert model.shape_for(240, 640, 736) == ((256, 640), (640, 640))


def test_padding_replicates_the_last_row_and_column() -> None:
    buffer = np.full((1, 3, 6, 8), -9.0, np.float32)
    buffer[0, :, :4, :5] = np.arange(20, dtype=np.float32).reshape(4, 5)
    replicate_edges(buffer, 4, 5)
    assert (buffer[0, :, :4, 5:] == buffer[0, :, :4, 4:5]).all()
    assert (buffer[0, :, 4:, :] == buffer[0, :, 3:4, :]).all()


def test_detection_only_answer_is_normalized() -> None:
    boxes = np.array([[[10, 20], [110, 20], [110, 60], [10, 60]]], np.float32)
    found = TextBoxes(boxes, np.array([0.75], np.float32), 200, 400)
    assert text_boxes_to_json(found) == {"box": [0.025, 0.1, 0.275, 0.1, 0.275, 0.3, 0.025, 0.3], "boxScore": [0.75]}
    assert text_boxes_to_json(TextBoxes.empty(10, 10)) == {"box": [], "boxScore": []}


@pytest.mark.parametrize("kind", ["armnn", "rknn"])
@pytest.mark.parametrize("strict", [False, True])
def test_on_npu_boards_ocr_runs_on_onnx_runtime_and_says_why(starter_cache: Path, kind: str, strict: bool) -> None:
    """No ARM NN / RKNN export of OCR models exists: ONNX Runtime runs them, even in strict mode, and
    health's fallback_reason says why (upstream silently lands on the CPU)."""
    for cls, spec in ((TextDetector, DET), (TextRecognizer, REC)):
        settings = replace(Settings(cache_folder=starter_cache), device_strict=strict)
        model = cls(spec, ModelStore(settings), settings, Target(kind))
        model.load()
        try:
            status = model.status(0)
            assert status["provider"] == "CPUExecutionProvider" and status["requested"] == f"{kind}:0"
            assert f"OCR models run on ONNX Runtime on {kind} devices" in status["fallback_reason"]
        finally:
            model.unload(force=True)


def test_an_rknn_detector_export_runs_on_the_npu(
    tmp_path: Path, starter_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``detection/rknpu/<soc>/model.rknn`` is used on an RKNN board: here a 32×32 "detector" on the
    librknnrt test double (tests/backends/rknn_double) whose linear map marks dark pixels as text, so
    the compiled DB post-processing must find the one dark bar of the image."""
    import sys

    sys.path.insert(0, str(Path(__file__).parents[2] / "backends"))
    import rknn_double as rd

    from immich_ml.backends import rknn
    from immich_ml.pipeline import Pipeline
    from immich_ml.schemas import parse_entries

    library = rd.build(tmp_path / "double")
    side = 32
    pixels = side * side
    weights = np.zeros((pixels, pixels * 3), np.float32)
    for p in range(pixels):
        weights[p, p * 3 : p * 3 + 3] = -0.25  # NHWC input: the three channels of pixel p
    model = rd.DoubleModel(
        (rd.Tensor("x", (1, side, side, 3), rd.NHWC, rd.FLOAT32),),
        (rd.Tensor("prob", (1, 1, side, side), rd.UNDEFINED, rd.FLOAT32),),
        weights,
        np.full(pixels, 0.75, np.float32),
    )
    cache = tmp_path / "cache"
    folder = cache / "ocr" / "PP-OCRv5_mobile" / "detection"
    (folder / "rknpu" / "rk3588").mkdir(parents=True)
    (folder / "model.onnx").write_bytes((starter_cache / "ocr" / "PP-OCRv5_mobile" / "detection" / "model.onnx").read_bytes())
    (folder / "rknpu" / "rk3588" / "model.rknn").write_bytes(model.to_bytes())
    monkeypatch.setattr(rknn, "detect_soc", lambda *args: "rk3588")
    settings = Settings(cache_folder=cache, rknn_library=str(library), device="rknn")
    image = np.full((side, side, 3), 255, np.uint8)
    image[12:20, 4:28] = 0
    png = io.BytesIO()
    Image.fromarray(image).save(png, "PNG")
    pipeline = Pipeline(settings, Target("rknn"))
    try:
        answer = pipeline.predict(parse_entries('{"ocr": {"detection": {"modelName": "PP-OCRv5_mobile"}}}'),
                                  image=png.getvalue())["ocr"]
        status = [m for m in pipeline.status() if m["type"] == "detection"][0]
    finally:
        pipeline.close()
    assert status["provider"] == "rknn:rk3588" and status["fallback_reason"] is None
    assert len(answer["boxScore"]) == 1 and answer["boxScore"][0] > 0.5
    x1, y1, _, _, x3, y3, _, _ = (v * side for v in answer["box"])
    assert x1 <= 4 and y1 <= 12 and x3 >= 27 and y3 >= 19  # the bar, expanded by the unclip
