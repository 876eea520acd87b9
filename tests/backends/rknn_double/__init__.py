"""The librknnrt.so test double: build it, write its model files, read what it recorded.

The double (``rknn_double*.c``) is compiled by the test session with ``cc -shared -fPIC`` against
our own ABI header (``csrc/rknn/rknn_abi.h``), the same one the bridge uses. Its model files carry
tensor descriptions, an optional custom string and a weight matrix; ``rknn_run`` computes
``y = W . x + b`` so every test can compute the expected answer independently with numpy.
"""

from __future__ import annotations

import ctypes
import shutil
import struct
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
SOURCES = [HERE / name for name in ("rknn_double.c", "rknn_double_model.c", "rknn_double_record.c")]
ABI_DIR = REPO / "csrc" / "rknn"

# Codes from Rockchip's documentation (restated here, independently of rknn_abi.h).
FLOAT32, FLOAT16, INT8, UINT8 = 0, 1, 2, 3
NCHW, NHWC, UNDEFINED = 0, 1, 3

DOUBLE_FLAGS = ["-std=c11", "-O1", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-fvisibility=hidden",
                f"-I{ABI_DIR}"]
VARIANTS = {
    "full": [],
    "no_dup": ["-DRKNN_DOUBLE_WITHOUT_DUP_CONTEXT"],
    "no_io_mem": ["-DRKNN_DOUBLE_WITHOUT_SET_IO_MEM"],
    "no_core_mask": ["-DRKNN_DOUBLE_WITHOUT_SET_CORE_MASK"],
    "no_input_shapes": ["-DRKNN_DOUBLE_WITHOUT_SET_INPUT_SHAPES"],
}


def compiler() -> str:
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        raise RuntimeError("the RKNN tests build a test double of librknnrt.so and need a C compiler (cc)")
    return cc


def build(directory: Path, variant: str = "full") -> Path:
    """Compile the double into ``directory/<variant>/librknnrt.so`` and return its path."""
    out = directory / variant / "librknnrt.so"
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [compiler(), *DOUBLE_FLAGS, *VARIANTS[variant], *map(str, SOURCES), "-o", str(out), "-lpthread", "-lm"],
        check=True,
        capture_output=True,
    )
    return out


@dataclass(frozen=True)
class Tensor:
    name: str
    dims: tuple[int, ...]
    fmt: int = UNDEFINED
    type: int = FLOAT32

    @property
    def n_elems(self) -> int:
        return int(np.prod(self.dims))


@dataclass(frozen=True)
class DoubleModel:
    """A model for the double and the numbers to check it with."""

    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    weights: npt.NDArray[np.float32]  # (total output elements, total input elements)
    bias: npt.NDArray[np.float32]
    custom: str = ""
    dynamic: bool = False  # exported with a (single) dynamic input shape, as Immich's detection models

    def to_bytes(self) -> bytes:
        def record(t: Tensor) -> bytes:
            dims = list(t.dims) + [0] * (4 - len(t.dims))
            return t.name.encode().ljust(64, b"\0") + struct.pack("<I4Iii", len(t.dims), *dims, t.fmt, t.type)

        custom = self.custom.encode()
        flags = 1 if self.dynamic else 0
        header = b"RKNNDBL1" + struct.pack("<IIII", len(self.inputs), len(self.outputs), len(custom), flags)
        tensors = b"".join(record(t) for t in (*self.inputs, *self.outputs))
        return header + tensors + custom + self.weights.astype("<f4").tobytes() + self.bias.astype("<f4").tobytes()

    def expected(self, compiled_inputs: Sequence[npt.NDArray[np.generic]]) -> list[npt.NDArray[np.float64]]:
        """Outputs for inputs given in their compiled layout, in float64."""
        x = np.concatenate([np.asarray(a, dtype=np.float64).reshape(-1) for a in compiled_inputs])
        y = self.weights.astype(np.float64) @ x + self.bias.astype(np.float64)
        outs, start = [], 0
        for t in self.outputs:
            outs.append(y[start:start + t.n_elems].reshape(t.dims))
            start += t.n_elems
        return outs


