"""ARM NN bridge loader and wrapper (pyx/_armnn.pyx); the bridge (csrc/armnn) is a separate
``_armnn_bridge_abi<N>.so`` opened by :func:`load`. Use immich_ml.backends.armnn, which finds the
library and the bridge and reports why ARM NN is unavailable."""

from collections.abc import Sequence
from typing import Any

from typing_extensions import Buffer, disjoint_base

IMPORT_ALIGNMENT: int
API_VERSION: int

class ArmnnError(RuntimeError):
    status: int
    def __init__(self, status: int, message: str) -> None: ...

def load(bridge_path: str, preload: Sequence[str] = ()) -> dict[str, Any]: ...
def loaded() -> dict[str, Any] | None: ...
def capabilities() -> dict[str, Any]: ...
def convert(source: str, destination: str) -> None: ...

@disjoint_base
class Runtime:
    def __init__(
        self, backends: str = "", tuning_level: int = 0, tuning_file: str = "", log_severity: int = 3
    ) -> None: ...
    @property
    def preferred(self) -> tuple[str, ...]: ...
    @property
    def registered(self) -> tuple[str, ...]: ...

@disjoint_base
class Network:
    # (name, shape, numpy dtype name, byte size) per tensor, in binding order.
    inputs: tuple[tuple[str, tuple[int, ...], str, int], ...]
    outputs: tuple[tuple[str, tuple[int, ...], str, int], ...]
    # fp16_applied, inputs_imported, outputs_exported, fast_math_applied, cached_network_applied
    # (bool); backends ("CpuRef:7"), notes (str).
    report: dict[str, Any]
    def __init__(
        self,
        runtime: Runtime,
        path: str,
        *,
        fp16: bool = False,
        fast_math: bool = True,
        import_memory: bool = True,
        cached_network_path: str = "",
    ) -> None: ...
    def run(self, inputs: Sequence[Buffer], outputs: Sequence[Buffer]) -> None: ...
    def close(self) -> None: ...
