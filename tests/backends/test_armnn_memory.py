"""ARM NN buffers and execution: memory import vs copy, alignment, batches over a batch-1 network,
concurrent runs on one network, and the pure-numpy buffer helpers."""

from __future__ import annotations

import gc
import threading
import weakref
from pathlib import Path

import numpy as np
import pytest

from immich_ml.backends import armnn
from immich_ml.backends._armnn_memory import ALIGNMENT, BatchPlan, aligned_empty, as_aligned
from immich_ml.backends.base import SessionOptions
from immich_ml.errors import BackendError

try:
    from . import armnn_graphs as graphs
except ImportError:  # tests/backends is not a package: pytest put this folder on sys.path
    import armnn_graphs as graphs  # type: ignore[no-redef]

pytestmark = pytest.mark.armnn

_BRIDGE, _REASON = armnn._bridge()
needs_bridge = pytest.mark.skipif(_BRIDGE is None, reason=f"ARM NN bridge unavailable: {_REASON}")


def _session(tmp_path: Path, tower: graphs.TinyTower, **changes: object) -> armnn.ArmnnSession:
    model = graphs.armnn_model(tmp_path, tower)
    settings = graphs.settings_for(tmp_path, **changes)
    return armnn.ArmnnSession(graphs.artifacts(model.parent, model), settings, graphs.TARGET, SessionOptions())


def _misaligned(array: np.ndarray) -> np.ndarray:
    """A copy of ``array`` whose data starts 4 bytes past an ALIGNMENT boundary."""
    raw = aligned_empty((array.nbytes + ALIGNMENT,), np.uint8)
    view = raw[4 : 4 + array.nbytes].view(array.dtype).reshape(array.shape)
    view[...] = array
    return view


# --- pure helpers -------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1,), (3, 5), (2, 3, 7)])
def test_aligned_empty_is_aligned_dense_and_writable(shape: tuple[int, ...]) -> None:
    for dtype in ("float32", "uint8", "int64"):
        array = aligned_empty(shape, dtype)
        assert array.shape == shape and array.dtype == dtype
        assert array.ctypes.data % ALIGNMENT == 0 and array.flags.c_contiguous and array.flags.writeable


def test_as_aligned_uses_caller_memory_only_when_armnn_can_map_it() -> None:
    buffer = aligned_empty((2, 3), np.float32)
    good = aligned_empty((2, 3), np.float32)
    good[...] = 1.5
    assert as_aligned(good, buffer) is good
    for other in (_misaligned(good), good.astype(np.float64), np.asfortranarray(np.ones((2, 3), np.float32)).T.T):
        result = as_aligned(np.asarray(other), buffer)
        if result is not buffer:
            assert result is other and other.ctypes.data % ALIGNMENT == 0
        np.testing.assert_array_equal(result, np.asarray(other, dtype=np.float32))


def test_batch_plan_checks_shapes() -> None:
    net_in = [("image", (1, 4, 4, 3), "float32", 192)]
    net_out = [("embedding", (1, 8), "float32", 32)]
    assert BatchPlan.create(net_in, net_out, {"image": (1, 4, 4, 3)}).count == 1
    plan = BatchPlan.create(net_in, net_out, {"image": (5, 4, 4, 3)})
    assert plan.count == 5 and plan.outputs[0].shape == (5, 8)
    for bad in ({"image": (1, 4, 5, 3)}, {"image": (1, 4, 4)}, {"other": (1, 4, 4, 3)}, {}):
        with pytest.raises(ValueError):
            BatchPlan.create(net_in, net_out, bad)
    no_batch_out = [("scores", (12800, 1), "float32", 51200)]
    with pytest.raises(ValueError, match="leading batch dimension"):
        BatchPlan.create(net_in, no_batch_out, {"image": (2, 4, 4, 3)})


# --- memory import vs copy ----------------------------------------------------------------------


@needs_bridge
def test_cpuref_imports_inputs_and_the_report_says_so(tmp_path: Path) -> None:
    session = _session(tmp_path, graphs.random_tower())
    try:
        assert session.memory_imported
        assert session.placement.extra["memory"] == "inputs imported, outputs exported"
    finally:
        session.close()


@needs_bridge
def test_imported_network_rejects_misaligned_memory_and_copy_mode_accepts_it(tmp_path: Path) -> None:
    # The observable difference between the two modes: ARM NN maps imported memory, so the bridge
    # refuses a pointer it could not map, while a copying network reads any address.
    assert _BRIDGE is not None
    tower = graphs.random_tower(seed=2)
    model = graphs.armnn_model(tmp_path, tower)
    runtime = _BRIDGE.Runtime("CpuRef")
    image = graphs.image(tower)
    expected = graphs.reference(model.parent / "model.onnx", image)["embedding"]
    imported = _BRIDGE.Network(runtime, str(model), import_memory=True)
    copied = _BRIDGE.Network(runtime, str(model), import_memory=False)
    try:
        assert imported.report["inputs_imported"] and not copied.report["inputs_imported"]
        assert "memory import disabled" in copied.report["notes"]
        out = aligned_empty((1, tower.dim), np.float32)
        with pytest.raises(ValueError, match="not aligned"):
            imported.run([_misaligned(image)], [out])
        copied.run([_misaligned(image)], [out])
        assert np.abs(out - expected).max() < 1e-5
        imported.run([as_aligned(image, aligned_empty(image.shape, np.float32))], [out])
        assert np.abs(out - expected).max() < 1e-5
        with pytest.raises(ValueError, match="needs 64 bytes"):
            imported.run([image], [np.empty((1, tower.dim - 1), np.float32)])
    finally:
        imported.close()
        copied.close()


