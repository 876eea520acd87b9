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
from immich_ml.errors import BackendUnavailable, ImmichMLError, ModelLoadError
from immich_ml.models.cache import ModelFiles, ModelStore
from immich_ml.models.catalog import ModelSpec
from immich_ml.models.timing import Stages
from immich_ml.schemas import ModelFormat, ModelTask, ModelType

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelRequest:
    """One entry's inputs: the decoded image (H,W,3 uint8 RGB) or the text, its options, and the output
    of the entry it depends on (``upstream``), if any."""

    image: npt.NDArray[np.uint8] | None = None
    text: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    upstream: Any = None


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

    def _artifacts(self, files: ModelFiles) -> ModelArtifacts:
        """The files the backend opens; a model may swap in an equivalent graph it prepared."""
        return files.artifacts()

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
        }

    # --- loading ---------------------------------------------------------------------------------

    def _load_with_retry(self) -> Session:
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
        try:
            self._prepare(files)
        except ImmichMLError:
            raise
        except Exception as exc:  # noqa: BLE001 - JSON, tokenizer and OS errors all mean a bad file
            raise _FileProblem(f"{type(exc).__name__}: {exc}") from exc
        self.format = files.format
        artifacts = self._artifacts(files)
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
