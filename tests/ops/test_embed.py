"""immich_ml.ops.embed: L2 normalization against numpy float64, serialization against orjson (what
Immich stores) and against numpy's shortest round-trip float32 digits (Dragon4)."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor

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


def test_l2_zero_rows_stay_zero_and_extremes_stay_finite() -> None:
    x = np.zeros((4, 64), np.float32)
    x[1, 3] = 1e-40  # denormal: its square underflows float32, not the double accumulator
    x[2] = 3e38  # squares overflow float32, not double
    x[3, :2] = [3, 4]
    y = l2_normalize_rows(x)
    assert (y[0] == 0).all()
    assert y[1, 3] == 1.0 and np.count_nonzero(y[1]) == 1
    np.testing.assert_allclose(y[2], 1 / 8, rtol=1e-7)
    np.testing.assert_array_equal(y[3, :2], np.array([0.6, 0.8], np.float32))


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
