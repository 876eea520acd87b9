"""Embedding output: row-wise L2 normalization and the JSON string Immich stores.

``l2_normalize_rows`` is a façade over ``immich_ml._core._embed`` (csrc/kernels/embed.cpp).
``serialize_embedding`` uses orjson: a compiled serializer was measured against it and did not
win (benchmarks/bench_embed.py), so the reference implementation is the product one.
"""

from __future__ import annotations

import numpy as np
import orjson
from numpy.typing import NDArray

from immich_ml._core import _embed
from immich_ml.errors import InvalidInput

__all__ = ["l2_normalize_rows", "serialize_embedding"]


def _check_float32(name: str, array: object) -> np.ndarray:
    if not isinstance(array, np.ndarray):
        raise InvalidInput(f"{name} must be a numpy array, got {type(array).__name__}.")
    if array.dtype != np.float32:
        raise InvalidInput(f"{name} must be float32, got {array.dtype}.")
    if not array.flags.c_contiguous:
        raise InvalidInput(f"{name} must be C-contiguous.")
    return array


def l2_normalize_rows(x: NDArray[np.float32]) -> NDArray[np.float32]:
    """Returns a new array with every row divided by its L2 norm.

    x: (rows, dim) float32 C-contiguous, or (dim,) treated as one row; the result has x's shape.
    Rows of norm 0 stay 0. The norm is accumulated in double precision. Subnormal inputs and
    outputs are kept whatever the calling thread's flush-to-zero / denormals-are-zero mode (ONNX
    Runtime turns it on in workers), so the stored embedding does not depend on the thread; the
    thread's mode is left as it was.
    """
    _check_float32("x", x)
    if x.ndim not in (1, 2):
        raise InvalidInput(f"x must have shape (rows, dim) or (dim,), got {x.shape}.")
    out = np.empty_like(x)
    if x.size:
        rows = x.reshape(-1, x.shape[-1])
        _embed.l2_normalize_rows(rows, out.reshape(rows.shape))
    return out


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