def make_model(
    inputs: Sequence[Tensor], outputs: Sequence[Tensor], *, custom: str = "", dynamic: bool = False, seed: int = 0
) -> DoubleModel:
    rng = np.random.default_rng(seed)
    cols = sum(t.n_elems for t in inputs)
    rows = sum(t.n_elems for t in outputs)
    weights = (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float32)
    bias = rng.standard_normal(rows).astype(np.float32)
    return DoubleModel(tuple(inputs), tuple(outputs), weights, bias, custom, dynamic)


def nchw_to_nhwc(a: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
    return np.ascontiguousarray(np.transpose(a, (0, 2, 3, 1)))


class Double:
    """What the loaded double recorded (it is the same library instance the bridge dlopen'ed)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        lib = ctypes.CDLL(self.path)
        for name in ("live_weight_blobs", "weight_blob_allocs", "live_mems", "violations", "max_in_flight",
                     "live_contexts"):
            getattr(lib, f"rknn_double_{name}").restype = ctypes.c_int
        lib.rknn_double_core_mask.restype = ctypes.c_longlong
        lib.rknn_double_core_mask.argtypes = [ctypes.c_uint64]
        for name in ("weights_addr", "runs"):
            getattr(lib, f"rknn_double_{name}").restype = ctypes.c_uint64
            getattr(lib, f"rknn_double_{name}").argtypes = [ctypes.c_uint64]
        lib.rknn_double_last_input_addr.restype = ctypes.c_uint64
        lib.rknn_double_last_input_addr.argtypes = [ctypes.c_uint64, ctypes.c_uint32]
        lib.rknn_double_bound_input_fmt.restype = ctypes.c_int
        lib.rknn_double_bound_input_fmt.argtypes = [ctypes.c_uint64, ctypes.c_uint32]
        lib.rknn_double_fail.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
        lib.rknn_double_set_run_delay_us.argtypes = [ctypes.c_uint]
        self._lib = lib

    def counts(self) -> dict[str, int]:
        """Live weight blobs / contexts / memories, blob allocations ever, violations."""
        lib = self._lib
        return {
            "blobs": lib.rknn_double_live_weight_blobs(),
            "blob_allocs": lib.rknn_double_weight_blob_allocs(),
            "contexts": lib.rknn_double_live_contexts(),
            "mems": lib.rknn_double_live_mems(),
            "violations": lib.rknn_double_violations(),
        }

    def core_mask(self, handle: int) -> int:
        return int(self._lib.rknn_double_core_mask(handle))

    def weights_addr(self, handle: int) -> int:
        return int(self._lib.rknn_double_weights_addr(handle))

    def runs(self, handle: int) -> int:
        return int(self._lib.rknn_double_runs(handle))

    def last_input_addr(self, handle: int, index: int = 0) -> int:
        return int(self._lib.rknn_double_last_input_addr(handle, index))

    def bound_input_fmt(self, handle: int, index: int = 0) -> int:
        return int(self._lib.rknn_double_bound_input_fmt(handle, index))

    def max_in_flight(self) -> int:
        return int(self._lib.rknn_double_max_in_flight())

    def fail(self, function: str, nth_call: int = 1, code: int = -1) -> None:
        """Make the ``nth_call``-th next call of ``function`` fail with ``code``."""
        self._lib.rknn_double_fail(function.encode(), nth_call, code)

    def set_run_delay(self, seconds: float) -> None:
        self._lib.rknn_double_set_run_delay_us(int(seconds * 1e6))

    def reset(self) -> None:
        self._lib.rknn_double_reset()


def address(array: npt.NDArray[np.generic]) -> int:
    data: int = array.__array_interface__["data"][0]
    return data
