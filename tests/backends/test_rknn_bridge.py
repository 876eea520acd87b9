"""The compiled RKNN bridge (immich_ml._core._rknn) driven end to end through a test double of
librknnrt.so: attribute queries, zero-copy input memory, contexts sharing weights, core masks,
concurrent runs, fp16 outputs and dynamic-shape models. No NPU is involved; see rknn_double/."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import rknn_double as rd
from rknn_double.bridge_support import (  # noqa: F401 - fixtures are found by name
    EMBED,
    double,
    dynamic_def,
    libs,
    model_def,
    npu_input,
    open_model,
    read_outputs,
    write_and_run,
)

from immich_ml._core import _rknn


def test_attributes_custom_string_and_version(double: rd.Double, model_def: rd.DoubleModel) -> None:
    m = _rknn.Model(_rknn.Runtime(double.path), model_def.to_bytes())
    (image,) = m.inputs
    assert (image.index, image.name, image.dims, image.fmt, image.type) == (0, "images", (1, 8, 8, 3), rd.NHWC,
                                                                             rd.FLOAT16)
    assert (image.n_elems, image.size) == (192, 192 * 2)
    assert [(o.name, o.dims, o.type) for o in m.outputs] == [("embedding", (1, 4), rd.FLOAT32),
                                                             ("heatmap", (1, 2, 3), rd.FLOAT16)]
    assert m.custom_string == '{"dims": [1, 3, 8, 8]}'
    assert m.sdk_version == ("2.3.0 (rknn_double)", "0.9.8 (rknn_double)")
    m.close()


def test_input_memory_is_what_the_runtime_reads(double: rd.Double, model_def: rd.DoubleModel) -> None:
    m = open_model(Path(double.path), model_def)
    slot = m.acquire()
    view = npu_input(m, slot)
    image = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
    view[...] = rd.nchw_to_nhwc(image)  # the only write: the double filled its memory with 0xA5 garbage
    m.run(slot)
    assert double.last_input_addr(m.context_handle(slot)) == rd.address(view)
    embedding = np.frombuffer(m.output_buffer(slot, 0), dtype=np.float32).reshape(1, 4)
    expected = model_def.expected([rd.nchw_to_nhwc(image)])
    np.testing.assert_allclose(embedding, expected[0], rtol=1e-5, atol=1e-5)
    assert not embedding.flags.writeable
    m.release(slot)
    m.close()


def test_image_inputs_are_bound_nhwc(double: rd.Double, model_def: rd.DoubleModel) -> None:
    """Rockchip's zero-copy API takes 4-D inputs as NHWC; the double refuses NCHW like that."""
    m = open_model(Path(double.path), model_def)
    (bound,) = m.bound_inputs
    assert (bound.fmt, bound.dims, bound.type, bound.size) == (rd.NHWC, (1, 8, 8, 3), rd.FLOAT32, 192 * 4)
    assert double.bound_input_fmt(m.context_handle(0)) == rd.NHWC
    m.close()


