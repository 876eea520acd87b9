"""immich_ml.ops.embed: L2 normalization against numpy float64, serialization against orjson (what
Immich stores) and against numpy's shortest round-trip float32 digits (Dragon4)."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import platform
import re
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import orjson
import pytest

from immich_ml.errors import InvalidInput
from immich_ml.ops.embed import l2_normalize_rows, serialize_embedding

# --- l2_normalize_rows ------------------------------------------------------------------------------


def reference_l2(x: np.ndarray) -> np.ndarray:
    x64 = x.astype(np.float64)
    norm = np.sqrt((x64 * x64).sum(axis=-1, keepdims=True))
    return np.divide(x64, norm, out=np.zeros_like(x64), where=norm > 0).astype(np.float32)


@pytest.mark.parametrize("shape", [(1, 512), (7, 512), (5, 128), (3, 13), (512,), (2, 1)])
def test_l2_matches_numpy(shape) -> None:
    rng = np.random.default_rng(sum(shape))
    x = (rng.standard_normal(shape) * rng.uniform(1e-3, 1e3)).astype(np.float32)
    before = x.copy()
    y = l2_normalize_rows(x)
    assert y.shape == x.shape and y.dtype == np.float32
    np.testing.assert_array_max_ulp(y, reference_l2(x), maxulp=1)
    np.testing.assert_allclose(np.linalg.norm(y.astype(np.float64), axis=-1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(x, before)


# Workers run ONNX Runtime with session.set_denormal_as_zero, which turns on flush-to-zero (FTZ) and
# denormals-are-zero (DAZ) for the calling thread, and the thread (and threads it starts) keeps them:
# within one process the tests after an ONNX Runtime test run in that mode. The kernel's results must
# not depend on it, so these tests set each mode explicitly and build subnormal inputs from their bit
# patterns (a float32 conversion on a flushing thread would turn them into 0 before the kernel ran).
_FLUSH_BITS = 0x8040  # MXCSR FTZ | DAZ


def flushing() -> bool:
    """Whether this thread flushes subnormals, seen through numpy's own float32 arithmetic."""
    return float(np.float32(1e-40) * np.float32(1.0)) == 0.0


def subnormal(value: float) -> np.float32:
    """The float32 subnormal nearest `value` (< 1.1754944e-38), made from its bits."""
    return np.array([round(value / 2.0**-149)], np.uint32).view(np.float32)[0]


@contextmanager
def subnormal_mode(flush: bool) -> Iterator[None]:
    """Runs the block with FTZ/DAZ on or off on this thread (glibc fenv on x86-64), then puts the
    thread's previous mode back."""
    libm_name = ctypes.util.find_library("m")
    if platform.machine().lower() not in ("x86_64", "amd64") or sys.platform != "linux" or not libm_name:
        pytest.skip("setting MXCSR from a test needs glibc on x86-64")
    libm = ctypes.CDLL(libm_name)
    saved = (ctypes.c_uint32 * 8)()  # fenv_t: 28-byte x87 environment, then MXCSR
    assert libm.fegetenv(saved) == 0
    wanted = (ctypes.c_uint32 * 8)(*saved)
    wanted[7] = (saved[7] | _FLUSH_BITS) if flush else (saved[7] & ~_FLUSH_BITS)
    assert libm.fesetenv(wanted) == 0
    try:
        assert flushing() == flush
        yield
    finally:
        libm.fesetenv(saved)


@pytest.mark.parametrize("flush", [False, True], ids=["ieee", "ftz-daz"])
def test_l2_zero_rows_stay_zero_and_extremes_stay_finite(flush: bool) -> None:
    with subnormal_mode(flush):
        x = np.zeros((4, 64), np.float32)
        x[1, 3] = subnormal(1e-40)  # denormal: its square underflows float32, not the double accumulator
        x[2] = 3e38  # squares overflow float32, not double
        x[3, :2] = [3, 4]
        y = l2_normalize_rows(x)
        assert flushing() == flush  # the caller's mode is left as it was
    assert (y[0] == 0).all()
    assert y[1, 3] == 1.0 and np.count_nonzero(y[1]) == 1
    np.testing.assert_allclose(y[2], 1 / 8, rtol=1e-7)
    np.testing.assert_array_equal(y[3, :2], np.array([0.6, 0.8], np.float32))


@pytest.mark.parametrize("flush", [False, True], ids=["ieee", "ftz-daz"])
def test_l2_keeps_subnormal_outputs_and_inputs(flush: bool) -> None:
    """Rows with subnormal entries next to normal ones: quotients below float32's normal range stay
    (not flushed to 0) and subnormal inputs count, in both modes; compared with float64 numpy run
    on the bits in IEEE mode."""
    bits = np.random.default_rng(5).integers(1, 1 << 23, (3, 16), dtype=np.uint32)  # all subnormal
    x = bits.view(np.float32).copy()
    x[0, 0] = np.float32(1e4)  # quotients of the rest ~1e-42: subnormal outputs
    x[1, :2] = np.float32(1e-30)  # tiny but normal: subnormal inputs shift the norm
    with subnormal_mode(flush):
        y = l2_normalize_rows(x)
    with subnormal_mode(False):  # numpy's comparisons would flush subnormals too
        expected = reference_l2(x)
        assert (np.abs(expected[0, 1:]) < np.finfo(np.float32).tiny).all()
        assert np.count_nonzero(expected) > 40  # and most of them did not underflow to 0
        np.testing.assert_array_max_ulp(y, expected, maxulp=1)


