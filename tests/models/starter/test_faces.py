"""The installed ``scrfd_sface`` face model: pinned files, I/O, the SFace repair, and real weights at work."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import pytest
from PIL import Image

from immich_ml.models.starter import FACE_MODEL, faces, fetch

PROVIDERS = ["CPUExecutionProvider"]


@pytest.fixture(scope="module")
def model_dir(starter_cache: Path) -> Path:
    return starter_cache / "facial-recognition" / FACE_MODEL


@pytest.fixture(scope="module")
def detector(model_dir: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(model_dir / "detection" / "model.onnx"), providers=PROVIDERS)


@pytest.fixture(scope="module")
def recognizer(model_dir: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(model_dir / "recognition" / "model.onnx"), providers=PROVIDERS)


def test_files_have_pinned_digests(model_dir: Path) -> None:
    assert fetch.sha256_file(model_dir / "detection" / "model.onnx") == faces.SCRFD_ONNX.sha256
    assert fetch.sha256_file(model_dir / "recognition" / "model.onnx") == faces.SFACE_FIXED_SHA256


def test_metadata_states_the_normalization(model_dir: Path) -> None:
    detection = json.loads((model_dir / "detection" / faces.METADATA_FILE).read_text())
    recognition = json.loads((model_dir / "recognition" / faces.METADATA_FILE).read_text())
    assert detection["mean"] == [127.5] * 3 and detection["std"] == [128.0] * 3
    assert recognition["mean"] == [0.0] * 3 and recognition["std"] == [1.0] * 3
    for meta in (detection, recognition):
        assert meta["color"] == "RGB" and meta["layout"] == "NCHW"
        assert meta["source"] and meta["license"]
    assert "non-commercial" in detection["license"]


def test_detector_io(detector: ort.InferenceSession) -> None:
    [inp] = detector.get_inputs()
    assert (inp.name, inp.shape, inp.type) == ("input.1", [1, 3, 640, 640], "tensor(float)")
    outputs = {o.name: o.shape for o in detector.get_outputs()}
    for stride, anchors in ((8, 12800), (16, 3200), (32, 800)):
        assert outputs[f"score_{stride}"] == [1, anchors, 1]
        assert outputs[f"bbox_{stride}"] == [1, anchors, 4]
        assert outputs[f"kps_{stride}"] == [1, anchors, 10]
    assert len(outputs) == 9


def test_recognizer_io(recognizer: ort.InferenceSession) -> None:
    [inp] = recognizer.get_inputs()
    [out] = recognizer.get_outputs()
    assert (inp.name, inp.shape, inp.type) == ("data", ["batch", 3, 112, 112], "tensor(float)")
    assert (out.name, out.shape) == ("fc1", ["batch", 128])


def test_recognizer_normalizes_raw_pixels_itself(model_dir: Path) -> None:
    # Why the metadata says mean 0 / std 1: the graph starts with (data - 127.5) * (1/128).
    model = onnx.load(str(model_dir / "recognition" / "model.onnx"))
    constants = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    sub = next(n for n in model.graph.node if "data" in n.input)
    mul = next(n for n in model.graph.node if sub.output[0] in n.input)
    assert sub.op_type == "Sub" and mul.op_type == "Mul"
    assert float(constants[sub.input[1]].item()) == 127.5
    assert float(constants[mul.input[1]].item()) == 1 / 128


def _crops(photos: dict[str, Path]) -> npt.NDArray[np.float32]:
    images = [Image.open(photos[n]).convert("RGB").resize((112, 112)) for n in ("astronaut", "newton", "gauss")]
    images.append(images[0].transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    return np.stack([np.asarray(i, np.float32).transpose(2, 0, 1) for i in images])


def test_recognizer_batch_equals_single_runs(recognizer: ort.InferenceSession, photos: dict[str, Path]) -> None:
    batch = _crops(photos)
    together = recognizer.run(None, {"data": batch})[0]
    alone = np.concatenate([recognizer.run(None, {"data": batch[i : i + 1]})[0] for i in range(len(batch))])
    assert together.shape == (4, 128)
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-5 * float(np.abs(alone).max()))
    assert np.abs(together[0] - together[1]).max() > 0.1  # different faces, different rows


def test_shipped_sface_is_rejected_and_repair_only_drops_declarations(downloads: Path) -> None:
    shipped = fetch.read_member(faces.SFACE_ONNX, downloads)
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the shipped file makes ORT warn about every shadowed initializer
    as_shipped = ort.InferenceSession(shipped, options, providers=PROVIDERS)
    assert len(as_shipped.get_inputs()) == 30  # `data` plus 29 weights no node reads
    with pytest.raises(ValueError, match="Required inputs"):
        as_shipped.run(None, {"data": np.zeros((1, 3, 112, 112), np.float32)})
    fixed = faces.fix_sface(shipped)
    assert fetch.sha256_bytes(fixed) == faces.SFACE_FIXED_SHA256
    before, after = onnx.load_from_string(shipped), onnx.load_from_string(fixed)
    assert [n.SerializeToString() for n in after.graph.node] == [n.SerializeToString() for n in before.graph.node]
    consumed = {i for n in after.graph.node for i in n.input}
    assert [i.name for i in after.graph.input] == ["data"]
    assert all(t.name in consumed for t in after.graph.initializer)
    repaired = ort.InferenceSession(fixed, providers=PROVIDERS)
    assert repaired.run(None, {"data": np.zeros((2, 3, 112, 112), np.float32)})[0].shape == (2, 128)


def _best_face_score(detector: ort.InferenceSession, path: Path) -> float:
    """Letterbox into the top-left of 640x640, normalize per the metadata, return the top score."""
    image = Image.open(path).convert("RGB")
    scale = 640 / max(image.size)
    resized = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BILINEAR)
    canvas = np.zeros((640, 640, 3), np.float32)
    canvas[: resized.height, : resized.width] = np.asarray(resized, np.float32)
    blob = ((canvas - 127.5) / 128.0).transpose(2, 0, 1)[None]
    outputs = dict(zip([o.name for o in detector.get_outputs()], detector.run(None, {"input.1": blob}), strict=True))
    return max(float(outputs[f"score_{s}"].max()) for s in (8, 16, 32))


def test_real_detector_finds_faces_only_where_there_are_faces(
    detector: ort.InferenceSession, photos: dict[str, Path]
) -> None:
    for name in ("astronaut", "newton", "gauss", "solvay"):
        assert _best_face_score(detector, photos[name]) > 0.6, name
    for name in ("chelsea", "coffee"):
        assert _best_face_score(detector, photos[name]) < 0.4, name
