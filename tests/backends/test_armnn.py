"""ARM NN backend, for real: Debian's libarmnn (CpuRef backend on amd64) runs networks built here,
compared with ONNX Runtime running the same weights as an independently built ONNX graph.

What a Mali board alone can show (GpuAcc, the tuning file's effect, CpuAcc, FP16 speed) is not
exercised here; see the module docstring of immich_ml.backends.armnn.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from immich_ml.backends import armnn
from immich_ml.backends.base import SessionOptions
from immich_ml.config import Settings
from immich_ml.errors import BackendUnavailable, FormatUnavailable, ModelLoadError

try:
    from . import armnn_graphs as graphs
except ImportError:  # tests/backends is not a package: pytest put this folder on sys.path
    import armnn_graphs as graphs  # type: ignore[no-redef]

pytestmark = pytest.mark.armnn

_BRIDGE, _REASON = armnn._bridge()
needs_bridge = pytest.mark.skipif(_BRIDGE is None, reason=f"ARM NN bridge unavailable: {_REASON}")
# The CPU backend a forced session gets here: CpuAcc (NEON) where it is installed (arm64, armhf),
# else the reference backend (amd64).
CPU_BACKEND = _BRIDGE.Runtime("CpuAcc,CpuRef").preferred[0] if _BRIDGE is not None else "CpuRef"
TARGET = graphs.TARGET
_settings, _artifacts, _model_dir = graphs.settings_for, graphs.artifacts, graphs.model_dir
_armnn_model, _reference, _image = graphs.armnn_model, graphs.reference, graphs.image


# --- availability -------------------------------------------------------------------------------


def test_probe_reasons_from_settings() -> None:
    assert armnn.probe(Settings(ann=False)) == armnn.Availability(False, "MACHINE_LEARNING_ANN is false")
    other = armnn.probe(Settings(device="cuda"))
    assert not other.available and "MACHINE_LEARNING_DEVICE=cuda" in other.reason


def test_probe_without_mali_names_libmali(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(armnn, "_mali_error", lambda: "libmali.so could not be loaded (test)")
    result = armnn.probe(Settings(device="auto"))
    assert result == armnn.Availability(False, "libmali.so could not be loaded (test)")


def test_real_libmali_lookup_on_this_machine() -> None:
    # No Mali GPU here: the real ctypes lookup must fail and say so; on a Mali board it loads.
    error = armnn._mali_error()
    if Path("/dev/mali0").exists():
        pytest.skip("a Mali GPU is present")
    assert error is not None and "libmali.so" in error


@pytest.mark.parametrize(
    ("exception", "expected"),
    [
        (ModuleNotFoundError("No module named 'immich_ml._core._armnn'", name="immich_ml._core._armnn"), "not built: the compiled core has no _armnn module"),
    ],
)
def test_probe_explains_a_missing_bridge(monkeypatch: pytest.MonkeyPatch, exception: ImportError, expected: str) -> None:
    class Blocker:
        def find_spec(self, name: str, path: object, target: object = None) -> None:
            if name == "immich_ml._core._armnn":
                raise exception
            return None

    import immich_ml._core

    monkeypatch.delitem(sys.modules, "immich_ml._core._armnn", raising=False)
    monkeypatch.delattr(immich_ml._core, "_armnn", raising=False)
    monkeypatch.setattr(sys, "meta_path", [Blocker(), *sys.meta_path])
    armnn._bridge.cache_clear()
    try:
        result = armnn.probe(Settings(device="armnn"))
    finally:
        armnn._bridge.cache_clear()
    assert not result.available
    assert result.reason.startswith(expected), result.reason


@needs_bridge
def test_probe_forced_reports_the_library_version() -> None:
    result = armnn.probe(Settings(device="armnn"))
    assert result.available and armnn.capabilities()["version"] in result.reason


@needs_bridge
def test_auto_mode_without_gpuacc_refuses_cpuref_and_creates_tuning_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pretend libmali loaded: auto mode wants GpuAcc and must not silently run on CpuRef.
    monkeypatch.setattr(armnn, "_mali_error", lambda: None)
    settings = _settings(tmp_path, device="auto")
    assert armnn.probe(settings).available
    model = _armnn_model(tmp_path, graphs.random_tower())
    with pytest.raises(BackendUnavailable, match="libarmnn-gpuacc-backend22"):
        armnn.ArmnnSession(_artifacts(model.parent, model), settings, TARGET, SessionOptions())
    assert (tmp_path / "cache" / armnn.TUNING_FILE).is_file()


# --- correctness against ONNX Runtime -----------------------------------------------------------


@needs_bridge
def test_armnn_file_matches_onnxruntime(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tower = graphs.random_tower(seed=3)
    model = _armnn_model(tmp_path, tower)
    caplog.set_level(logging.INFO, logger="immich_ml.backends.armnn")
    session = armnn.ArmnnSession(_artifacts(model.parent, model), _settings(tmp_path), TARGET, SessionOptions(label="tiny"))
    try:
        assert [(s.name, s.shape, s.dtype) for s in session.inputs] == [("image", (1, tower.height, tower.width, 3), "float32")]
        assert [(s.name, s.shape) for s in session.outputs] == [("embedding", (1, tower.dim))]
        image = _image(tower)
        with session.bind({"image": image.shape}) as call:
            call.inputs["image"][...] = image
            (embedding,) = call.run()
        expected = _reference(model.parent / "model.onnx", image)["embedding"]
        assert np.abs(embedding - expected).max() < 1e-5
        placement = session.placement
        assert (placement.backend, placement.provider, placement.precision) == ("armnn", f"armnn:{CPU_BACKEND}", "FP32")
        assert placement.extra["layers"].startswith(f"{CPU_BACKEND}:")
        assert any("Loaded ANN model" in r.getMessage() and str(model) in r.getMessage() for r in caplog.records)
    finally:
        session.close()


@needs_bridge
def test_tflite_with_two_outputs_matches_onnxruntime(tmp_path: Path) -> None:
    # The TfLite parser path (Debian has no ONNX parser), with an output that also feeds a layer.
    tower = graphs.random_tower(seed=4)
    tflite = graphs.write_tflite(tower, tmp_path / "model.tflite")
    onnx_path = graphs.make_onnx(tower, tmp_path / "model.onnx")
    session = armnn.ArmnnSession(_artifacts(tmp_path, tflite), _settings(tmp_path), TARGET, SessionOptions())
    try:
        image = _image(tower, seed=5)
        outputs = dict(zip([s.name for s in session.outputs], session.run({"image": image})))
        expected = _reference(onnx_path, image)
        assert set(outputs) == {"embedding", "features"}
        for name in outputs:
            assert np.abs(outputs[name] - expected[name]).max() < 1e-5, name
    finally:
        session.close()


@needs_bridge
def test_fp16_turbo_really_computes_in_fp16(tmp_path: Path) -> None:
    tower = graphs.random_tower(seed=6)
    model = _armnn_model(tmp_path, tower)
    artifacts = _artifacts(model.parent, model)
    fp32 = armnn.ArmnnSession(artifacts, _settings(tmp_path), TARGET, SessionOptions())
    fp16 = armnn.ArmnnSession(artifacts, _settings(tmp_path, ann_fp16_turbo=True), TARGET, SessionOptions())
    try:
        if CPU_BACKEND == "CpuAcc" and fp16.placement.fallback_reason is not None:
            # Debian's ARM NN 20.08 on CpuAcc (seen on arm64 under qemu) optimizes to no FP16 layer;
            # the session must then report FP32 and why. FP16 turbo is a GpuAcc (Mali) feature.
            assert fp16.placement.precision == "FP32", fp16.placement
            pytest.skip(f"CpuAcc of this ARM NN has no FP16: {fp16.placement.fallback_reason}")
        assert fp16.placement.precision == "FP16" and fp16.placement.fallback_reason is None
        assert fp32.placement.precision == "FP32"
        image = _image(tower, seed=7)
        (a,) = fp32.run({"image": image})
        (b,) = fp16.run({"image": image})
        expected = _reference(model.parent / "model.onnx", image)["embedding"]
        # Half precision leaves a visible but small error; identical results would mean FP32 ran.
        assert 1e-6 < np.abs(b - a).max() < 1e-2
        assert np.abs(b - expected).max() < 1e-2
    finally:
        fp32.close()
        fp16.close()


# --- errors -------------------------------------------------------------------------------------


@needs_bridge
def test_missing_armnn_file_asks_for_the_onnx_fallback(tmp_path: Path) -> None:
    directory = _model_dir(tmp_path, "ViT-B-32__openai")
    for model in (directory / "model.armnn", None):
        with pytest.raises(FormatUnavailable, match=r"ARMNN is available, but model 'ViT-B-32__openai' does not support it"):
            armnn.ArmnnSession(_artifacts(directory, model), _settings(tmp_path), TARGET, SessionOptions())


@needs_bridge
def test_corrupt_armnn_file_is_a_load_error(tmp_path: Path) -> None:
    model = _model_dir(tmp_path) / "model.armnn"
    model.write_bytes(np.random.default_rng(0).bytes(3000))
    with pytest.raises(ModelLoadError, match="could not read"):
        armnn.ArmnnSession(_artifacts(model.parent, model), _settings(tmp_path), TARGET, SessionOptions())


@needs_bridge
def test_onnx_without_parser_is_refused_clearly(tmp_path: Path) -> None:
    if armnn.capabilities()["onnx_parser"]:
        pytest.skip("this ARM NN has an ONNX parser")
    onnx_path = graphs.make_onnx(graphs.random_tower(), tmp_path / "model.onnx")
    with pytest.raises(FormatUnavailable, match="no ARM NN ONNX parser"):
        armnn.ArmnnSession(_artifacts(tmp_path, onnx_path), _settings(tmp_path), TARGET, SessionOptions())


@needs_bridge
def test_multi_output_armnn_never_aborts_the_process(tmp_path: Path) -> None:
    # ARM NN 20.08's deserializer aborts on such files; the bridge must refuse them first. Run in
    # a child so a regression shows as a failed test instead of killing the test run.
    script = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from pathlib import Path
import armnn_graphs as graphs
from immich_ml.backends import armnn
_armnn, reason = armnn._bridge()
assert _armnn is not None, reason
tmp = Path({str(tmp_path)!r})
graphs.write_tflite(graphs.random_tower(), tmp / "two.tflite", ("embedding", "features"))
_armnn.convert(str(tmp / "two.tflite"), str(tmp / "two.armnn"))
try:
    network = _armnn.Network(_armnn.Runtime("CpuRef"), str(tmp / "two.armnn"))
    print("LOADED", [t[0] for t in network.outputs])
except _armnn.ArmnnError as exc:
    print("REFUSED", exc.status, exc)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    version = int(str(armnn.capabilities()["version"]).split(".")[0])
    if version < 25:
        assert "REFUSED 3" in result.stdout and "aborts the process" in result.stdout, result.stdout
    else:
        assert "LOADED" in result.stdout, result.stdout
