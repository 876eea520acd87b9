"""RKNN backend: Rockchip NPUs (RK3566/RK3568/RK3576/RK3588) through librknnrt's C API.

The compiled bridge (``immich_ml._core._rknn``) opens ``librknnrt.so`` at run time, so nothing here
needs Rockchip's Python toolkit. One model gets ``MACHINE_LEARNING_RKNN_THREADS`` contexts: the first
from ``rknn_init``, the rest from ``rknn_dup_context`` so they share one copy of the weights (RKNNLite
loads them once per thread). On RK3576/RK3588 context *i* is pinned to NPU core *i* (modulo the core
count) when there is more than one. Each context has its own input memory from ``rknn_create_mem``;
``bind()`` leases a context and hands out numpy views of that memory, so the compiled preprocessing
writes straight into what the NPU reads.

Models live at ``<cache>/<task>/<name>/<type>/rknpu/<soc>/model.rknn`` (Immich's layout). A model
without one raises :class:`~immich_ml.errors.FormatUnavailable`; the registry loads ONNX instead.
"""

from __future__ import annotations

import logging
import mmap
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import numpy.typing as npt

from immich_ml._core import _rknn
from immich_ml.backends import oom
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
from immich_ml.backends.rknn_io import (
    FLOAT16,
    FLOAT32,
    QNT_NONE,
    SlotBuffers,
    custom_dims,
    plan_input,
)
from immich_ml.config import Settings
from immich_ml.errors import (
    AcceleratorOutOfMemory,
    BackendError,
    BackendUnavailable,
    FormatUnavailable,
    ModelLoadError,
)

log = logging.getLogger(__name__)

SOCS = ("rk3566", "rk3568", "rk3576", "rk3588")
COMPATIBLE_PATH = Path("/proc/device-tree/compatible")
DEFAULT_LIBRARY = "librknnrt.so"
# NPU cores per SoC where a context can be pinned; RK3566/RK3568 have a single core.
NPU_CORES = {"rk3576": 2, "rk3588": 3}
# RK3566 and RK3568 share one NPU design (RK356X): a model compiled for either runs on both.
_MODEL_SOCS = {"rk3566": ("rk3566", "rk3568"), "rk3568": ("rk3568", "rk3566")}

_runtimes: dict[str, _rknn.Runtime] = {}
_runtimes_lock = threading.Lock()


def detect_soc(compatible: Path = COMPATIBLE_PATH) -> str | None:
    """The supported SoC named in the device tree's ``compatible`` list (NUL-separated), if any."""
    try:
        entries = compatible.read_bytes().decode("ascii", "replace").lower().split("\0")
    except OSError:
        return None
    for soc in SOCS:
        if any(soc in entry for entry in entries):
            return soc
    return None


def library_path(settings: Settings, library: str | None = None) -> str:
    """``library`` if given, else ``settings.rknn_library`` (MACHINE_LEARNING_RKNN_LIBRARY), else the default."""
    if library:
        return library
    return settings.rknn_library or DEFAULT_LIBRARY


def load_runtime(path: str) -> _rknn.Runtime:
    """The process-wide runtime for ``path`` (dlopen'ed once); raises ``_rknn.RknnError``."""
    with _runtimes_lock:
        runtime = _runtimes.get(path)
        if runtime is None:
            runtime = _runtimes[path] = _rknn.Runtime(path)
        return runtime


def probe(
    settings: Settings, *, compatible: Path = COMPATIBLE_PATH, library: str | None = None
) -> Availability:
    """Whether RKNN can run here: enabled in settings, a supported SoC, and librknnrt loads."""
    if not settings.rknn:
        return Availability(False, "MACHINE_LEARNING_RKNN is false")
    soc = detect_soc(compatible)
    if soc is None:
        return Availability(False, f"no supported Rockchip SoC ({', '.join(SOCS)}) in {compatible}")
    path = library_path(settings, library)
    try:
        load_runtime(path)
    except _rknn.RknnError as exc:
        return Availability(False, str(exc))
    return Availability(True, f"{soc} NPU through {path}")


def model_path(directory: Path, soc: str) -> Path:
    """Where Immich keeps the RKNN export of the model in ``directory`` (``<type>/rknpu/<soc>/model.rknn``)."""
    return directory / "rknpu" / soc / "model.rknn"


def find_model(directory: Path, soc: str) -> Path | None:
    """The ``.rknn`` file this SoC can run for the model in ``directory``, if one is there."""
    for candidate in _MODEL_SOCS.get(soc, (soc,)):
        path = model_path(directory, candidate)
        if path.is_file():
            return path
    return None


