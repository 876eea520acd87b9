"""immich_ml.backends.rknn: SoC detection, probe, model lookup, and RknnSession through bind()/run()
on the librknnrt test double (rknn_double/), laid out like Immich's model cache."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rknn_double as rd
from rknn_double.bridge_support import double, libs  # noqa: F401 - fixtures are found by name

from immich_ml.backends import rknn
from immich_ml.backends.base import ModelArtifacts, Session, SessionOptions, Target
from immich_ml.config import Settings
from immich_ml.errors import BackendError, BackendUnavailable, FormatUnavailable, ModelLoadError

SCRFD_LIKE = rd.make_model(
    [rd.Tensor("input.1", (1, 16, 16, 3), rd.NHWC, rd.FLOAT16)],
    [rd.Tensor("448", (32, 1), rd.UNDEFINED, rd.FLOAT16), rd.Tensor("451", (32, 4), rd.UNDEFINED, rd.FLOAT32)],
    seed=7,
)
FUSED = rd.make_model(  # Immich-style export with the normalization in the graph: custom string dims
    [rd.Tensor("image", (1, 8, 8, 3), rd.NHWC, rd.UINT8)],
    [rd.Tensor("embedding", (1, 6), rd.UNDEFINED, rd.FLOAT16)],
    custom='{"dims": [1, 8, 8, 3]}',
    seed=8,
)


def write_compatible(path: Path, *entries: str) -> Path:
    path.write_bytes(b"\0".join(e.encode() for e in entries) + b"\0")
    return path


def install(cache: Path, model: rd.DoubleModel, soc: str, name: str = "buffalo_s",
            model_type: str = "detection") -> ModelArtifacts:
    """Write ``model`` where Immich keeps RKNN exports and return the type folder's artifacts."""
    directory = cache / "facial-recognition" / name / model_type
    target = directory / "rknpu" / soc / "model.rknn"
    target.parent.mkdir(parents=True)
    target.write_bytes(model.to_bytes())
    return ModelArtifacts(directory=directory, onnx=directory / "model.onnx")


def session(artifacts: ModelArtifacts, double: rd.Double, soc: str = "rk3588", threads: int = 1,
            library: str | None = None) -> rknn.RknnSession:
    return rknn.RknnSession(artifacts, Settings(rknn_threads=threads), Target("rknn"),
                            SessionOptions(label="facial-recognition/buffalo_s/detection"),
                            library=library or double.path, soc=soc)


# ---- SoC, probe, paths, core masks --------------------------------------------------------------


@pytest.mark.parametrize(
    ("entries", "soc"),
    [(("radxa,rock-5b", "rockchip,rk3588"), "rk3588"),
     (("xunlong,orangepi-5", "rockchip,rk3588s"), "rk3588"),
     (("rockchip,rk3576-evb", "rockchip,rk3576"), "rk3576"),
     (("pine64,quartz64-a", "rockchip,rk3566"), "rk3566"),
     (("firefly,rk3568-roc-pc", "rockchip,rk3568"), "rk3568"),
     (("pine64,rockpro64", "rockchip,rk3399"), None),
     (("raspberrypi,5-model-b", "brcm,bcm2712"), None)],
)
def test_detect_soc_from_device_tree(tmp_path: Path, entries: tuple[str, ...], soc: str | None) -> None:
    assert rknn.detect_soc(write_compatible(tmp_path / "compatible", *entries)) == soc


def test_detect_soc_without_device_tree(tmp_path: Path) -> None:
    assert rknn.detect_soc(tmp_path / "missing") is None


def test_probe_reasons(tmp_path: Path, double: rd.Double) -> None:
    rk3588 = write_compatible(tmp_path / "rk3588", "rockchip,rk3588")
    assert rknn.probe(Settings(rknn=False), compatible=rk3588, library=double.path).reason == (
        "MACHINE_LEARNING_RKNN is false")
    other = rknn.probe(Settings(), compatible=write_compatible(tmp_path / "x86", "pc"), library=double.path)
    assert not other.available and "no supported Rockchip SoC" in other.reason
    missing = rknn.probe(Settings(), compatible=rk3588, library=str(tmp_path / "none" / "librknnrt.so"))
    assert not missing.available and "cannot load" in missing.reason and "none/librknnrt.so" in missing.reason
    ok = rknn.probe(Settings(), compatible=rk3588, library=double.path)
    assert ok.available and "rk3588" in ok.reason


