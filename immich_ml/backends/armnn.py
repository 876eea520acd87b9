"""ARM NN backend: Immich's ``model.armnn`` networks on Mali GPUs, through the compiled bridge.

As in Immich, ARM NN is chosen automatically when ``libmali.so`` loads and
``MACHINE_LEARNING_ANN`` is true; ``MACHINE_LEARNING_DEVICE=armnn`` forces it without a Mali GPU
(ARM NN's CpuAcc/CpuRef backends: tests and diagnosis). The bridge (``immich_ml._core._armnn``)
is imported lazily, so a machine without ARM NN still imports immich_ml and :func:`probe` says why.

Per process there is one ARM NN runtime (GpuAcc tuning file ``<cache>/gpu-tuning.ann``, written
when the last session using it closes); each model is one network with its own lock inside the
bridge. Inputs are memory ARM NN imports instead of copying where the backend allows (CpuRef and
CpuAcc do; GpuAcc in ARM NN 20.08 does not, and the bridge then copies and says so).

With Debian's ARM NN 20.08 (what the tests run on, CpuRef backend): no FastMathEnabled or cached
network file (20.11 / 21.02 features, reported in ``placement.extra["notes"]``), no ONNX parser,
and ``.armnn`` files with several outputs are refused (its deserializer would abort the process on
them), so e.g. SCRFD falls back to ONNX there. GpuAcc, the tuning file and FP16 speed need a board.
"""

from __future__ import annotations

import atexit
import ctypes
import importlib
import logging
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from immich_ml.backends import armnn_library, oom
from immich_ml.backends._armnn_memory import BatchPlan, as_aligned
from immich_ml.backends.base import (
    Availability,
    BoundCall,
    ModelArtifacts,
    Placement,
    SessionMetadata,
    SessionOptions,
    Target,
    TensorSpec,
)
from immich_ml.config import Settings
from immich_ml.errors import (
    AcceleratorOutOfMemory,
    BackendError,
    BackendUnavailable,
    FormatUnavailable,
    ModelLoadError,
)

if TYPE_CHECKING:
    from immich_ml._core import _armnn

log = logging.getLogger(__name__)

TUNING_FILE = "gpu-tuning.ann"
CACHED_NETWORK_FILE = "model.anncache"
BUILD_HINT = (
    "install ARM NN's headers (Debian/Ubuntu: scripts/install-armnn.sh, i.e. apt install "
    "libarmnn-dev libarmnntfliteparser-dev) and reinstall immich-ml from source"
)
RUNTIME_HINT = (
    "install ARM NN's libraries (Debian/Ubuntu: apt install libarmnn22 libarmnntfliteparser22 "
    "and a backend: libarmnn-gpuacc-backend22 on a Mali board) or point MACHINE_LEARNING_ANN_LIBRARY "
    "at the board's libarmnn.so.<N>"
)
_GPU_HINT = "install ARM NN's Mali GPU backend (Debian/Ubuntu: libarmnn-gpuacc-backend22)"
# A Mali board runs on the GPU, with CpuAcc only for layers GpuAcc lacks: CpuRef is a slow
# reference implementation, allowed only when ARM NN is forced (tests, diagnosis).
_AUTO_BACKENDS = "GpuAcc,CpuAcc"
_FORCED_BACKENDS = "GpuAcc,CpuAcc,CpuRef"
# Bridge status codes (csrc/armnn/bridge.hpp).
_UNSUPPORTED_FORMAT, _PARSE_FAILED, _OPTIMIZE_FAILED = 3, 4, 5
_SEVERITY = {"verbose": 0, "debug": 1, "log": 3, "info": 3, "warn": 3, "warning": 3}


