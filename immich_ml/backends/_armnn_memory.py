"""Buffers for the ARM NN bridge: aligned allocation and batch plans over fixed-shape networks.

ARM NN imports (maps) caller memory only when it is aligned (the bridge requires
``IMPORT_ALIGNMENT`` = 64 bytes), so every buffer handed out here starts on such a boundary.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

ALIGNMENT = 64
# (name, shape, numpy dtype name, byte size), as the bridge describes network tensors.
TensorDesc = tuple[str, tuple[int, ...], str, int]
Array = npt.NDArray[np.generic]


def aligned_empty(shape: Sequence[int], dtype: str | np.dtype[np.generic]) -> Array:
    """Uninitialised C-contiguous array whose data starts on an ALIGNMENT-byte boundary."""
    dt = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    raw = np.empty(nbytes + ALIGNMENT, dtype=np.uint8)
    offset = (-raw.ctypes.data) % ALIGNMENT
    array: Array = raw[offset : offset + nbytes].view(dt).reshape(tuple(shape))
    return array


def is_aligned(array: Array) -> bool:
    return array.ctypes.data % ALIGNMENT == 0


def as_aligned(array: Array, buffer: Array) -> Array:
    """``array`` itself when ARM NN can read it in place (same shape and dtype, dense, aligned);
    otherwise ``buffer`` (same shape) filled with a copy of it."""
    if (
        array.dtype == buffer.dtype
        and array.shape == buffer.shape
        and array.flags.c_contiguous
        and is_aligned(array)
    ):
        return array
    np.copyto(buffer, array, casting="same_kind")
    return buffer


def _nothing() -> None:
    return None


@dataclass
class BatchPlan:
    """Bound buffers for one call: ``count`` items of a network whose batch is fixed at 1 (or
    ``count`` = 1 with the network's exact shapes)."""

    count: int
    input_names: tuple[str, ...]
    inputs: dict[str, Array]
    outputs: list[Array]

    @classmethod
    def create(
        cls, net_inputs: Sequence[TensorDesc], net_outputs: Sequence[TensorDesc], shapes: Mapping[str, tuple[int, ...]]
    ) -> BatchPlan:
        names = tuple(desc[0] for desc in net_inputs)
        unknown = set(shapes) - set(names)
        if unknown:
            raise ValueError(f"unknown inputs {sorted(unknown)}; the network has {list(names)}")
        counts = set()
        for name, shape, _, _ in net_inputs:
            if name not in shapes:
                raise ValueError(f"no shape given for input '{name}' {shape}")
            asked = tuple(int(d) for d in shapes[name])
            if asked == shape:
                counts.add(1)
            elif len(asked) == len(shape) and shape and shape[0] == 1 and asked[1:] == shape[1:] and asked[0] > 0:
                counts.add(asked[0])
            else:
                raise ValueError(f"input '{name}' is fixed at {shape} (or N x {shape[1:]}), asked {asked}")
        if len(counts) != 1:
            raise ValueError(f"inputs ask for different batch sizes {sorted(counts)}")
        count = counts.pop()
        if count > 1 and any(not shape or shape[0] != 1 for _, shape, _, _ in net_outputs):
            raise ValueError(f"a batch of {count} needs outputs with a leading batch dimension of 1")
        inputs = {name: aligned_empty((count, *shape[1:]) if count > 1 else shape, dtype) for name, shape, dtype, _ in net_inputs}
        outputs = [aligned_empty((count, *shape[1:]) if count > 1 else shape, dtype) for _, shape, dtype, _ in net_outputs]
        return cls(count, names, inputs, outputs)

    def items(self, imported: bool, exported: bool) -> Iterator[tuple[list[Array], list[Array], Callable[[], None]]]:
        """Per item: input buffers, output buffers (network order) and a function to call after
        the run. Slices that are not aligned where ARM NN maps memory are staged through aligned
        copies; ``finish`` copies staged outputs back."""
        for k in range(self.count):
            ins = [self._slot(self.inputs[name], k) for name in self.input_names]
            ins = [_staged_in(a) if imported and not is_aligned(a) else a for a in ins]
            outs = [self._slot(array, k) for array in self.outputs]
            staged = [(i, aligned_empty(a.shape, a.dtype)) for i, a in enumerate(outs) if exported and not is_aligned(a)]
            targets = list(outs)
            for i, buffer in staged:
                outs[i] = buffer
            yield ins, outs, (_copier(targets, staged) if staged else _nothing)

    def _slot(self, array: Array, k: int) -> Array:
        return array if self.count == 1 else array[k : k + 1]


def _staged_in(array: Array) -> Array:
    copy = aligned_empty(array.shape, array.dtype)
    np.copyto(copy, array)
    return copy


def _copier(targets: list[Array], staged: list[tuple[int, Array]]) -> Callable[[], None]:
    def finish() -> None:
        for i, buffer in staged:
            np.copyto(targets[i], buffer)

    return finish
