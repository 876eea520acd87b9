"""A one-node model run on the worker's device: proves the runtime really executes there."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from immich_ml.backends import registry
from immich_ml.backends.base import ModelArtifacts, Placement, SessionOptions, Target
from immich_ml.config import Settings
from immich_ml.errors import BackendError, BackendUnavailable, ImmichMLError

_INPUT = np.array([[1.0, -2.0, 3.5, 0.25]], dtype=np.float32)


def _write_graph(path: Path) -> None:
    """``y = x * 2`` over float32 ``[1,4]``: small enough for any backend, checks real arithmetic."""
    import onnx
    from onnx import TensorProto, helper

    two = helper.make_tensor("two", TensorProto.FLOAT, [1], [2.0])
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["y"])],
        "immich_ml_self_test",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        initializer=[two],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


def run_self_test(settings: Settings, target: Target) -> Placement:
    """Run the tiny graph on ``target``; returns where it ran, raises BackendError if it did not work."""
    with tempfile.TemporaryDirectory(prefix="immich-ml-self-test-") as folder:
        directory = Path(folder)
        onnx_path = directory / "model.onnx"
        _write_graph(onnx_path)
        try:
            session = registry.open_session(
                ModelArtifacts(directory=directory, onnx=onnx_path),
                settings,
                target,
                SessionOptions(shapes=({"x": (1, 4)},), label="self-test"),
            )
        except BackendUnavailable:
            raise
        except ImmichMLError as exc:
            raise BackendError(f"Self-test on {target} failed to open a session: {exc.message}") from exc
        except Exception as exc:  # noqa: BLE001 - any runtime failure is a failed self-test
            raise BackendError(f"Self-test on {target} failed to open a session: {exc}") from exc
        try:
            with session.bind({"x": (1, 4)}) as call:
                call.inputs["x"][...] = _INPUT
                output = np.array(call.run()[0], dtype=np.float32)
            placement = session.placement
        except ImmichMLError as exc:
            raise BackendError(f"Self-test on {target} failed to run: {exc.message}") from exc
        except Exception as exc:  # noqa: BLE001
            raise BackendError(f"Self-test on {target} failed to run: {exc}") from exc
        finally:
            session.close()
    if output.shape != _INPUT.shape or not np.allclose(output, _INPUT * 2, atol=1e-3):
        raise BackendError(
            f"Self-test on {target} ({placement.provider}) computed {output.tolist()} instead of "
            f"{(_INPUT * 2).tolist()}."
        )
    return placement