@cache
def _bridge(library: str = "") -> tuple[ModuleType | None, str]:
    """The loaded bridge module, or None and the reason it cannot be used.

    ``library``: ``MACHINE_LEARNING_ANN_LIBRARY`` (a libarmnn file or directory; "" = the loader's
    search path). One bridge per process: once one is loaded, later calls return it.
    """
    try:
        # import_module, not "from ... import": a missing submodule must surface as
        # ModuleNotFoundError naming it.
        module = importlib.import_module("immich_ml._core._armnn")
    except ModuleNotFoundError as exc:
        if exc.name != "immich_ml._core._armnn":
            raise
        return None, "not built: the compiled core has no _armnn module; reinstall immich-ml"
    if module.loaded() is not None:
        return module, ""
    shipped = armnn_library.bridges(Path(module.__file__ or "").parent)
    if not shipped:
        return None, f"this build of immich-ml has no ARM NN bridge (no ARM NN headers when it was built); {BUILD_HINT}"
    choice = armnn_library.choose(library, shipped)
    if isinstance(choice, str):
        return None, f"{choice}; {RUNTIME_HINT}"
    errors: list[str] = []
    for candidate in choice if isinstance(choice, list) else [choice]:
        try:
            module.load(str(candidate.bridge), [str(path) for path in candidate.preload])
        except OSError as exc:
            errors.append(f"libarmnn.so.{candidate.abi}: {exc}")
            continue
        log.info(
            "ARM NN bridge for %s loaded%s",
            armnn_library.release_name(candidate.abi),
            f" with {candidate.preload[0]}" if candidate.preload else "",
        )
        return module, ""
    found = "" if library else f"; {armnn_library.installed_hint()}"
    return None, f"libarmnn could not be loaded ({'; '.join(errors)}){found}; {RUNTIME_HINT}"


def _mali_error() -> str | None:
    """None when ``libmali.so`` (the Mali GPU's OpenCL driver) loads, else why not."""
    try:
        ctypes.CDLL("libmali.so")
    except OSError as exc:
        return f"libmali.so could not be loaded ({exc}); ARM NN is used on Mali GPUs"
    return None


def capabilities(library: str = "") -> dict[str, object]:
    """What the loaded bridge supports (version, parsers, serializer, fast math, cached network)."""
    module, reason = _bridge(library)
    if module is None:
        raise BackendUnavailable(f"ARM NN is unavailable: {reason}")
    caps: dict[str, object] = module.capabilities()
    return caps


def probe(settings: Settings) -> Availability:
    """Can ARM NN serve models in this process? Cheap: loads libmali and the bridge, no runtime."""
    if not settings.ann:
        return Availability(False, "MACHINE_LEARNING_ANN is false")
    forced = settings.device == "armnn"
    if not forced and settings.device != "auto":
        return Availability(False, f"MACHINE_LEARNING_DEVICE={settings.device} selects another backend")
    if not forced and (error := _mali_error()) is not None:
        return Availability(False, error)
    module, reason = _bridge(settings.ann_library)
    if module is None:
        return Availability(False, reason)
    version = module.capabilities()["version"]
    if forced:
        return Availability(True, f"MACHINE_LEARNING_DEVICE=armnn (libarmnn {version})")
    return Availability(True, f"libmali.so loaded (libarmnn {version})")


