"""Error paths of the compiled RKNN bridge against the librknnrt test double: every failure comes back
as a return code and a message naming the call, nothing leaks, nothing crashes."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rknn_double as rd
from rknn_double.bridge_support import (  # noqa: F401 - fixtures are found by name
    double,
    libs,
    model_def,
    open_model,
    write_and_run,
)

from immich_ml._core import _rknn


def test_missing_library_is_named(tmp_path: Path) -> None:
    with pytest.raises(_rknn.RknnError, match="cannot load .*nowhere/librknnrt.so") as info:
        _rknn.Runtime(str(tmp_path / "nowhere" / "librknnrt.so"))
    assert info.value.code == -101 and _rknn.code_name(-101) == "RKB_ERR_LOAD"


def test_missing_required_function_is_named(libs: dict[str, Path]) -> None:
    with pytest.raises(_rknn.RknnError, match="has no function rknn_set_io_mem") as info:
        _rknn.Runtime(str(libs["no_io_mem"]))
    assert info.value.code == -102


def test_missing_dup_context_allows_one_context_only(libs: dict[str, Path], model_def: rd.DoubleModel) -> None:
    no_dup = rd.Double(libs["no_dup"])
    runtime = _rknn.Runtime(str(libs["no_dup"]))
    assert not runtime.has_function("rknn_dup_context") and runtime.has_function("rknn_init")
    m = _rknn.Model(runtime, model_def.to_bytes())
    with pytest.raises(_rknn.RknnError, match="no function rknn_dup_context.*MACHINE_LEARNING_RKNN_THREADS=1"):
        m.prepare(2, [0, 0], [rd.FLOAT32], [rd.FLOAT32, rd.FLOAT32], model_def.to_bytes())
    m.prepare(1, [0], [rd.FLOAT32], [rd.FLOAT32, rd.FLOAT32])
    slot = m.acquire()
    image = np.ones((1, 3, 8, 8), dtype=np.float32)
    np.testing.assert_allclose(write_and_run(m, slot, image)[0],
                               model_def.expected([rd.nchw_to_nhwc(image)])[0], rtol=1e-5, atol=1e-5)
    m.release(slot)
    m.close()
    assert no_dup.counts()["contexts"] == 0 and no_dup.counts()["mems"] == 0


def test_missing_set_core_mask_is_named(libs: dict[str, Path], model_def: rd.DoubleModel) -> None:
    m = _rknn.Model(_rknn.Runtime(str(libs["no_core_mask"])), model_def.to_bytes())
    with pytest.raises(_rknn.RknnError, match="no function rknn_set_core_mask"):
        m.prepare(2, [1, 2], [rd.FLOAT32], [rd.FLOAT32, rd.FLOAT32])
    m.close()


@pytest.mark.parametrize("corrupt", [b"not a model at all", b"RKNNDBL1" + b"\0" * 30, "truncated"])
def test_corrupt_model_fails_init(double: rd.Double, model_def: rd.DoubleModel, corrupt: bytes | str) -> None:
    data = model_def.to_bytes()[:-4] if corrupt == "truncated" else corrupt
    before = double.counts()
    with pytest.raises(_rknn.RknnError, match=r"rknn_init failed: RKNN_ERR_MODEL_INVALID \(-6\)") as info:
        _rknn.Model(_rknn.Runtime(double.path), data)
    assert info.value.code == -6
    assert double.counts() == before


@pytest.mark.parametrize(
    ("function", "message"),
    [("rknn_query", r"RKNN_QUERY_IN_OUT_NUM\) failed: RKNN_ERR_FAIL"),
     ("rknn_query:input_attr", r"RKNN_QUERY_INPUT_ATTR\) failed: RKNN_ERR_FAIL")],
)
def test_query_failure_destroys_the_context(double: rd.Double, model_def: rd.DoubleModel, function: str,
                                            message: str) -> None:
    before = double.counts()
    double.fail(function)
    with pytest.raises(_rknn.RknnError, match=message):
        _rknn.Model(_rknn.Runtime(double.path), model_def.to_bytes())
    after = double.counts()
    assert (after["contexts"], after["blobs"], after["violations"]) == (before["contexts"], before["blobs"],
                                                                        before["violations"])


def test_custom_string_query_failure_is_not_fatal(double: rd.Double, model_def: rd.DoubleModel) -> None:
    double.fail("rknn_query:custom_string")
    m = _rknn.Model(_rknn.Runtime(double.path), model_def.to_bytes())
    assert m.custom_string == ""
    m.close()


@pytest.mark.parametrize(
    ("function", "nth", "message"),
    [("rknn_create_mem", 4, r"rknn_create_mem\(768 bytes\) failed for input 'images' on context 1"),
     ("rknn_set_io_mem", 3, r"rknn_set_io_mem for output 'heatmap' on context 0 failed: RKNN_ERR_FAIL"),
     ("rknn_dup_context", 2, r"rknn_dup_context for context 2 failed: RKNN_ERR_FAIL"),
     ("rknn_set_core_mask", 2, r"rknn_set_core_mask\(0x2\) for context 1 failed: RKNN_ERR_FAIL")],
)
def test_prepare_failure_releases_what_it_created(double: rd.Double, model_def: rd.DoubleModel, function: str,
                                                  nth: int, message: str) -> None:
    before = double.counts()
    m = _rknn.Model(_rknn.Runtime(double.path), model_def.to_bytes())
    double.fail(function, nth)
    with pytest.raises(_rknn.RknnError, match=message):
        m.prepare(3, [1, 2, 4], [rd.FLOAT32], [rd.FLOAT32, rd.FLOAT32])
    during = double.counts()
    assert (during["contexts"], during["mems"]) == (before["contexts"] + 1, before["mems"])
    with pytest.raises(_rknn.RknnError, match="RKB_ERR_STATE"):
        m.acquire()
    m.close()
    after = double.counts()
    assert (after["contexts"], after["mems"], after["blobs"], after["violations"]) == (
        before["contexts"], before["mems"], before["blobs"], before["violations"])


def test_run_failure_is_reported_and_the_context_stays_usable(double: rd.Double,
                                                              model_def: rd.DoubleModel) -> None:
    m = open_model(Path(double.path), model_def)
    slot = m.acquire()
    double.fail("rknn_run", 1, -2)
    image = np.ones((1, 3, 8, 8), dtype=np.float32)
    with pytest.raises(_rknn.RknnError, match=r"rknn_run on context 0 failed: RKNN_ERR_TIMEOUT \(-2\)") as info:
        write_and_run(m, slot, image)
    assert info.value.code == -2
    np.testing.assert_allclose(write_and_run(m, slot, image)[0],
                               model_def.expected([rd.nchw_to_nhwc(image)])[0], rtol=1e-5, atol=1e-5)
    m.release(slot)
    m.close()


def test_bad_calls_raise_instead_of_crashing(double: rd.Double, model_def: rd.DoubleModel) -> None:
    m = open_model(Path(double.path), model_def)
    with pytest.raises(_rknn.RknnError, match="already prepared"):
        m.prepare(1, [0], [rd.FLOAT32], [rd.FLOAT32, rd.FLOAT32])
    with pytest.raises(_rknn.RknnError, match="one core mask per context"):
        _rknn.Model(_rknn.Runtime(double.path), model_def.to_bytes()).prepare(2, [0], [0], [0, 0])
    with pytest.raises(_rknn.RknnError, match="no such runtime buffer"):
        m.input_buffer(0, 5)
    slot = m.acquire()
    with pytest.raises(_rknn.RknnError, match="exactly its element count"):
        m.output_into(slot, 0, np.empty(3, dtype=np.float32))
    m.release(slot)
    m.close()
    with pytest.raises(_rknn.RknnError, match="RKB_ERR_CLOSED"):
        m.acquire()
    with pytest.raises(_rknn.RknnError, match="no such runtime buffer"):
        m.input_buffer(0, 0)
    m.close()
    with pytest.raises(_rknn.RknnError, match="not open"):
        _rknn.Model.__new__(_rknn.Model).acquire()


def test_close_waits_for_a_leased_context(double: rd.Double, model_def: rd.DoubleModel) -> None:
    m = open_model(Path(double.path), model_def, contexts=2)
    slot = m.acquire()
    closed = threading.Event()

    def close() -> None:
        m.close()
        closed.set()

    closer = threading.Thread(target=close)
    closer.start()
    time.sleep(0.05)
    assert not closed.is_set()
    write_and_run(m, slot, np.zeros((1, 3, 8, 8), dtype=np.float32))  # still usable while leased
    m.release(slot)
    closer.join(timeout=5)
    assert closed.is_set()
    assert double.counts()["violations"] == 0