def test_l2_on_a_thread_where_onnx_runtime_flushes() -> None:
    """The production path: a worker thread that ran a session with set_denormal_as_zero."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])], "identity",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])  # fmt: skip
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    model.ir_version = 8
    x = np.zeros((2, 8), np.float32)
    x[0, 5] = subnormal(3e-39)
    x[1, :2] = [3, 4]
    result: dict[str, object] = {}

    def on_a_worker_thread() -> None:  # FTZ/DAZ are per thread: keep them off the test thread
        options = ort.SessionOptions()
        options.add_session_config_entry("session.set_denormal_as_zero", "1")
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        session.run(None, {"x": np.ones(1, np.float32)})
        result["flushing"] = flushing()
        result["y"] = l2_normalize_rows(x)
        result["still flushing"] = flushing()

    thread = threading.Thread(target=on_a_worker_thread)
    thread.start()
    thread.join()
    if not result["flushing"]:  # ONNX Runtime applies the option of a process's first session only
        pytest.skip("ONNX Runtime did not turn on flush-to-zero on this thread")
    assert result["still flushing"]
    y = result["y"]
    assert isinstance(y, np.ndarray)
    np.testing.assert_array_equal(y[0], np.eye(8, dtype=np.float32)[5])
    np.testing.assert_array_equal(y[1, :2], np.array([0.6, 0.8], np.float32))


def test_l2_non_finite_rows_do_not_crash() -> None:
    x = np.ones((2, 8), np.float32)
    x[0, 2] = np.nan
    y = l2_normalize_rows(x)
    assert np.isnan(y[0]).all()
    np.testing.assert_array_equal(y[1], reference_l2(x[1:])[0])


def test_l2_empty_shapes() -> None:
    assert l2_normalize_rows(np.zeros((0, 512), np.float32)).shape == (0, 512)
    assert l2_normalize_rows(np.zeros((3, 0), np.float32)).shape == (3, 0)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.ones((2, 4)), "float32"),
        (np.ones((2, 3, 4), np.float32), "shape"),
        (np.ones((4, 8), np.float32)[:, ::2], "C-contiguous"),
        ([1.0, 2.0], "numpy array"),
    ],
)
def test_l2_bad_input(bad, message) -> None:
    with pytest.raises(InvalidInput, match=message):
        l2_normalize_rows(bad)


def test_l2_threads_give_the_serial_results() -> None:
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal((16, 512)).astype(np.float32) for _ in range(32)]
    serial = [l2_normalize_rows(x) for x in inputs]
    with ThreadPoolExecutor(8) as pool:
        for expected, found in zip(serial, pool.map(l2_normalize_rows, inputs)):
            np.testing.assert_array_equal(found, expected)


# --- serialize_embedding ----------------------------------------------------------------------------


def awkward_vectors(rng: np.random.Generator) -> list[np.ndarray]:
    """Normal embeddings plus every float32 region: denormals, tiny, huge, negative, zero signs,
    integers, exponent-form boundaries, NaN and infinity, and random bit patterns."""
    vectors = []
    for dim in (512, 128):
        v = rng.standard_normal(dim).astype(np.float32)
        vectors.append(v / np.linalg.norm(v))
    for _ in range(40):
        wide = rng.standard_normal(512) * 10.0 ** rng.integers(-45, 38, 512)
        vectors.append(wide.astype(np.float32))
        vectors.append(rng.integers(0, 2**32, 512, dtype=np.uint64).astype(np.uint32).view(np.float32))
        vectors.append((rng.integers(-999, 999, 512) * 10.0 ** rng.integers(-9, 15, 512)).astype(np.float32))
    special = [0.0, -0.0, 1.0, -1.0, 1e-45, -1e-45, 1.1754942e-38, 1.17549435e-38, 3.4028235e38,
               -3.4028235e38, 1e-7, 1e-6, 9.999999e-7, 1e12, 9.999999e12, 1e13, 123456789.0, 0.1,
               np.nan, np.inf, -np.inf]  # fmt: skip
    vectors.append(np.array(special, np.float32))
    vectors.append(np.zeros(0, np.float32))
    return vectors


def test_serialization_is_byte_identical_to_orjson() -> None:
    for v in awkward_vectors(np.random.default_rng(2)):
        assert serialize_embedding(v) == orjson.dumps(v, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def _digits(text: str) -> str:
    mantissa = re.split("[eE]", text.lstrip("-"))[0]
    return mantissa.replace(".", "").lstrip("0").rstrip("0") or "0"


def test_serialization_round_trips_with_shortest_digits() -> None:
    for v in awkward_vectors(np.random.default_rng(3)):
        text = serialize_embedding(v)
        assert text.startswith("[") and text.endswith("]") and " " not in text
        values = json.loads(text)
        assert len(values) == v.size
        for token, parsed, original in zip(text[1:-1].split(",") if v.size else [], values, v):
            if not np.isfinite(original):
                assert parsed is None and token == "null"
                continue
            assert np.float32(parsed) == original
            assert np.signbit(np.float32(parsed)) == np.signbit(original)
            shortest = np.format_float_scientific(original, unique=True)
            assert _digits(token) == _digits(shortest), (token, shortest)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.ones(4), "float32"),
        (np.ones((2, 4), np.float32), "shape"),
        (np.ones(8, np.float32)[::2], "C-contiguous"),
        ([0.5], "numpy array"),
    ],
)
def test_serialize_bad_input(bad, message) -> None:
    with pytest.raises(InvalidInput, match=message):
        serialize_embedding(bad)
