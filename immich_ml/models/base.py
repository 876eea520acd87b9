"""What every model shares: load on first use (once, under its own lock), recover from a broken cache,
run, unload on request, and report truthfully where it runs.

A model class turns a request into input buffers, runs its :class:`~immich_ml.backends.base.Session`
and turns outputs into Immich's answer (pre → session → post). Per-request options arrive with each
call and are never stored on the model, so concurrent requests cannot see each other's settings.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

import numpy as np
import numpy.typing as npt

from immich_ml.backends import registry
from immich_ml.backends.base import ModelArtifacts, Placement, Session, SessionOptions, Target
from immich_ml.config import Settings
from immich_ml.errors import BackendUnavailable, ImmichMLError, InvalidInput, ModelLoadError
from immich_ml.models.batching import Batcher, batch_wait_ms
from immich_ml.models.cache import ModelFiles, ModelStore
from immich_ml.models.catalog import ModelSpec
from immich_ml.models.runner import RowRunner
from immich_ml.models.timing import Stages
from immich_ml.schemas import PAYLOAD_MISSING, ModelFormat, ModelTask, ModelType

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelRequest:
    """One entry's inputs: the decoded image (H,W,3 uint8 RGB) or the text, its options, and the output
    of the entry it depends on (``upstream``), if any."""

    image: npt.NDArray[np.uint8] | None = None
    text: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    upstream: Any = None

    def pixels(self) -> npt.NDArray[np.uint8]:
        """The image; InvalidInput (Immich's message) when the request carried none."""
        if self.image is None:
            raise InvalidInput(PAYLOAD_MISSING)
        return self.image

    def prompt(self) -> str:
        """The text; InvalidInput (Immich's message) when the request carried none."""
        if self.text is None:
            raise InvalidInput(PAYLOAD_MISSING)
        return self.text


class _FileProblem(Exception):
    """Loading failed because a file of the model is unreadable: clearing and fetching again may help."""


class InferenceModel(ABC):
    """Base class of every network. Subclasses set ``task``/``type`` and implement the hooks below."""

    task: ClassVar[ModelTask]
    type: ClassVar[ModelType]

    def __init__(self, spec: ModelSpec, store: ModelStore, settings: Settings, target: Target) -> None:
        self.spec = spec
        self.settings = settings
        self.target = target
        self._store = store
        self._lock = threading.Lock()
        self._session: Session | None = None
        self._placement: Placement | None = None
        self._active = 0
        self._last_used = time.monotonic()
        self.preloaded = False
        self.state = "unloaded"
        self.runs = 0
        self.load_time_s: float | None = None
        self.last_error: str | None = None
        self.format: ModelFormat | None = None
        self._attempts = 0
        self._artifacts: ModelArtifacts | None = None
        self._runner: RowRunner[Any] | None = None
        self._batcher: Batcher[Any, Any] | None = None
        self.warmup_s: float | None = None

    # --- hooks -----------------------------------------------------------------------------------

    def required_files(self) -> tuple[str, ...]:
        """Files besides the model binary that :meth:`_prepare` reads, relative to the repository root."""
        return ()

    def _prepare(self, files: ModelFiles) -> None:
        """Read configuration files (before the session opens). Any exception means a broken file."""

    def _configure(self, session: Session) -> None:
        """Read what the model needs from the opened session's inputs/outputs (shapes, names)."""

    def _reset(self) -> None:
        """Forget what :meth:`_prepare`/:meth:`_configure` learnt (called when the model unloads)."""

    def session_options(self) -> SessionOptions:
        return SessionOptions(label=self.spec.label)

    def _load_artifacts(self, files: ModelFiles) -> ModelArtifacts:
        """The files the backend opens; a model may swap in an equivalent graph it prepared."""
        return files.artifacts()

    def warmup_shapes(self) -> tuple[Mapping[str, tuple[int, ...]], ...]:
        """Input shapes run once at load (every bucket the model will use)."""
        return self.session_options().shapes

    def _batching(self, session: Session) -> None:
        """Set up ``self._runner`` / ``self._batcher`` for the opened session (batching models)."""

    def min_image_side(self) -> int | None:
        """Smallest image side this model can use without losing detail (for downscaled JPEG decode);
        ``None`` asks for the full-resolution image."""
        return None

    @abstractmethod
    def _predict(self, session: Session, request: ModelRequest, stages: Stages) -> Any:
        """Run one request. ``session`` stays open for the whole call."""

    # --- lifecycle -------------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._session is not None

    @property
    def session(self) -> Session | None:
        return self._session

    @property
    def idle_s(self) -> float:
        return time.monotonic() - self._last_used

    def predict(self, request: ModelRequest, stages: Stages) -> Any:
        """Load if needed, then run ``request``. The model cannot be unloaded while a call runs."""
        with self._lock:
            self._active += 1
        succeeded = False
        try:
            self.load()
            session = self._session
            if session is None:  # pragma: no cover - load() either sets it or raises
                raise ModelLoadError(f"Failed to load model '{self.spec.name}'")
            result = self._predict(session, request, stages)
            succeeded = True
            return result
        finally:
            with self._lock:
                self._active -= 1
                self._last_used = time.monotonic()
                self.runs += succeeded

    def load(self) -> None:
        """Open the session once; concurrent callers wait for the first one's result."""
        if self._session is not None:
            return
        with self._lock:
            if self._session is not None:
                return
            self.state = "loading"
            start = time.perf_counter()
            self._attempts += 1
            attempt = f"Attempt #{self._attempts} to load" if self._attempts > 1 else "Loading"
            log.info("%s %s model '%s' to memory", attempt, self.spec.type.value, self.spec.name)
            try:
                session = self._load_with_retry()
            except Exception as exc:
                error = exc if isinstance(exc, ImmichMLError) else ModelLoadError(
                    f"Failed to load model '{self.spec.name}': {type(exc).__name__}: {exc}"
                )
                self.state = "failed"
                self.last_error = error.message
                self._reset()
                if error is exc:
                    raise
                raise error from exc
            self._attempts = 0  # the next "Attempt #2" line only ever follows a failure
            self._warm_up(session)
            self.load_time_s = time.perf_counter() - start
            self._placement = session.placement
            self._session = session
            self._last_used = time.monotonic()
            self.state = "loaded"
            self.last_error = None
        placement = session.placement
        log.info(
            "Loaded %s model '%s' in %.2f s on %s (%s)",
            self.spec.label, self.spec.name, self.load_time_s, placement.provider, placement.device,
        )

    def unload(self, *, force: bool = False, idle_s: float | None = None) -> bool:
        """Close the session and drop everything derived from it. Skipped while a call is running
        unless ``force``; with ``idle_s``, only if the model is not preloaded and has been idle that
        long (checked under the model's lock, so a request arriving meanwhile keeps it). Returns
        whether a session was closed."""
        with self._lock:
            session = self._session
            if session is None or (self._active and not force):
                return False
            if idle_s is not None and not self.expired(idle_s):
                return False
            self._session = None
            self._reset()
            self._close_batching()
            self.state = "unloaded"
            session.close()
        log.info("Unloaded %s model '%s'", self.spec.label, self.spec.name)
        return True

    def expired(self, ttl_s: float) -> bool:
        return (
            ttl_s > 0
            and not self.preloaded
            and self._session is not None
            and self._active == 0
            and self.idle_s > ttl_s
        )

    def status(self, ttl_s: float) -> dict[str, Any]:
        placement = self._placement
        ttl_remaining: float | None = None
        if self.loaded and ttl_s > 0 and not self.preloaded:
            ttl_remaining = max(0.0, round(ttl_s - self.idle_s, 1))
        return {
            "task": self.spec.task.value,
            "type": self.spec.type.value,
            "name": self.spec.name,
            "state": self.state,
            "backend": placement.backend if placement else None,
            "provider": placement.provider if placement else None,
            "device": placement.device if placement else None,
            "requested": placement.requested if placement else str(self.target),
            "fallback_reason": placement.fallback_reason if placement else None,
            "precision": placement.precision if placement else None,
            "ttl_remaining_s": ttl_remaining,
            "last_error": self.last_error,
            "load_time_s": round(self.load_time_s, 3) if self.load_time_s is not None else None,
            "runs": self.runs,
            "warmup_s": round(self.warmup_s, 3) if self.warmup_s is not None else None,
            "batching": self._batcher.stats() if self._batcher is not None else None,
            "oom": self._runner.stats() if self._runner is not None else None,
        }

    # --- batching, OOM recovery and warm-up ------------------------------------------------------

    def batch_wait_ms(self) -> float:
        """The batching window for this model: the setting, else the measured per-device default."""
        return batch_wait_ms(self.settings, self.target.kind, self.type.value)

    def _make_batching(
        self,
        session: Session,
        shapes: Any,
        sizes: tuple[int, ...],
        *,
        output_index: int = 0,
        batched: bool,
    ) -> None:
        """A RowRunner for ``sizes`` buckets and, when ``batched``, a Batcher of up to the largest."""
        placement = session.placement
        on_cpu = placement.device == "cpu"
        allowed = self.settings.oom_cpu_fallback and not self.settings.device_strict and not on_cpu
        artifacts = self._artifacts
        open_cpu = None
        if allowed and artifacts is not None:
            def open_cpu() -> Session:
                return registry.open_session(
                    artifacts, self.settings, Target("cpu", self.target.device_id), self.session_options()
                )
        self._runner = RowRunner(
            self.spec.label, shapes, sizes, output_index=output_index, pad=not on_cpu, open_cpu=open_cpu
        )
        wait_ms = self.batch_wait_ms()
        if batched and wait_ms > 0 and max(sizes) > 1:
            self._batcher = Batcher(
                self.spec.label, self._run_batch, max_items=max(sizes), wait_s=wait_ms / 1000.0
            )

    def _run_batch(self, items: list[Any]) -> list[Any]:
        """The Batcher's run function: items of several requests through the RowRunner."""
        session, runner = self._session, self._runner
        if session is None or runner is None:  # pragma: no cover - requests keep the model loaded
            raise ModelLoadError(f"Model '{self.spec.name}' was unloaded during a batch; this is a bug")
        return runner.rows(session, items, self._fill_batch)

    def _fill_batch(self, buffers: Mapping[str, Any], items: Any, batch: int) -> None:
        """Copy per-request items into the bound buffers (batching models override)."""
        raise NotImplementedError

    def _close_batching(self) -> None:
        runner, self._runner, self._batcher = self._runner, None, None
        if runner is not None:
            runner.close()

    def _warm_up(self, session: Session) -> None:
        """Run every bucket shape once on zeros so the first request is at steady speed (providers
        compile or autotune per shape; ORT plans memory on the first run of each)."""
        enabled = self.settings.warmup
        if enabled is None:
            enabled = session.placement.device != "cpu"
        if not enabled:
            self.warmup_s = None
            return
        start = time.perf_counter()
        for shapes in self.warmup_shapes():
            try:
                with session.bind(shapes) as call:
                    for buffer in call.inputs.values():
                        buffer[...] = 0
                    call.run()
            except ImmichMLError as exc:
                log.warning("Warm-up of %s at %s failed: %s", self.spec.label, dict(shapes), exc.message)
                break
        self.warmup_s = time.perf_counter() - start
        log.info("Warmed up %s (%d shapes) in %.2f s", self.spec.label, len(self.warmup_shapes()), self.warmup_s)

    # --- loading ---------------------------------------------------------------------------------

    def _load_with_retry(self) -> Session:
        # Held from locate until the session is open: another worker process must not clear
        # (or half-download) the folder meanwhile.
        with self._store.lock(self.spec):
            return self._locate_and_open()

    def _locate_and_open(self) -> Session:
        files = self._store.locate(self.spec, self.required_files())
        try:
            return self._open(files)
        except _FileProblem as exc:
            if self.spec.starter:
                raise ModelLoadError(
                    f"Failed to load model '{self.spec.name}': {exc}. Reinstall the starter models with "
                    f"python -m immich_ml.models.starter install --cache {self._store.cache_folder}"
                ) from exc
            log.warning(
                "Failed to load %s model '%s' (%s). Clearing its cache folder and fetching it again.",
                self.spec.label, self.spec.name, exc,
            )
        self._store.clear(self.spec)
        files = self._store.locate(self.spec, self.required_files())
        try:
            return self._open(files)
        except _FileProblem as exc:
            raise ModelLoadError(
                f"Failed to load model '{self.spec.name}' even after clearing its cache folder and "
                f"downloading it again: {exc}"
            ) from exc

    def _open(self, files: ModelFiles) -> Session:
        self._reset()
        self._close_batching()
        try:
            self._prepare(files)
        except ImmichMLError:
            raise
        except Exception as exc:  # noqa: BLE001 - JSON, tokenizer and OS errors all mean a bad file
            raise _FileProblem(f"{type(exc).__name__}: {exc}") from exc
        self.format = files.format
        artifacts = self._load_artifacts(files)
        self._artifacts = artifacts
        try:
            session = registry.open_session(artifacts, self.settings, self.target, self.session_options())
        except BackendUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - decide below whether the file or the runtime failed
            if files.format == ModelFormat.ONNX and not _onnx_parses(artifacts.onnx):
                raise _FileProblem(f"{artifacts.onnx} is not a readable ONNX model ({exc})") from exc
            message = exc.message if isinstance(exc, ImmichMLError) else f"{type(exc).__name__}: {exc}"
            raise ModelLoadError(f"Failed to load model '{self.spec.name}': {message}") from exc
        try:
            self._configure(session)
            self._batching(session)
        except BaseException:
            session.close()
            raise
        return session


def pixel_buffer(array: npt.NDArray[np.generic]) -> npt.NDArray[np.float32] | npt.NDArray[np.uint8]:
    """A bound input buffer as the pixel kernels take it: float32 (normalised) or uint8 (raw pixels)."""
    if array.dtype == np.float32:
        return cast(npt.NDArray[np.float32], array)
    if array.dtype == np.uint8:
        return cast(npt.NDArray[np.uint8], array)
    raise ModelLoadError(f"Image input of dtype {array.dtype} is not supported (float32 or uint8 only).")


def _onnx_parses(path: Any) -> bool:
    """Whether ``path`` holds a parseable ONNX protobuf (weights in external files are not read)."""
    import onnx

    try:
        onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - any parse or I/O failure means the file is broken
        return False
    return True