def test_nchw_data_is_transposed_into_npu_memory(double: rd.Double, model_def: rd.DoubleModel) -> None:
    m = open_model(Path(double.path), model_def)
    slot = m.acquire()
    image = np.random.default_rng(2).standard_normal((1, 3, 8, 8)).astype(np.float32)
    m.input_write_nchw(slot, 0, image.reshape(-1).view(np.uint8))
    assert np.array_equal(npu_input(m, slot), rd.nchw_to_nhwc(image))
    m.run(slot)
    np.testing.assert_allclose(read_outputs(m, slot)[0], model_def.expected([rd.nchw_to_nhwc(image)])[0],
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(_rknn.RknnError, match="dense NCHW tensor"):
        m.input_write_nchw(slot, 0, image.reshape(-1)[:-1].view(np.uint8))
    m.release(slot)
    m.close()


def test_input_reported_nchw_is_still_bound_nhwc(double: rd.Double) -> None:
    model = rd.make_model([rd.Tensor("x", (1, 3, 4, 5), rd.NCHW, rd.FLOAT16)], [EMBED], seed=3)
    m = open_model(Path(double.path), model)
    assert m.inputs[0].dims == (1, 3, 4, 5) and m.bound_inputs[0].dims == (1, 4, 5, 3)
    slot = m.acquire()
    image = np.random.default_rng(3).standard_normal((1, 3, 4, 5)).astype(np.float32)
    npu_input(m, slot, (1, 4, 5, 3))[...] = rd.nchw_to_nhwc(image)
    m.run(slot)
    np.testing.assert_allclose(read_outputs(m, slot)[0], model.expected([image])[0], rtol=1e-5, atol=1e-5)
    m.release(slot)
    m.close()


def test_duplicated_contexts_share_one_copy_of_the_weights(double: rd.Double, model_def: rd.DoubleModel) -> None:
    before = double.counts()
    m = open_model(Path(double.path), model_def, contexts=3)
    during = double.counts()
    assert during["blob_allocs"] - before["blob_allocs"] == 1
    assert during["blobs"] - before["blobs"] == 1
    assert during["contexts"] - before["contexts"] == 3
    assert during["mems"] - before["mems"] == 3 * 3  # one input + two outputs per context
    handles = [m.context_handle(s) for s in range(3)]
    assert len(set(handles)) == 3
    assert len({double.weights_addr(h) for h in handles}) == 1
    m.close()
    assert double.counts() == {**before, "blob_allocs": before["blob_allocs"] + 1}


def test_core_masks_reach_each_context(double: rd.Double, model_def: rd.DoubleModel) -> None:
    m = open_model(Path(double.path), model_def, contexts=3, masks=[1, 2, 4])
    assert [double.core_mask(m.context_handle(s)) for s in range(3)] == [1, 2, 4]
    m.close()


def test_auto_core_mask_needs_no_set_core_mask(libs: dict[str, Path], model_def: rd.DoubleModel) -> None:
    m = open_model(libs["no_core_mask"], model_def, contexts=2, masks=[0, 0])
    image = np.ones((1, 3, 8, 8), dtype=np.float32)
    slot = m.acquire()
    np.testing.assert_allclose(write_and_run(m, slot, image)[0],
                               model_def.expected([rd.nchw_to_nhwc(image)])[0], rtol=1e-5, atol=1e-5)
    m.release(slot)
    m.close()


def test_concurrent_runs_lease_separate_contexts(double: rd.Double, model_def: rd.DoubleModel) -> None:
    m = open_model(Path(double.path), model_def, contexts=3)
    double.set_run_delay(0.02)
    rng = np.random.default_rng(3)
    images = [rng.standard_normal((1, 3, 8, 8)).astype(np.float32) for _ in range(12)]
    results: dict[int, list[np.ndarray]] = {}

    def work(i: int) -> None:
        slot = m.acquire()
        try:
            results[i] = write_and_run(m, slot, images[i])
        finally:
            m.release(slot)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(images))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, image in enumerate(images):
        expected = model_def.expected([rd.nchw_to_nhwc(image)])
        np.testing.assert_allclose(results[i][0], expected[0], rtol=1e-5, atol=1e-5)
    # Runs overlapped (the GIL was released), but never more than there are contexts.
    assert 2 <= double.max_in_flight() <= 3
    assert sum(double.runs(m.context_handle(s)) for s in range(3)) == len(images)
    m.close()


def test_one_context_serializes_callers(double: rd.Double, model_def: rd.DoubleModel) -> None:
    m = open_model(Path(double.path), model_def, contexts=1)
    double.set_run_delay(0.01)
    image = np.zeros((1, 3, 8, 8), dtype=np.float32)

    def work() -> None:
        slot = m.acquire()
        write_and_run(m, slot, image)
        m.release(slot)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert double.max_in_flight() == 1
    m.close()


def test_fp16_outputs_are_widened_exactly(double: rd.Double, model_def: rd.DoubleModel) -> None:
    m = open_model(Path(double.path), model_def, out_types=[rd.FLOAT16, rd.FLOAT16])
    assert [m.output_type(i) for i in range(2)] == [rd.FLOAT16, rd.FLOAT16]
    image = np.random.default_rng(4).standard_normal((1, 3, 8, 8)).astype(np.float32)
    slot = m.acquire()
    outs = write_and_run(m, slot, image)
    raw = np.frombuffer(m.output_buffer(slot, 1), dtype=np.float16).reshape(1, 2, 3)
    for out, expected in zip(outs, model_def.expected([rd.nchw_to_nhwc(image)])):
        assert np.array_equal(out, out.astype(np.float16).astype(np.float32))  # really came through fp16
        np.testing.assert_allclose(out, expected, rtol=1e-3, atol=1e-3)
    assert np.array_equal(outs[1], raw.astype(np.float32))
    m.release(slot)
    m.close()


