"""Memory-mapped weights: a real starter graph gets a copy with external weights that ORT maps and
that answers bit for bit like the original; small graphs and broken files are left alone."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from immich_ml.backends import mapped
from immich_ml.backends.base import ModelArtifacts, SessionOptions, Target
from immich_ml.backends.ort import OrtSession
from immich_ml.config import Settings
from immich_ml.models.starter import TINY_CLIP_MODEL


@pytest.fixture()
def textual(starter_cache: Path, tmp_path: Path) -> Path:
    """The tiny starter text tower (13 MB, most of it the token-embedding table)."""
    target = tmp_path / "textual"
    target.mkdir()
    shutil.copy(starter_cache / "clip" / TINY_CLIP_MODEL / "textual" / "model.onnx", target / "model.onnx")
    return target / "model.onnx"


def _run(path: Path, tokens: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"text": tokens})[0])


def test_mapped_copy_answers_bit_for_bit(textual: Path) -> None:
    assert textual.stat().st_size > mapped.MIN_WEIGHT_BYTES
    path = mapped.for_loading(textual)
    assert path == mapped.mapped_path(textual) and mapped.data_path(textual).is_file()
    assert path.stat().st_size < 100_000  # the graph alone; the weights are in the data file
    graph = onnx.load(str(path), load_external_data=False)
    locations = {e.value for t in graph.graph.initializer for e in t.external_data if e.key == "location"}
    assert locations == {mapped.data_path(textual).name}
    tokens = np.zeros((1, 77), np.int32)
    tokens[0, :6] = np.random.default_rng(1).integers(1, 49000, 6)
    tokens[0, 6] = 49407
    assert np.array_equal(_run(textual, tokens), _run(path, tokens))


def test_the_copy_is_reused_and_renewed_when_the_source_changes(textual: Path) -> None:
    path = mapped.for_loading(textual)
    made = path.stat().st_mtime_ns
    assert mapped.for_loading(textual) == path and path.stat().st_mtime_ns == made
    assert mapped.for_loading(path) == path  # already the mapped copy
    textual.touch()
    assert mapped.for_loading(textual) == path and path.stat().st_mtime_ns > made


def test_small_missing_and_broken_graphs_load_as_they_are(tmp_path: Path) -> None:
    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    small = tmp_path / "small.onnx"
    onnx.save(helper.make_model(graph), str(small))
    assert mapped.for_loading(small) == small
    assert mapped.for_loading(tmp_path / "missing.onnx") == tmp_path / "missing.onnx"
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x00not a model" * (mapped.MIN_WEIGHT_BYTES // 8))
    assert mapped.for_loading(broken) == broken
    assert not mapped.mapped_path(broken).exists()


def test_cpu_sessions_report_mapped_weights(textual: Path) -> None:
    settings = Settings(cache_folder=textual.parent)
    artifacts = ModelArtifacts(directory=textual.parent, onnx=textual)
    session = OrtSession(artifacts, settings, Target("cpu", "0"), SessionOptions(label="textual"))
    try:
        assert session.placement.extra["weights"] == "memory-mapped"
        assert session.placement.extra["model"] == "model.onnx"
    finally:
        session.close()