class _Runtimes:
    """One ARM NN runtime per configuration, shared by the sessions using it.

    Held weakly: when the last session closes, the runtime is destroyed, which is when ARM NN
    writes the GpuAcc tuning file. Sessions still open at interpreter exit are closed first.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runtimes: weakref.WeakValueDictionary[tuple[str, int, str, int], _armnn.Runtime] = (
            weakref.WeakValueDictionary()
        )
        self.sessions: weakref.WeakSet[ArmnnSession] = weakref.WeakSet()
        atexit.register(self.close_all)

    def get(self, module: ModuleType, settings: Settings, forced: bool) -> _armnn.Runtime:
        backends = _FORCED_BACKENDS if forced else _AUTO_BACKENDS
        tuning = ""
        if not forced or _mali_error() is None:
            # Immich creates the tuning file when missing; ARM NN fills it in at shutdown.
            path = settings.cache_folder / TUNING_FILE
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(exist_ok=True)
            tuning = str(path)
        severity = _SEVERITY.get(settings.log_level, 4)
        key = (backends, settings.ann_tuning_level, tuning, severity)
        with self._lock:
            runtime = self._runtimes.get(key)
            if runtime is None:
                try:
                    runtime = module.Runtime(backends, settings.ann_tuning_level, tuning, severity)
                except (module.ArmnnError, ValueError) as exc:
                    hint = "" if forced else f"; {_GPU_HINT}"
                    raise BackendUnavailable(f"ARM NN runtime could not start: {exc}{hint}") from exc
                if not forced and "GpuAcc" not in runtime.preferred:
                    raise BackendUnavailable(
                        f"ARM NN has no GpuAcc backend (it has {', '.join(runtime.registered)}); {_GPU_HINT}"
                    )
                self._runtimes[key] = runtime
            return runtime

    def close_all(self) -> None:
        for session in list(self.sessions):
            session.close()


_RUNTIMES = _Runtimes()


class _ArmnnCall:
    def __init__(self, session: ArmnnSession, plan: BatchPlan) -> None:
        self._session = session
        self._plan = plan

    @property
    def inputs(self) -> Mapping[str, npt.NDArray[np.generic]]:
        return self._plan.inputs

    def run(self) -> Sequence[npt.NDArray[np.generic]]:
        return self._session._execute(self._plan)


class ArmnnSession(SessionMetadata):
    """A ``model.armnn`` network behind the :class:`~immich_ml.backends.base.Session` protocol.

    Shapes are fixed by the network. ``bind`` also accepts a leading dimension that is a multiple
    of the network's batch of 1 (e.g. 4 faces for a (1,3,112,112) recognizer): the items then run
    one after another on slices of the same bound buffers, without copies where alignment allows.
    """

    def __init__(
        self, artifacts: ModelArtifacts, settings: Settings, target: Target, options: SessionOptions
    ) -> None:
        module, reason = _bridge(settings.ann_library)
        if module is None:
            raise BackendUnavailable(f"ARM NN is unavailable: {reason}")
        # Immich's warning names the model (<cache>/<task>/<name>/<type>); logs use the full label.
        name = artifacts.directory.parent.name
        label = options.label or name
        path = artifacts.armnn
        if path is None or not path.is_file():
            raise FormatUnavailable(
                f"ARMNN is available, but model '{name}' does not support it "
                f"({path if path is not None else artifacts.directory / 'model.armnn'} not found)."
            )
        forced = settings.device == "armnn"
        runtime = _RUNTIMES.get(module, settings, forced)
        # Dropped on close: the runtime (and the tuning file write) ends with its last session.
        self._runtime: _armnn.Runtime | None = runtime
        cache_path = path.with_name(CACHED_NETWORK_FILE)
        try:
            self._network = module.Network(
                runtime,
                str(path),
                fp16=settings.ann_fp16_turbo,
                fast_math=True,
                import_memory=True,
                cached_network_path=str(cache_path),
            )
        except FileNotFoundError as exc:
            raise FormatUnavailable(f"ARMNN is available, but model '{name}' does not support it ({exc}).") from exc
        except module.ArmnnError as exc:
            raise _load_error(name, path, exc) from exc
        self._module = module
        self._inputs = tuple(TensorSpec(n, tuple(s), d) for n, s, d, _ in self._network.inputs)
        self._outputs = tuple(TensorSpec(n, tuple(s), d) for n, s, d, _ in self._network.outputs)
        self._placement = _placement(self._network.report, settings, target, runtime, path)
        self._closed = False
        _RUNTIMES.sessions.add(self)
        log.info(
            "Loaded ANN model %s from %s on %s (%s)",
            label,
            path,
            self._placement.provider,
            ", ".join(f"{k}={v}" for k, v in self._placement.extra.items() if v),
        )
        if self._placement.fallback_reason:
            log.warning("ARM NN model %s: %s", label, self._placement.fallback_reason)


    @property
    def memory_imported(self) -> bool:
        """True when ARM NN reads the bound input buffers in place (no copy)."""
        return bool(self._network.report["inputs_imported"])

    @contextmanager
    def bind(self, shapes: Mapping[str, tuple[int, ...]]) -> Iterator[BoundCall]:
        yield _ArmnnCall(self, self._plan(shapes))

    def _plan(self, shapes: Mapping[str, tuple[int, ...]]) -> BatchPlan:
        if self._closed:
            raise BackendError("the ARM NN session is closed")
        try:
            return BatchPlan.create(self._network.inputs, self._network.outputs, shapes)
        except ValueError as exc:
            raise BackendError(f"ARM NN cannot bind these shapes: {exc}") from exc

    def _execute(self, plan: BatchPlan) -> list[npt.NDArray[np.generic]]:
        if self._closed:
            raise BackendError("the ARM NN session is closed")
        try:
            for inputs, outputs, finish in plan.items(self.memory_imported, self._exports):
                self._network.run(inputs, outputs)
                finish()
        except (self._module.ArmnnError, ValueError) as exc:
            if oom.is_out_of_memory(str(exc)):
                raise AcceleratorOutOfMemory(f"ARM NN ran out of memory running the model: {exc}") from exc
            raise BackendError(f"ARM NN failed to run the model: {exc}") from exc
        return list(plan.outputs)

    @property
    def _exports(self) -> bool:
        return bool(self._network.report["outputs_exported"])

    def run(self, feeds: Mapping[str, npt.NDArray[np.generic]]) -> list[npt.NDArray[np.generic]]:
        plan = self._plan({name: tuple(array.shape) for name, array in feeds.items()})
        for spec in self._inputs:
            # A caller array that is already aligned, dense and of the right type is used as is.
            plan.inputs[spec.name] = as_aligned(feeds[spec.name], plan.inputs[spec.name])
        return self._execute(plan)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._network.close()
        self._runtime = None
        _RUNTIMES.sessions.discard(self)


def _load_error(name: str, path: object, exc: _armnn.ArmnnError) -> Exception:
    """Bridge load failures → the service's errors. FormatUnavailable makes the registry load the
    ONNX model instead; ModelLoadError makes the model layer clear the cache folder and download
    again, so it is kept for files that are damaged, not for ones this ARM NN cannot read (a
    layer newer than the library, say), which a fresh download would not fix."""
    message = str(exc)
    if exc.status == _PARSE_FAILED and ("conform" in message or "null) binary content" in message):
        return ModelLoadError(f"ARM NN could not read {path} (damaged file): {message}")
    if exc.status in (_UNSUPPORTED_FORMAT, _PARSE_FAILED, _OPTIMIZE_FAILED):
        return FormatUnavailable(f"ARMNN is available, but model '{name}' does not support it ({message}).")
    return BackendUnavailable(f"ARM NN could not load {path}: {message}")


def _placement(
    report: Mapping[str, object], settings: Settings, target: Target, runtime: _armnn.Runtime, path: object
) -> Placement:
    layers = str(report["backends"])
    main = layers.split(":", 1)[0] if layers else runtime.preferred[0]
    notes = str(report["notes"])
    fp16_failed = settings.ann_fp16_turbo and not report["fp16_applied"]
    if report["inputs_imported"]:
        memory = "inputs imported" + (", outputs exported" if report["outputs_exported"] else "")
    else:
        memory = "copied"
    return Placement(
        backend="armnn",
        provider=f"armnn:{main}",
        device=main,
        requested=str(target),
        precision="FP16" if report["fp16_applied"] else "FP32",
        fallback_reason=(f"FP16 turbo requested but not applied: {notes}" if fp16_failed else None),
        extra={
            "layers": layers,
            "memory": memory,
            "tuning_level": str(settings.ann_tuning_level),
            "cached_network": str(path) if report["cached_network_applied"] else "",
            "notes": notes,
        },
    )