def test_half_to_float_matches_numpy_for_every_bit_pattern() -> None:
    bits = np.arange(1 << 16, dtype=np.uint16)
    out = np.empty(bits.shape, dtype=np.float32)
    _rknn.half_to_float_into(bits, out)
    expected = bits.view(np.float16).astype(np.float32).view(np.uint32)
    # Signalling NaNs (exponent all ones, mantissa top bit clear, mantissa not zero): numpy on
    # aarch64 widens with the FCVT instruction, which quiets them; the bridge keeps sign and
    # payload bit for bit on every architecture. Everything else must match numpy exactly.
    signalling = ((bits & 0x7C00) == 0x7C00) & ((bits & 0x0200) == 0) & ((bits & 0x03FF) != 0)
    assert np.array_equal(out.view(np.uint32)[~signalling], expected[~signalling])
    kept = ((bits[signalling].astype(np.uint32) & 0x8000) << 16) | 0x7F800000 | ((bits[signalling].astype(np.uint32) & 0x3FF) << 13)
    assert np.array_equal(out.view(np.uint32)[signalling], kept) and np.isnan(out[signalling]).all()


def test_half_to_float_is_exact_with_flush_to_zero() -> None:
    """ONNX Runtime's set_denormal_as_zero turns on FTZ/DAZ for the thread that runs a session; a
    worker may run RKNN outputs through the same thread, so widening must not depend on denormals."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])], "identity",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    model.ir_version = 8
    result: dict[str, object] = {}

    def on_a_flushing_thread() -> None:  # FTZ/DAZ are per thread: keep them off the test thread
        options = ort.SessionOptions()
        options.add_session_config_entry("session.set_denormal_as_zero", "1")
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        session.run(None, {"x": np.ones(1, np.float32)})
        result["flushing"] = float(np.float32(1e-40) * np.float32(1.0)) == 0.0
        bits = np.arange(1 << 16, dtype=np.uint16)
        out = np.empty(bits.shape, dtype=np.float32)
        _rknn.half_to_float_into(bits, out)
        result["exact"] = np.array_equal(out.view(np.uint32), bits.view(np.float16).astype(np.float32).view(np.uint32))

    thread = threading.Thread(target=on_a_flushing_thread)
    thread.start()
    thread.join()
    if not result.get("flushing"):
        pytest.skip("this ONNX Runtime build does not flush denormals on the calling thread")
    assert result["exact"]


# ---- dynamic-shape models (Immich exports detection with one "dynamic" input shape) -------------


def test_dynamic_model_gets_its_shape_and_unshared_contexts(double: rd.Double, dynamic_def: rd.DoubleModel) -> None:
    """Rockchip documents that dynamic-shape models refuse rknn_dup_context: with the model bytes at
    hand the bridge initialises the other contexts on their own (each with a copy of the weights)."""
    before = double.counts()
    m = open_model(Path(double.path), dynamic_def, contexts=3, masks=[1, 2, 4], data=dynamic_def.to_bytes())
    assert m.dynamic_shapes == 1 and m.shared_contexts == 1
    assert double.counts()["blob_allocs"] - before["blob_allocs"] == 3
    assert [double.core_mask(m.context_handle(s)) for s in range(3)] == [1, 2, 4]
    image = np.random.default_rng(6).standard_normal((1, 3, 8, 8)).astype(np.float32)
    expected = dynamic_def.expected([rd.nchw_to_nhwc(image)])
    slots = [m.acquire() for _ in range(3)]
    for slot in slots:  # every context had rknn_set_input_shapes, or the double would refuse to run
        np.testing.assert_allclose(write_and_run(m, slot, image)[0], expected[0], rtol=1e-5, atol=1e-5)
        m.release(slot)
    m.close()
    after = double.counts()
    assert (after["contexts"], after["blobs"], after["violations"]) == (before["contexts"], before["blobs"],
                                                                        before["violations"])


def test_dynamic_model_without_bytes_cannot_add_contexts(double: rd.Double, dynamic_def: rd.DoubleModel) -> None:
    m = _rknn.Model(_rknn.Runtime(double.path), dynamic_def.to_bytes())
    with pytest.raises(_rknn.RknnError, match=r"rknn_dup_context for context 1 failed: RKNN_ERR_FAIL"):
        m.prepare(2, [0, 0], [rd.FLOAT32], [rd.FLOAT32, rd.FLOAT32])
    m.close()


def test_dynamic_model_needs_set_input_shapes(libs: dict[str, Path], dynamic_def: rd.DoubleModel,
                                              model_def: rd.DoubleModel) -> None:
    runtime = _rknn.Runtime(str(libs["no_input_shapes"]))
    with pytest.raises(_rknn.RknnError, match="dynamic input shapes .* no function rknn_set_input_shapes") as info:
        _rknn.Model(runtime, dynamic_def.to_bytes())
    assert info.value.code == -102
    m = open_model(libs["no_input_shapes"], model_def)  # static models do not need it
    assert m.dynamic_shapes == 0
    m.close()
    assert rd.Double(libs["no_input_shapes"]).counts()["contexts"] == 0