@needs_bridge
def test_run_with_caller_arrays_of_any_alignment(tmp_path: Path) -> None:
    tower = graphs.random_tower(seed=8)
    session = _session(tmp_path, tower)
    try:
        image = graphs.image(tower, seed=9)
        expected = graphs.reference(graphs.model_dir(tmp_path) / "model.onnx", image)["embedding"]
        for feed in (image, _misaligned(image), image.astype(np.float64)):
            (out,) = session.run({"image": feed})
            assert np.abs(out - expected).max() < 1e-5
    finally:
        session.close()


# --- batches and shapes -------------------------------------------------------------------------


@needs_bridge
def test_batch_runs_item_by_item_with_staging_for_unaligned_slices(tmp_path: Path) -> None:
    # 5x5x3 float32 items (300 B) and 10-float outputs (40 B) are not 64-byte multiples, so every
    # slice after the first is staged through aligned memory on the imported network.
    tower = graphs.random_tower(seed=10, height=5, width=5, dim=10)
    session = _session(tmp_path, tower)
    try:
        batch = graphs.image(tower, seed=11, batch=4)
        with session.bind({"image": batch.shape}) as call:
            call.inputs["image"][...] = batch
            (out,) = call.run()
        onnx_path = graphs.model_dir(tmp_path) / "model.onnx"
        expected = np.concatenate([graphs.reference(onnx_path, batch[i : i + 1])["embedding"] for i in range(4)])
        assert out.shape == (4, tower.dim)
        assert np.abs(out - expected).max() < 1e-5
        assert np.abs(np.linalg.norm(out, axis=1) - 1).max() < 1e-5
    finally:
        session.close()


@needs_bridge
def test_wrong_shapes_and_closed_sessions_are_backend_errors(tmp_path: Path) -> None:
    tower = graphs.random_tower()
    session = _session(tmp_path, tower)
    with pytest.raises(BackendError, match="fixed at"):
        with session.bind({"image": (1, tower.height + 1, tower.width, 3)}):
            pass
    session.close()
    with pytest.raises(BackendError, match="closed"):
        session.run({"image": graphs.image(tower)})


# --- concurrency --------------------------------------------------------------------------------


@needs_bridge
def test_concurrent_runs_on_one_network_give_each_caller_its_own_answer(tmp_path: Path) -> None:
    # ARM NN reuses one network's working memory between calls; without the per-network lock in
    # the bridge, interleaved runs mix inputs and outputs (or crash).
    tower = graphs.random_tower(seed=12, height=32, width=32, channels=16)
    session = _session(tmp_path, tower)
    images = [graphs.image(tower, seed=100 + i) for i in range(6)]
    try:
        expected = [session.run({"image": image})[0].copy() for image in images]
        failures: list[str] = []
        start = threading.Barrier(len(images))

        def worker(index: int) -> None:
            start.wait()
            for _ in range(25):
                with session.bind({"image": images[index].shape}) as call:
                    call.inputs["image"][...] = images[index]
                    (out,) = call.run()
                if not np.array_equal(out, expected[index]):
                    failures.append(f"thread {index} got another caller's result")
                    return

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(images))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not failures, failures
    finally:
        session.close()


@needs_bridge
def test_sessions_share_one_runtime(tmp_path: Path) -> None:
    tower = graphs.random_tower()
    first = _session(tmp_path, tower)
    second = _session(tmp_path, tower)
    runtime = weakref.ref(first._runtime)  # type: ignore[arg-type]
    try:
        assert first._runtime is second._runtime and runtime() is not None
        assert runtime().preferred == ("CpuRef",)  # type: ignore[union-attr]
    finally:
        first.close()
        second.close()
    # The runtime must go when its last session closes (the session objects may live on): ARM NN
    # writes the GpuAcc tuning file then.
    gc.collect()
    assert runtime() is None


@needs_bridge
def test_features_this_armnn_lacks_are_reported_not_hidden(tmp_path: Path) -> None:
    caps = armnn.capabilities()
    session = _session(tmp_path, graphs.random_tower())
    try:
        notes = session.placement.extra["notes"]
        assert ("fast math needs" in notes) == (not caps["fast_math"])
        assert ("cached network file needs" in notes) == (not caps["cached_network"])
    finally:
        session.close()
