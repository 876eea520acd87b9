"""A worker's start-up proof that its device computes: one Conv node, checked against numpy.

Users' top complaint is a service that reports healthy while inference fails or silently runs on
CPU. Each worker runs this before it says it is ready: it goes through the same
``OrtSession`` path as real models (provider chain, explicit fallback, strict mode), and the
returned ``Placement`` says where it really ran. Wrong numbers (a broken driver, a miscompiled
kernel) raise instead of being served.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

from immich_ml.backends.base import ModelArtifacts, Placement, SessionOptions, Target
from immich_ml.config import Settings
from immich_ml.errors import BackendError

log = logging.getLogger(__name__)

# (N, C, H, W) input, (K, C, 3, 3) kernel: big enough that a provider cannot just skip it.
_SHAPE = (1, 3, 16, 16)
_KERNEL = (8, 3, 3, 3)


def _weights() -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    rng = np.random.default_rng(1234)
    x = rng.uniform(-1.0, 1.0, _SHAPE).astype(np.float32)
    w = rng.uniform(-0.5, 0.5, _KERNEL).astype(np.float32)
    b = rng.uniform(-0.1, 0.1, (_KERNEL[0],)).astype(np.float32)
    return x, w, b


def tiny_model_bytes() -> bytes:
    """A one-node ONNX graph: ``y = Conv(x, w, b)``, padding 1, x float32 (1, 3, 16, 16)."""
    from onnx import TensorProto, helper, numpy_helper

    _, w, b = _weights()
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])],
        "immich_ml_self_test",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(_SHAPE))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, _KERNEL[0], _SHAPE[2], _SHAPE[3]])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    data: bytes = model.SerializeToString()
    return data


def reference_output() -> npt.NDArray[np.float32]:
    """The Conv computed in float64 numpy: (1, 8, 16, 16)."""
    x, w, b = _weights()
    padded = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((1, _KERNEL[0], _SHAPE[2], _SHAPE[3]))
    for dy in range(3):
        for dx in range(3):
            window = padded[:, :, dy : dy + _SHAPE[2], dx : dx + _SHAPE[3]]
            out += np.einsum("nchw,kc->nkhw", window, w[:, :, dy, dx].astype(np.float64))
    out += b.astype(np.float64)[None, :, None, None]
    return out.astype(np.float32)


def run_self_test(
    settings: Settings,
    target: Target,
    *,
    fallback_reason: str | None = None,
    requested: str | None = None,
) -> Placement:
    """Open the tiny graph on ``target`` through ``OrtSession``, run it, compare with numpy."""
    from immich_ml.backends.ort import OrtSession

    with tempfile.TemporaryDirectory(prefix="immich-ml-self-test-") as tmp:
        path = Path(tmp) / "model.onnx"
        path.write_bytes(tiny_model_bytes())
        options = SessionOptions(shapes=({"x": _SHAPE},), label=f"self-test ({target})")
        start = time.perf_counter()
        session = OrtSession(
            ModelArtifacts(directory=Path(tmp), onnx=path),
            settings,
            target,
            options,
            fallback_reason=fallback_reason,
            requested=requested,
        )
        try:
            x, _, _ = _weights()
            with session.bind({"x": _SHAPE}) as call:
                np.copyto(call.inputs["x"], x)
                got = np.asarray(call.run()[0], dtype=np.float32)
            placement = session.placement
        finally:
            session.close()
    expected = reference_output()
    # fp16 devices (OpenVINO/MIGraphX precision FP16) keep ~3 decimal digits.
    if got.shape != expected.shape or not np.allclose(got, expected, rtol=1e-2, atol=1e-2):
        error = float(np.max(np.abs(got - expected))) if got.shape == expected.shape else float("nan")
        raise BackendError(
            f"Self-test on {placement.provider} ({placement.device}) computed wrong results "
            f"(max abs error {error:.3g}); the device or its driver is broken."
        )
    log.info(
        "Self-test passed on %s (%s) in %.0f ms%s",
        placement.provider,
        placement.device,
        (time.perf_counter() - start) * 1000,
        f"; fallback: {placement.fallback_reason}" if placement.fallback_reason else "",
    )
    return placement