def test_default_library_is_librknnrt() -> None:
    assert rknn.library_path(Settings()) == "librknnrt.so"
    assert rknn.library_path(Settings(), "/opt/lib/librknnrt.so") == "/opt/lib/librknnrt.so"


@pytest.mark.parametrize(
    ("soc", "threads", "masks"),
    [("rk3588", 1, [0]), ("rk3588", 3, [1, 2, 4]), ("rk3588", 4, [1, 2, 4, 1]), ("rk3576", 3, [1, 2, 1]),
     ("rk3566", 3, [0, 0, 0]), ("rk3568", 2, [0, 0])],
)
def test_core_masks(soc: str, threads: int, masks: list[int]) -> None:
    assert rknn.core_masks(soc, threads) == masks


def test_model_without_rknn_export_asks_for_onnx(tmp_path: Path, double: rd.Double) -> None:
    directory = tmp_path / "clip" / "ViT-B-32__openai" / "textual"
    directory.mkdir(parents=True)
    message = r"^RKNN is available, but model 'ViT-B-32__openai' does not support it\.$"
    with pytest.raises(FormatUnavailable, match=message):
        session(ModelArtifacts(directory=directory, onnx=directory / "model.onnx"), double)


def test_rk3568_runs_rk3566_exports(tmp_path: Path, double: rd.Double) -> None:
    artifacts = install(tmp_path, SCRFD_LIKE, "rk3566")
    assert rknn.find_model(artifacts.directory, "rk3568") == rknn.model_path(artifacts.directory, "rk3566")
    assert rknn.find_model(artifacts.directory, "rk3588") is None


def test_unsupported_soc_is_refused(tmp_path: Path, double: rd.Double) -> None:
    with pytest.raises(BackendUnavailable, match="supported Rockchip SoC"):
        session(install(tmp_path, SCRFD_LIKE, "rk3588"), double, soc="rk3399")


# ---- RknnSession --------------------------------------------------------------------------------


def test_session_describes_the_model(tmp_path: Path, double: rd.Double) -> None:
    s = session(install(tmp_path, SCRFD_LIKE, "rk3588"), double, threads=3)
    assert isinstance(s, Session)
    assert [(i.name, i.shape, i.dtype) for i in s.inputs] == [("input.1", (1, 3, 16, 16), "float32")]
    assert [(o.name, o.shape, o.dtype) for o in s.outputs] == [("448", (32, 1), "float32"),
                                                               ("451", (32, 4), "float32")]
    p = s.placement
    assert (p.backend, p.provider, p.device, p.requested, p.precision) == ("rknn", "rknn:rk3588", "rk3588",
                                                                          "rknn:0", "FP16")
    assert p.extra["contexts"] == "3" and p.extra["core_masks"] == "0x1,0x2,0x4"
    assert p.extra["contexts_sharing_weights"] == "3" and p.extra["dynamic_shapes"] == "0"
    assert p.extra["model"].endswith("detection/rknpu/rk3588/model.rknn")
    s.close()


def test_nhwc_bind_hands_out_npu_memory(tmp_path: Path, double: rd.Double) -> None:
    s = session(install(tmp_path, SCRFD_LIKE, "rk3588"), double)
    image = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    with s.bind({"input.1": (1, 16, 16, 3)}) as call:
        buffer = call.inputs["input.1"]
        assert buffer.flags.c_contiguous and buffer.flags.writeable and buffer.dtype == np.float32
        buffer[...] = rd.nchw_to_nhwc(image)
        scores, boxes = call.run()
        assert double.last_input_addr(s._model.context_handle(0)) == rd.address(buffer)  # zero copy
        expected = SCRFD_LIKE.expected([rd.nchw_to_nhwc(image)])
        np.testing.assert_allclose(scores, expected[0], rtol=2e-3, atol=2e-3)  # fp16 on the "NPU"
        np.testing.assert_allclose(boxes, expected[1], rtol=1e-5, atol=1e-5)
        assert scores.dtype == boxes.dtype == np.float32 and scores.shape == (32, 1)
    s.close()


