"""Subnormal flushing on the thread that runs a model: effective, scoped, harmless."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from immich_ml.backends import denormals

pytestmark = pytest.mark.skipif(not denormals.supported(), reason="x86-64 Linux with glibc only")

SUBNORMAL = np.float32(np.finfo(np.float32).tiny / 4)  # 2.9e-39: below the smallest normal float32


def test_flushed_sets_and_restores_the_exact_word() -> None:
    before = denormals.mxcsr()
    assert before is not None
    assert SUBNORMAL * np.float32(1.0) != 0  # IEEE outside: the subnormal survives
    with denormals.flushed():
        inside = denormals.mxcsr()
        assert SUBNORMAL * np.float32(1.0) == 0  # DAZ: read as zero
        assert np.float32(np.finfo(np.float32).tiny) / np.float32(4.0) == 0  # FTZ: result flushed
    assert inside is not None and inside == before | denormals.FTZ | denormals.DAZ
    assert denormals.mxcsr() == before
    assert SUBNORMAL * np.float32(1.0) != 0


_CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np, onnx, onnxruntime as ort
    from dataclasses import replace
    from pathlib import Path
    from onnx import TensorProto, helper, numpy_helper
    from immich_ml.backends.base import ModelArtifacts, SessionOptions, Target
    from immich_ml.backends.ort import OrtSession
    from immich_ml.config import Settings

    folder = Path(sys.argv[1])
    w = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "mm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, 64])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = folder / "model.onnx"
    onnx.save(model, str(path))
    # A plain session first takes ORT's once-per-process flush of the creating thread.
    ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    settings = replace(Settings(), model_intra_op_threads=1)  # the whole run on the calling thread
    session = OrtSession(ModelArtifacts(folder, path), settings, Target("cpu"), SessionOptions())
    x = np.full((8, 64), np.finfo(np.float32).tiny / 4, dtype=np.float32)
    y = session.run({"x": x})[0]
    normal = session.run({"x": np.ones((8, 64), np.float32)})[0]
    print(int(np.count_nonzero(y)), float(np.abs(normal - np.ones((8, 64), np.float32) @ w).max()))
    """
)


def test_model_runs_flush_subnormals_whatever_session_came_first(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path)], capture_output=True, text=True,
                         check=True, timeout=120)
    nonzero, error = out.stdout.split()
    assert int(nonzero) == 0  # subnormal inputs read as zero on the calling thread
    assert float(error) < 1e-4  # normal inputs: the same products as numpy
