"""The model cache folder, laid out exactly as Immich lays it out, and getting models into it.

``<cache>/<task>/<clean_name>[/<revision> when not main]/`` holds one Hugging Face repository
(``immich-app/<name>``): ``config.json`` at the top, then one folder per model type
(``visual/model.onnx``, ``visual/preprocess_cfg.json``, ``textual/tokenizer.json`` ...), with ARM NN
files as ``<type>/model.armnn`` and RKNN files as ``<type>/rknpu/<soc>/model.rknn``. An Immich
``model-cache`` volume therefore works unchanged.

A model whose files are all on disk never causes a network call. Missing files are downloaded once;
names are validated against the known lists and every path is checked to stay inside the cache folder.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath

from immich_ml.backends.base import ModelArtifacts
from immich_ml.config import Settings
from immich_ml.errors import ModelLoadError, ModelUnavailable, UnknownModel
from immich_ml.models import hub
from immich_ml.models.catalog import ModelSpec
from immich_ml.models.constants import ModelSource
from immich_ml.models.ocr import download as ocr_download
from immich_ml.schemas import ModelFormat

log = logging.getLogger(__name__)

# What each format must not download: the other accelerators' binaries (Immich's ignore patterns).
IGNORED_PATTERNS: dict[ModelFormat, tuple[str, ...]] = {
    ModelFormat.ONNX: ("*.armnn", "*.rknn"),
    ModelFormat.ARMNN: ("*.rknn",),
    ModelFormat.RKNN: ("*.armnn",),
}


def _safe_part(part: str, what: str) -> str:
    """Reject anything that is not one plain path component (``..``, separators, NUL, drive letters)."""
    if (
        not part
        or part in (".", "..")
        or "\x00" in part
        or "/" in part
        or "\\" in part
        or ":" in part
        or part != part.strip()
    ):
        raise UnknownModel(f"Invalid {what} {part[:80]!r}: it must be a plain folder name.")
    return part


@dataclass(frozen=True)
class ModelFiles:
    """One model's files on disk. ``root`` is the repository folder, ``directory`` its type folder."""

    spec: ModelSpec
    root: Path
    format: ModelFormat

    @property
    def directory(self) -> Path:
        return self.root / self.spec.type.value

    def path(self, relative: str) -> Path:
        """A file of the repository, ``relative`` to ``root`` (``visual/preprocess_cfg.json``)."""
        return self.root / relative

    def artifacts(self) -> ModelArtifacts:
        """What a backend may open: the ONNX file, and the ARM NN / RKNN exports when present."""
        directory = self.directory
        armnn = directory / "model.armnn"
        return ModelArtifacts(
            directory=directory,
            onnx=directory / "model.onnx",
            armnn=armnn if armnn.is_file() else None,
            rknn=rknn_model(directory / "rknpu"),
        )


_RKNN_SOCS = ("rk3566", "rk3568", "rk3576", "rk3588")


@cache
def rknn_soc() -> str | None:
    """This board's Rockchip SoC, from the device tree (as Immich detects it), or None."""
    try:
        compatible = Path("/proc/device-tree/compatible").read_bytes().decode("ascii", "replace")
    except OSError:
        return None
    return next((soc for soc in _RKNN_SOCS if soc in compatible), None)


def rknn_model(folder: Path) -> Path | None:
    """``rknpu/<soc>/model.rknn`` for this board; the only export when there is just one; else None."""
    if not folder.is_dir():
        return None
    soc = rknn_soc()
    if soc is not None:
        path = folder / soc / "model.rknn"
        return path if path.is_file() else None
    found = sorted(folder.glob("*/model.rknn"))
    return found[0] if len(found) == 1 else None


def _has_rknn(folder: Path) -> bool:
    """Any RKNN export was fetched (for some SoC): the repository's RKNN files are on disk."""
    return folder.is_dir() and any(folder.glob("*/model.rknn"))


def _format_present(directory: Path, model_format: ModelFormat) -> bool:
    match model_format:
        case ModelFormat.ONNX:
            return (directory / "model.onnx").is_file()
        case ModelFormat.ARMNN:
            return (directory / "model.armnn").is_file()
        case ModelFormat.RKNN:
            return _has_rknn(directory / "rknpu")


