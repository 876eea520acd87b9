"""Embedding output: the JSON string Immich stores.

``serialize_embedding`` uses orjson: a compiled serializer was measured against it and did not
win (benchmarks/bench_embed.py), so the reference implementation is the product one.
"""

from __future__ import annotations

import numpy as np
import orjson
from numpy.typing import NDArray

from immich_ml.errors import InvalidInput

__all__ = ["serialize_embedding"]


def _check_float32(name: str, array: object) -> np.ndarray:
    if not isinstance(array, np.ndarray):
        raise InvalidInput(f"{name} must be a numpy array, got {type(array).__name__}.")
    if array.dtype != np.float32:
        raise InvalidInput(f"{name} must be float32, got {array.dtype}.")
    if not array.flags.c_contiguous:
        raise InvalidInput(f"{name} must be C-contiguous.")
    return array


def serialize_embedding(vector: NDArray[np.float32]) -> str:
    """The JSON array string Immich writes into its vector column, e.g. ``"[0.0123,-0.0456]"``.

    vector: (dim,) float32 C-contiguous. Byte-identical to
    ``orjson.dumps(vector, option=orjson.OPT_SERIALIZE_NUMPY).decode()``: shortest round-trip
    float32 digits, NaN and infinity as ``null``.
    """
    _check_float32("vector", vector)
    if vector.ndim != 1:
        raise InvalidInput(f"vector must have shape (dim,), got {vector.shape}.")
    return orjson.dumps(vector, option=orjson.OPT_SERIALIZE_NUMPY).decode()
