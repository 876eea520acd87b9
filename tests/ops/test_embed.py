"""immich_ml.ops.embed: serialization against orjson (what Immich stores) and against numpy's
shortest round-trip float32 digits (Dragon4)."""

from __future__ import annotations

import json
import re

import numpy as np
import orjson
import pytest

from immich_ml.errors import InvalidInput
from immich_ml.ops.embed import serialize_embedding

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