def core_masks(soc: str, threads: int) -> list[int]:
    """One ``rknn_core_mask`` per context: AUTO (0) for one context or a single-core NPU, otherwise
    context *i* on core *i* modulo the SoC's core count."""
    cores = NPU_CORES.get(soc, 0)
    if cores == 0 or threads == 1:
        return [0] * threads
    return [1 << (i % cores) for i in range(threads)]


class _RknnCall:
    def __init__(
        self,
        session: RknnSession,
        slot: int,
        buffers: dict[str, npt.NDArray[np.generic]],
        staged: list[tuple[int, npt.NDArray[np.generic]]],
    ) -> None:
        self._session = session
        self._slot = slot
        self._buffers = buffers
        self._staged = staged

    @property
    def inputs(self) -> Mapping[str, npt.NDArray[np.generic]]:
        return self._buffers

    def run(self) -> Sequence[npt.NDArray[np.generic]]:
        return self._session._run_slot(self._slot, self._staged)


class RknnSession(SessionMetadata):
    """An RKNN model behind the :class:`~immich_ml.backends.base.Session` protocol.

    ``library`` (path of librknnrt.so), ``soc`` and ``compatible`` (the device-tree file) override
    what the settings and the host say; tests use them to drive the bridge through a test double.
    """

    def __init__(
        self,
        artifacts: ModelArtifacts,
        settings: Settings,
        target: Target,
        options: SessionOptions,
        *,
        library: str | None = None,
        soc: str | None = None,
        compatible: Path = COMPATIBLE_PATH,
    ) -> None:
        name = artifacts.directory.parent.name
        self._label = options.label or name
        soc = soc or detect_soc(compatible)
        if soc not in SOCS:
            raise BackendUnavailable(f"RKNN needs a supported Rockchip SoC ({', '.join(SOCS)}); found {soc}")
        path = artifacts.rknn if artifacts.rknn is not None and artifacts.rknn.is_file() else None
        path = path or find_model(artifacts.directory, soc)
        if path is None:
            raise FormatUnavailable(f"RKNN is available, but model '{name}' does not support it.")
        try:
            runtime = load_runtime(library_path(settings, library))
        except _rknn.RknnError as exc:
            raise BackendUnavailable(f"RKNN runtime unavailable: {exc}") from exc
        try:
            # Mapped, not read: rknn_init copies the model into NPU memory, and a mapped file costs
            # reclaimable page cache instead of a second anonymous copy of a model that can be ~1 GB.
            # It stays mapped through prepare(), which may need it for contexts it cannot duplicate.
            with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
                try:
                    self._model = _rknn.Model(runtime, data)
                except _rknn.RknnError as exc:
                    raise ModelLoadError(f"RKNN could not load {path}: {exc}") from exc
                try:
                    self._setup(settings, soc, path, target, data)
                except BaseException:
                    self._model.close()
                    raise
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"RKNN could not load {path}: {exc}") from exc

    def _setup(self, settings: Settings, soc: str, path: Path, target: Target, data: mmap.mmap) -> None:
        model = self._model
        attrs = model.inputs
        custom = custom_dims(model.custom_string, len(attrs))
        normalizes = bool(model.custom_string) and any(c is not None for c in custom)
        self._plan = [plan_input(a, c, normalizes) for a, c in zip(attrs, custom)]
        self._inputs = tuple(p.spec for p in self._plan)
        self._outputs = tuple(TensorSpec(a.name, tuple(a.dims), "float32") for a in model.outputs)
        # fp16 outputs stay fp16 in NPU memory and are widened by the bridge; anything else
        # (fp32, or quantized int8 the runtime dequantizes) is bound as fp32 and viewed in place.
        out_types = [FLOAT16 if a.type == FLOAT16 else FLOAT32 for a in model.outputs]
        threads = settings.rknn_threads
        masks = core_masks(soc, threads)
        try:
            model.prepare(threads, masks, [p.rknn_type for p in self._plan], out_types, data)
        except _rknn.RknnError as exc:
            raise ModelLoadError(f"RKNN could not prepare {threads} context(s) for {path}: {exc}") from exc
        self._slots = [SlotBuffers(model, slot, self._plan, self._outputs) for slot in range(threads)]
        self._closed = False
        self._close_lock = threading.Lock()
        api, driver = model.sdk_version
        shared = model.shared_contexts
        quantized = any(a.qnt_type != QNT_NONE for a in model.inputs + model.outputs)
        self._placement = Placement(
            backend="rknn",
            provider=f"rknn:{soc}",
            device=soc,
            requested=str(target),
            precision="INT8" if quantized else "FP16",
            extra={
                "model": str(path),
                "library": model.runtime.path,
                "contexts": str(threads),
                "contexts_sharing_weights": str(shared),
                "core_masks": ",".join(hex(m) for m in masks),
                "dynamic_shapes": str(model.dynamic_shapes),
                "runtime_version": api,
                "driver_version": driver,
            },
        )
        if shared < threads:
            log.warning(
                "RKNN would not duplicate contexts of %s (rknn_dup_context refused%s): %d of %d contexts hold "
                "their own copy of the weights; MACHINE_LEARNING_RKNN_THREADS multiplies its memory",
                self._label, ", dynamic-shape model" if model.dynamic_shapes else "", threads - shared, threads,
            )
        log.info(
            "Loaded RKNN model %s on %s: %d context(s), %d sharing weights, core masks %s (librknnrt %s, driver %s)",
            self._label, soc, threads, shared, self._placement.extra["core_masks"], api or "?", driver or "?",
        )


    @contextmanager
    def bind(self, shapes: Mapping[str, tuple[int, ...]]) -> Iterator[BoundCall]:
        """Lease a context (waiting while all are busy) and yield buffers for its inputs.

        ``shapes`` gives each input's shape. An NHWC (or non-image) buffer is the NPU memory itself;
        a 4-D image input asked for as NCHW gets a staging buffer that ``run()`` transposes into it.
        """
        requests = []
        for p in self._plan:
            if p.spec.name not in shapes:
                raise BackendError(f"RKNN bind: no shape for input '{p.spec.name}'")
            shape = tuple(int(d) for d in shapes[p.spec.name])
            requests.append((shape, p.staged(shape)))
        try:
            slot = self._model.acquire()
        except _rknn.RknnError as exc:
            raise BackendError(f"RKNN session for {self._label} is closed") from exc
        try:
            buffers = self._slots[slot]
            views: dict[str, npt.NDArray[np.generic]] = {}
            staged: list[tuple[int, npt.NDArray[np.generic]]] = []
            for p, (shape, is_staged) in zip(self._plan, requests):
                if is_staged:
                    staged.append((p.index, buffers.stage(p)))
                    views[p.spec.name] = staged[-1][1]
                else:
                    views[p.spec.name] = buffers.inputs[p.index].reshape(shape)
            yield _RknnCall(self, slot, views, staged)
        finally:
            self._model.release(slot)

    def _run_slot(
        self, slot: int, staged: Sequence[tuple[int, npt.NDArray[np.generic]]]
    ) -> list[npt.NDArray[np.generic]]:
        try:
            for index, buffer in staged:
                self._model.input_write_nchw(slot, index, buffer.reshape(-1).view(np.uint8))
            self._model.run(slot)
            buffers = self._slots[slot]
            for index, widened in enumerate(buffers.widened):
                if widened is not None:
                    self._model.output_into(slot, index, widened.reshape(-1))
        except _rknn.RknnError as exc:
            if oom.is_out_of_memory(str(exc)):
                raise AcceleratorOutOfMemory(f"RKNN ran out of memory running {self._label}: {exc}") from exc
            raise BackendError(f"RKNN failed to run {self._label}: {exc}") from exc
        return list(buffers.outputs)

    def run(self, feeds: Mapping[str, npt.NDArray[np.generic]]) -> list[npt.NDArray[np.generic]]:
        """Copy ``feeds`` into a leased context's memory, run, and return copies of the outputs."""
        missing = [p.spec.name for p in self._plan if p.spec.name not in feeds]
        if missing:
            raise BackendError(f"RKNN run: missing inputs {missing}")
        with self.bind({name: tuple(np.shape(array)) for name, array in feeds.items()}) as call:
            for name, buffer in call.inputs.items():
                try:
                    np.copyto(buffer, feeds[name], casting="same_kind")
                except TypeError as exc:
                    raise BackendError(f"RKNN input '{name}' takes {buffer.dtype}: {exc}") from exc
            return [np.array(out, copy=True) for out in call.run()]

    def close(self) -> None:
        """Wait for leased contexts, then free NPU memory and every context. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._model.close()  # waits for every leased context, so no bind() still uses the views
        self._slots = []