def test_nchw_bind_is_staged_and_transposed(tmp_path: Path, double: rd.Double) -> None:
    s = session(install(tmp_path, SCRFD_LIKE, "rk3588"), double)
    image = np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype(np.float32)
    with s.bind({"input.1": (1, 3, 16, 16)}) as call:
        buffer = call.inputs["input.1"]
        assert buffer.shape == (1, 3, 16, 16) and buffer.flags.c_contiguous and buffer.flags.writeable
        buffer[...] = image
        _, boxes = call.run()
        assert double.last_input_addr(s._model.context_handle(0)) != rd.address(buffer)
        np.testing.assert_allclose(boxes, SCRFD_LIKE.expected([rd.nchw_to_nhwc(image)])[1], rtol=1e-5, atol=1e-5)
    s.close()


def test_nhwc_buffers_are_accepted_and_channels_checked(tmp_path: Path, double: rd.Double) -> None:
    s = session(install(tmp_path, SCRFD_LIKE, "rk3588"), double)
    image = np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype(np.float32)
    expected = SCRFD_LIKE.expected([rd.nchw_to_nhwc(image)])
    (nhwc_out, _) = s.run({"input.1": rd.nchw_to_nhwc(image)})
    (nchw_out, _) = s.run({"input.1": image})
    np.testing.assert_allclose(nhwc_out, expected[0], rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(nchw_out, expected[0], rtol=2e-3, atol=2e-3)
    with pytest.raises(BackendError, match="RKNN binary takes 3 channels for input 'input.1'"):
        with s.bind({"input.1": (1, 4, 16, 16)}):
            pass
    with pytest.raises(BackendError, match=r"compiled for \(1, 3, 16, 16\) \(NCHW\)"):
        s.run({"input.1": np.zeros((1, 3, 32, 32), np.float32)})
    s.close()


def test_custom_string_shapes_and_raw_pixel_input(tmp_path: Path, double: rd.Double) -> None:
    s = session(install(tmp_path, FUSED, "rk3588", name="ViT-B-32__openai", model_type="visual"), double)
    assert [(i.shape, i.dtype) for i in s.inputs] == [((1, 8, 8, 3), "uint8")]
    pixels = np.random.default_rng(2).integers(0, 256, (1, 8, 8, 3), dtype=np.uint8)
    (embedding,) = s.run({"image": pixels})
    np.testing.assert_allclose(embedding, FUSED.expected([pixels])[0], rtol=2e-3, atol=2e-2)
    s.close()


def test_run_returns_copies(tmp_path: Path, double: rd.Double) -> None:
    s = session(install(tmp_path, SCRFD_LIKE, "rk3588"), double)
    first = s.run({"input.1": np.ones((1, 3, 16, 16), np.float32)})
    second = s.run({"input.1": np.zeros((1, 3, 16, 16), np.float32)})
    assert not np.array_equal(first[1], second[1])
    np.testing.assert_allclose(second[1], SCRFD_LIKE.bias[32:].reshape(32, 4), rtol=1e-6)
    s.close()


def test_threads_share_weights_and_run_concurrently(tmp_path: Path, double: rd.Double) -> None:
    before = double.counts()
    s = session(install(tmp_path, SCRFD_LIKE, "rk3588"), double, threads=3)
    assert double.counts()["blob_allocs"] - before["blob_allocs"] == 1
    handles = [s._model.context_handle(i) for i in range(3)]
    assert [double.core_mask(h) for h in handles] == [1, 2, 4]
    assert len({double.weights_addr(h) for h in handles}) == 1
    double.set_run_delay(0.02)
    rng = np.random.default_rng(3)
    images = [rng.standard_normal((1, 3, 16, 16)).astype(np.float32) for _ in range(9)]
    results: list[np.ndarray | None] = [None] * len(images)

    def work(i: int) -> None:
        with s.bind({"input.1": images[i].shape}) as call:
            call.inputs["input.1"][...] = images[i]
            results[i] = np.array(call.run()[1])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(images))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for image, result in zip(images, results):
        np.testing.assert_allclose(result, SCRFD_LIKE.expected([rd.nchw_to_nhwc(image)])[1], rtol=1e-5, atol=1e-5)
    assert 2 <= double.max_in_flight() <= 3
    s.close()
    after = double.counts()
    assert (after["contexts"], after["mems"], after["blobs"], after["violations"]) == (
        before["contexts"], before["mems"], before["blobs"], before["violations"])