class FolderLock:
    """One model folder's lock: exclusive across processes (``fcntl.flock`` on a lock file
    outside the folder, which ``clear`` deletes) and across this process's threads; re-entrant
    for the thread holding it, so a load can hold it around locate + open while locate and
    clear take it again inside."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._threads = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    def __enter__(self) -> FolderLock:
        self._threads.acquire()
        try:
            if self._depth == 0:
                self._fd = self._lock_file()
            self._depth += 1
        except BaseException:
            self._threads.release()
            raise
        return self

    def _lock_file(self) -> int | None:
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            # A read-only cache (a mounted volume) cannot change under us either: go on with
            # the thread lock alone.
            log.debug("No lock file %s (%s); locking within this process only", self._path, exc)
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def __exit__(self, *exc: object) -> None:
        try:
            self._depth -= 1
            if self._depth == 0 and self._fd is not None:
                fd, self._fd = self._fd, None
                # Closing the descriptor drops the flock (it is the only one on this open file).
                os.close(fd)
        finally:
            self._threads.release()


class ModelStore:
    """Finds, downloads and clears models in ``settings.cache_folder``. Thread- and process-safe:
    several workers share one cache folder, so locating (and downloading) and clearing a model
    hold its :class:`FolderLock`, and a load holds it from locate until its session is open.

    ``formats`` are the model formats the worker's backend can run, best first (from
    ``backends.registry.preferred_formats``); the first decides which files are downloaded.
    ``endpoint`` overrides the Hugging Face endpoint (tests point it at a local fake hub).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        formats: Sequence[ModelFormat] = (ModelFormat.ONNX,),
        endpoint: str | None = None,
    ) -> None:
        self._settings = settings
        self._formats = tuple(formats) or (ModelFormat.ONNX,)
        self._endpoint = endpoint
        self._cache = settings.cache_folder.expanduser().resolve()
        self._revision = settings.model_revision
        self._lock = threading.Lock()
        self._root_locks: dict[Path, FolderLock] = {}
        # Type folders whose repository has no export in the preferred format (or could not be asked):
        # they run from ONNX without asking the hub again on every load in this process.
        self._onnx_only: set[Path] = set()

    @property
    def cache_folder(self) -> Path:
        return self._cache

    def root(self, spec: ModelSpec) -> Path:
        """``<cache>/<task>/<name>[/<revision>]``, guaranteed to lie inside the cache folder."""
        parts = [_safe_part(spec.task.value, "task"), _safe_part(spec.name, "model name")]
        if self._revision != "main":
            revision = PurePosixPath(self._revision)
            if revision.is_absolute():
                raise UnknownModel(f"Invalid model revision {self._revision!r}: must be relative.")
            parts += [_safe_part(p, "model revision") for p in self._revision.split("/")]
        root = self._cache.joinpath(*parts)
        # Belt and braces: the parts above cannot escape, but a symlink inside the cache must not either.
        resolved = root.resolve()
        if not resolved.is_relative_to(self._cache):
            raise UnknownModel(f"Model folder for {spec.name!r} resolves outside the cache folder.")
        return root

    def repo_id(self, spec: ModelSpec) -> str:
        return f"{self._settings.model_organization}/{spec.name}"

    def missing(self, spec: ModelSpec, required: Sequence[str], model_format: ModelFormat) -> list[str]:
        """Required files (relative to the root) not on disk for ``model_format``."""
        root = self.root(spec)
        missing = [rel for rel in required if not (root / rel).is_file()]
        if not _format_present(root / spec.type.value, model_format):
            missing.append(f"{spec.type.value}/model.{model_format.value}")
        return missing

    def locate(self, spec: ModelSpec, required: Sequence[str]) -> ModelFiles:
        """Make sure ``spec`` is on disk (downloading once if needed) and say which format to load.

        ``required`` are the files besides the model binary that the model reads (relative to the root).
        Raises :class:`ModelUnavailable` when the model is missing and cannot be fetched.
        """
        # OCR files come from RapidOCR's registry, which has ONNX only; an RKNN detector export placed
        # in the usual rknpu/<soc>/ folder is still offered to the backend by ModelFiles.artifacts().
        primary = ModelFormat.ONNX if spec.source == ModelSource.PADDLE else self._formats[0]
        root = self.root(spec)
        # Even the check for files on disk holds the lock: another process may be clearing them.
        with self._root_lock(root):
            # Another thread or process may have fetched it while this one waited.
            if not self.missing(spec, required, primary):
                return ModelFiles(spec, root, primary)
            onnx_ready = not self.missing(spec, required, ModelFormat.ONNX)
            directory = root / spec.type.value
            if onnx_ready and directory in self._onnx_only:
                return ModelFiles(spec, root, ModelFormat.ONNX)  # asked once already; no export
            if spec.starter:
                if onnx_ready:
                    return ModelFiles(spec, root, ModelFormat.ONNX)
                raise ModelUnavailable(
                    f"The offline starter model {spec.name!r} is not installed in {self._cache}. "
                    f"Install it with: python -m immich_ml.models.starter install --cache {self._cache}"
                )
            try:
                self._download(spec, root, primary)
            except ModelUnavailable as exc:
                if onnx_ready:
                    log.warning(
                        "Using the ONNX files of model '%s' on disk: %s files could not be fetched (%s)",
                        spec.name, primary.value.upper(), exc.message,
                    )
                    self._onnx_only.add(directory)
                    return ModelFiles(spec, root, ModelFormat.ONNX)
                raise ModelUnavailable(
                    f"Model {spec.name!r} ({spec.task.value} {spec.type.value}) is not in the model cache "
                    f"({root}) and could not be fetched. {exc.message} Give the service internet access "
                    "once, or copy the model's folder from an Immich model cache into "
                    f"{root.parent}."
                ) from exc
            return self._after_download(spec, root, required, primary)

    def _after_download(
        self, spec: ModelSpec, root: Path, required: Sequence[str], primary: ModelFormat
    ) -> ModelFiles:
        if not self.missing(spec, required, primary):
            return ModelFiles(spec, root, primary)
        if primary != ModelFormat.ONNX and not self.missing(spec, required, ModelFormat.ONNX):
            log.warning(
                "%s is available, but model '%s' does not support it.", primary.value.upper(), spec.name
            )
            self._onnx_only.add(root / spec.type.value)
            return ModelFiles(spec, root, ModelFormat.ONNX)
        absent = ", ".join(self.missing(spec, required, primary))
        raise ModelUnavailable(
            f"Model {spec.name!r} was downloaded from {self.repo_id(spec)} but lacks {absent}; "
            f"the repository does not provide a {spec.task.value} {spec.type.value} model."
        )

    def _download(self, spec: ModelSpec, root: Path, model_format: ModelFormat) -> None:
        log.info(
            "Downloading %s model '%s' to %s. This may take a while.", spec.type.value, spec.name, root
        )
        if spec.source == ModelSource.PADDLE:
            ocr_download.fetch(
                spec.name,
                spec.type,
                root / spec.type.value / "model.onnx",
                base_url=self._settings.ocr_model_url,
                offline=self._settings.hf_hub_offline,
            )
            return
        hub.snapshot(
            self.repo_id(spec),
            revision=self._revision,
            local_dir=root,
            ignore_patterns=IGNORED_PATTERNS[model_format],
            endpoint=self._endpoint,
        )

    def clear(self, spec: ModelSpec) -> None:
        """Delete the model's folder so the next :meth:`locate` fetches it again.

        Refuses (``ModelLoadError``) where ``shutil.rmtree`` could follow a symlink out of the cache.
        Starter models are never cleared: nothing could bring them back without the setup step.
        """
        if spec.starter:
            return
        root = self.root(spec)
        with self._root_lock(root):
            self._onnx_only = {d for d in self._onnx_only if d.parent != root}
            if not root.exists() and not root.is_symlink():
                log.warning(
                    "Attempted to clear cache for model '%s', but cache directory does not exist", spec.name
                )
                return
            if not shutil.rmtree.avoids_symlink_attacks:
                raise ModelLoadError(
                    f"Cannot clear the cache of model {spec.name!r}: removing folders is not safe against "
                    "symlink attacks on this platform. Delete the folder by hand: " + str(root)
                )
            if root.is_dir() and not root.is_symlink():
                shutil.rmtree(root)
                log.info("Cleared cache directory for model '%s'.", spec.name)
            else:
                log.warning(
                    "Encountered file instead of directory at cache path for '%s'. Removing file and "
                    "replacing with a directory.", spec.name,
                )
                root.unlink()
            root.mkdir(parents=True, exist_ok=True)

    def lock(self, spec: ModelSpec) -> FolderLock:
        """The lock of ``spec``'s folder (a context manager), for a caller that must keep other
        processes from clearing the files between :meth:`locate` and opening them."""
        return self._root_lock(self.root(spec))

    def _root_lock(self, root: Path) -> FolderLock:
        with self._lock:
            lock = self._root_locks.get(root)
            if lock is None:
                # Beside the cache's task folders, never inside a model folder (clear deletes those).
                name = "--".join(root.relative_to(self._cache).parts) + ".lock"
                lock = self._root_locks[root] = FolderLock(self._cache / ".locks" / name)
            return lock