def test_threads_need_rknn_dup_context(tmp_path: Path, libs: dict[str, Path], double: rd.Double) -> None:
    no_dup = rd.Double(libs["no_dup"])
    artifacts = install(tmp_path, SCRFD_LIKE, "rk3588")
    with pytest.raises(ModelLoadError, match="rknn_dup_context.*MACHINE_LEARNING_RKNN_THREADS=1"):
        session(artifacts, double, threads=2, library=no_dup.path)
    assert no_dup.counts()["contexts"] == 0 and no_dup.counts()["mems"] == 0
    session(artifacts, double, threads=1, library=no_dup.path).close()


def test_dynamic_model_falls_back_to_own_contexts(tmp_path: Path, double: rd.Double,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    dynamic = replace(SCRFD_LIKE, dynamic=True)
    before = double.counts()
    with caplog.at_level("WARNING", logger="immich_ml.backends.rknn"):
        s = session(install(tmp_path, dynamic, "rk3588"), double, threads=3)
    assert "2 of 3 contexts hold their own copy of the weights" in caplog.text
    assert (s.placement.extra["contexts_sharing_weights"], s.placement.extra["dynamic_shapes"]) == ("1", "1")
    assert double.counts()["blob_allocs"] - before["blob_allocs"] == 3
    image = np.random.default_rng(4).standard_normal((1, 3, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(s.run({"input.1": image})[1], dynamic.expected([rd.nchw_to_nhwc(image)])[1],
                               rtol=1e-5, atol=1e-5)
    s.close()
    assert double.counts()["contexts"] == before["contexts"]


@pytest.mark.parametrize(("content", "message"), [(b"RKNNDBL1 broken", "RKNN_ERR_MODEL_INVALID"),
                                                  (b"", "could not load")])
def test_corrupt_model_file_is_a_load_error(tmp_path: Path, double: rd.Double, content: bytes,
                                            message: str) -> None:
    artifacts = install(tmp_path, SCRFD_LIKE, "rk3588")
    rknn.model_path(artifacts.directory, "rk3588").write_bytes(content)
    before = double.counts()
    with pytest.raises(ModelLoadError, match=message):
        session(artifacts, double)
    assert double.counts() == before


def test_run_failure_is_a_backend_error(tmp_path: Path, double: rd.Double) -> None:
    s = session(install(tmp_path, SCRFD_LIKE, "rk3588"), double)
    double.fail("rknn_run", 1, -3)
    with pytest.raises(BackendError, match="RKNN_ERR_DEVICE_UNAVAILABLE.*/dev/rknpu"):
        s.run({"input.1": np.zeros((1, 3, 16, 16), np.float32)})
    s.run({"input.1": np.zeros((1, 3, 16, 16), np.float32)})  # the context was released and still works
    s.close()


def test_closed_session(tmp_path: Path, double: rd.Double) -> None:
    s = session(install(tmp_path, SCRFD_LIKE, "rk3588"), double)
    s.close()
    s.close()
    with pytest.raises(BackendError, match="closed"):
        s.run({"input.1": np.zeros((1, 3, 16, 16), np.float32)})


def test_settings_threads_are_used(tmp_path: Path, double: rd.Double) -> None:
    artifacts = install(tmp_path, SCRFD_LIKE, "rk3576")
    settings = replace(Settings(), rknn_threads=2)
    s = rknn.RknnSession(artifacts, settings, Target("rknn"), SessionOptions(), library=double.path, soc="rk3576")
    assert s.placement.extra["core_masks"] == "0x1,0x2" and s.placement.provider == "rknn:rk3576"
    s.close()
