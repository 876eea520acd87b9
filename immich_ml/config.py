"""Settings: the only module that reads the process environment.

Every ``MACHINE_LEARNING_*`` and ``IMMICH_*`` variable that immich-machine-learning understands is read
here once, with the same names and defaults, into one frozen :class:`Settings` that is passed down.
Names are case-insensitive and nested keys use ``__`` as Immich's pydantic settings do
(``MACHINE_LEARNING_PRELOAD__CLIP__TEXTUAL``). An invalid value raises :class:`SettingsError`, which
names the variable and the accepted values, and start-up stops.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from immich_ml.errors import SettingsError

T = TypeVar("T")

_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off"})

LOG_LEVELS: Mapping[str, int] = {
    "verbose": logging.DEBUG,
    "debug": logging.DEBUG,
    "log": logging.INFO,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.ERROR,
    "fatal": logging.ERROR,
}
PRECISIONS = ("FP32", "FP16")
MODEL_PRECISIONS = ("FP32", "FP16", "INT8")
PLACEMENTS = ("auto", "cpu")
DEVICES = ("auto", "cpu", "cuda", "rocm", "openvino", "coreml", "armnn", "rknn")


@dataclass(frozen=True)
class PreloadModels:
    """Comma-separated model names to load at start-up; preloaded models never expire."""

    clip_textual: tuple[str, ...] = ()
    clip_visual: tuple[str, ...] = ()
    facial_recognition_detection: tuple[str, ...] = ()
    facial_recognition_recognition: tuple[str, ...] = ()
    ocr_detection: tuple[str, ...] = ()
    ocr_recognition: tuple[str, ...] = ()
    ocr_max_resolution: int = 736


@dataclass(frozen=True)
class MaxBatchSize:
    """Upper bound on items per inference run; ``None`` lets the backend choose."""

    facial_recognition: int | None = None
    ocr: int = 6


@dataclass(frozen=True)
class Placement:
    """Per-model device placement: ``auto`` runs on the worker's device, ``cpu`` on a CPU worker.

    Immich users asked for this (text encoder on CPU for search latency while images use the GPU);
    the variables are ``MACHINE_LEARNING_PLACEMENT__CLIP__TEXTUAL=cpu`` and so on.
    """

    clip_textual: str = "auto"
    clip_visual: str = "auto"
    facial_recognition_detection: str = "auto"
    facial_recognition_recognition: str = "auto"
    ocr_detection: str = "auto"
    ocr_recognition: str = "auto"

    def for_model(self, task: str, model_type: str) -> str:
        value: str = getattr(self, f"{task.replace('-', '_')}_{model_type}", "auto")
        return value


@dataclass(frozen=True)
class Settings:
    # --- Immich's own settings (same names and defaults) ---
    cache_folder: Path = field(default_factory=lambda: Path.home() / ".cache" / "immich_ml")
    model_ttl: int = 300
    model_ttl_poll_s: int = 10
    workers: int = 1
    worker_timeout: int = 300
    http_keepalive_timeout_s: int = 2
    test_full: bool = False
    request_threads: int = field(default_factory=lambda: os.cpu_count() or 4)
    model_inter_op_threads: int = 0
    model_intra_op_threads: int = 0
    # Immich's code says true, but every Immich image ships false (+ mimalloc); users run the images.
    model_arena: bool = False
    ann: bool = True
    ann_fp16_turbo: bool = False
    ann_tuning_level: int = 2
    # The board's libarmnn.so.<N> or its directory; "" = the dynamic loader's search path (immich_ml addition).
    ann_library: str = ""
    rknn: bool = True
    rknn_threads: int = 1
    # Path or soname of Rockchip's runtime library (immich_ml addition; Immich used rknn-toolkit-lite2).
    rknn_library: str = "librknnrt.so"
    preload: PreloadModels = field(default_factory=PreloadModels)
    max_batch_size: MaxBatchSize = field(default_factory=MaxBatchSize)
    openvino_precision: str = "FP32"
    rocm_precision: str = "FP32"
    model_organization: str = "immich-app"
    model_revision: str = "main"
    device_ids: tuple[str, ...] = ("0",)
    device_id: str = "0"
    host: str = "[::]"
    port: int = 3003
    log_level: str = "info"
    no_color: bool = False
    source_ref: str | None = None
    # --- immich_ml additions (documented in README "Settings") ---
    # Which accelerator family to use; "auto" picks the best one that is installed and works.
    device: str = "auto"
    # Fail start-up / the model instead of moving a model to the next provider.
    device_strict: bool = False
    # Opt-in reduced precision: FP16 for GPU providers, INT8 (dynamic quantization) for CPU.
    model_precision: str = "FP32"
    placement: Placement = field(default_factory=Placement)
    # Extra CPU-only worker processes serving models placed on "cpu" (0 = one when any placement asks).
    cpu_workers: int = 0
    # Requests waiting per worker before the service answers 503 + Retry-After.
    queue_depth: int = 32
    max_request_mb: int = 64
    max_image_pixels: int = 100_000_000
    # JPEG DCT-domain downscaled decoding when the model input is much smaller than the image.
    fast_decode: bool = True
    worker_start_timeout_s: int = 300

    @property
    def log_level_number(self) -> int:
        return LOG_LEVELS[self.log_level]

    @property
    def max_request_bytes(self) -> int:
        return self.max_request_mb * 1024 * 1024

    @property
    def bind_host(self) -> str:
        """Host as waitress wants it: an IPv6 literal without brackets."""
        return self.host[1:-1] if self.host.startswith("[") and self.host.endswith("]") else self.host

    def with_device_id(self, device_id: str) -> Settings:
        return replace(self, device_id=device_id)

    @staticmethod
    def from_env(environ: Mapping[str, str] | None = None) -> Settings:
        return load_settings(environ)


class _Reader:
    """Case-insensitive view of the environment that records which variables it used."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._env = {k.upper(): v for k, v in environ.items()}

    def raw(self, name: str) -> str | None:
        value = self._env.get(name.upper())
        if value is None:
            return None
        value = value.strip()
        return value if value != "" else None

    def get(self, name: str, parse: Callable[[str, str], T], default: T) -> T:
        value = self.raw(name)
        return default if value is None else parse(name, value)


def _int(lo: int | None = None, hi: int | None = None) -> Callable[[str, str], int]:
    def parse(name: str, value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise SettingsError(name, value, _range_text(lo, hi)) from None
        if (lo is not None and number < lo) or (hi is not None and number > hi):
            raise SettingsError(name, value, _range_text(lo, hi))
        return number

    return parse


def _range_text(lo: int | None, hi: int | None) -> str:
    if lo is not None and hi is not None:
        return f"an integer from {lo} to {hi}"
    if lo is not None:
        return f"an integer >= {lo}"
    return "an integer"


def _optional_int(lo: int) -> Callable[[str, str], int | None]:
    inner = _int(lo)

    def parse(name: str, value: str) -> int | None:
        if value.lower() in ("none", "null"):
            return None
        return inner(name, value)

    return parse


def _bool(name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise SettingsError(name, value, "true or false (also 1/0, yes/no, on/off)")


def _choice(options: tuple[str, ...], *, upper: bool = False) -> Callable[[str, str], str]:
    def parse(name: str, value: str) -> str:
        normalized = value.upper() if upper else value.lower()
        if normalized not in options:
            raise SettingsError(name, value, "one of " + ", ".join(options))
        return normalized

    return parse


def _names(name: str, value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _device_ids(name: str, value: str) -> tuple[str, ...]:
    ids = _names(name, value)
    if not ids:
        raise SettingsError(name, value, "a comma-separated list of device ids, e.g. 0,1")
    return ids


def _text(name: str, value: str) -> str:
    return value


def _log_level(name: str, value: str) -> str:
    lowered = value.lower()
    if lowered not in LOG_LEVELS:
        raise SettingsError(name, value, "one of " + ", ".join(LOG_LEVELS))
    return lowered


def _preload(env: _Reader, deprecated: list[str]) -> PreloadModels:
    p = "MACHINE_LEARNING_PRELOAD__"
    none: tuple[str, ...] = ()
    clip = env.get(p + "CLIP", _names, none)
    faces = env.get(p + "FACIAL_RECOGNITION", _names, none)
    if clip:
        deprecated.append(p + "CLIP (use " + p + "CLIP__TEXTUAL and " + p + "CLIP__VISUAL)")
    if faces:
        deprecated.append(
            p + "FACIAL_RECOGNITION (use " + p + "FACIAL_RECOGNITION__DETECTION and __RECOGNITION)"
        )
    return PreloadModels(
        clip_textual=env.get(p + "CLIP__TEXTUAL", _names, clip),
        clip_visual=env.get(p + "CLIP__VISUAL", _names, clip),
        facial_recognition_detection=env.get(p + "FACIAL_RECOGNITION__DETECTION", _names, faces),
        facial_recognition_recognition=env.get(p + "FACIAL_RECOGNITION__RECOGNITION", _names, faces),
        ocr_detection=env.get(p + "OCR__DETECTION", _names, ()),
        ocr_recognition=env.get(p + "OCR__RECOGNITION", _names, ()),
        ocr_max_resolution=env.get(p + "OCR__MAX_RESOLUTION", _int(32, 8192), 736),
    )


def _placement(env: _Reader) -> Placement:
    p = "MACHINE_LEARNING_PLACEMENT__"
    parse = _choice(PLACEMENTS)
    return Placement(
        clip_textual=env.get(p + "CLIP__TEXTUAL", parse, "auto"),
        clip_visual=env.get(p + "CLIP__VISUAL", parse, "auto"),
        facial_recognition_detection=env.get(p + "FACIAL_RECOGNITION__DETECTION", parse, "auto"),
        facial_recognition_recognition=env.get(p + "FACIAL_RECOGNITION__RECOGNITION", parse, "auto"),
        ocr_detection=env.get(p + "OCR__DETECTION", parse, "auto"),
        ocr_recognition=env.get(p + "OCR__RECOGNITION", parse, "auto"),
    )


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read every setting from ``environ`` (default: ``os.environ``) into one frozen object."""
    env = _Reader(os.environ if environ is None else environ)
    m = "MACHINE_LEARNING_"
    defaults = Settings()
    deprecated: list[str] = []
    device_ids = env.get(m + "DEVICE_IDS", _device_ids, defaults.device_ids)
    settings = Settings(
        cache_folder=Path(env.get(m + "CACHE_FOLDER", _text, str(defaults.cache_folder))).expanduser(),
        model_ttl=env.get(m + "MODEL_TTL", _int(), defaults.model_ttl),
        model_ttl_poll_s=env.get(m + "MODEL_TTL_POLL_S", _int(), defaults.model_ttl_poll_s),
        workers=env.get(m + "WORKERS", _int(1, 64), defaults.workers),
        worker_timeout=env.get(m + "WORKER_TIMEOUT", _int(1), defaults.worker_timeout),
        http_keepalive_timeout_s=env.get(
            m + "HTTP_KEEPALIVE_TIMEOUT_S", _int(0), defaults.http_keepalive_timeout_s
        ),
        test_full=env.get(m + "TEST_FULL", _bool, defaults.test_full),
        request_threads=env.get(m + "REQUEST_THREADS", _int(), defaults.request_threads),
        model_inter_op_threads=env.get(m + "MODEL_INTER_OP_THREADS", _int(0), 0),
        model_intra_op_threads=env.get(m + "MODEL_INTRA_OP_THREADS", _int(0), 0),
        model_arena=env.get(m + "MODEL_ARENA", _bool, defaults.model_arena),
        ann=env.get(m + "ANN", _bool, defaults.ann),
        ann_fp16_turbo=env.get(m + "ANN_FP16_TURBO", _bool, defaults.ann_fp16_turbo),
        ann_tuning_level=env.get(m + "ANN_TUNING_LEVEL", _int(0, 3), defaults.ann_tuning_level),
        ann_library=env.get(m + "ANN_LIBRARY", _text, defaults.ann_library),
        rknn=env.get(m + "RKNN", _bool, defaults.rknn),
        rknn_threads=env.get(m + "RKNN_THREADS", _int(1, 16), defaults.rknn_threads),
        rknn_library=env.get(m + "RKNN_LIBRARY", _text, defaults.rknn_library),
        preload=_preload(env, deprecated),
        max_batch_size=MaxBatchSize(
            facial_recognition=env.get(
                m + "MAX_BATCH_SIZE__FACIAL_RECOGNITION", _optional_int(1), None
            ),
            ocr=env.get(m + "MAX_BATCH_SIZE__OCR", _int(1), 6),
        ),
        openvino_precision=env.get(m + "OPENVINO_PRECISION", _choice(PRECISIONS, upper=True), "FP32"),
        rocm_precision=env.get(m + "ROCM_PRECISION", _choice(PRECISIONS, upper=True), "FP32"),
        model_organization=env.get(m + "MODEL_ORGANIZATION", _text, defaults.model_organization),
        model_revision=env.get(m + "MODEL_REVISION", _text, defaults.model_revision),
        device_ids=device_ids,
        device_id=env.get(m + "DEVICE_ID", _text, device_ids[0]),
        host=env.get("IMMICH_HOST", _text, defaults.host),
        port=env.get("IMMICH_PORT", _int(1, 65535), defaults.port),
        log_level=env.get("IMMICH_LOG_LEVEL", _log_level, defaults.log_level),
        no_color=env.get("NO_COLOR", _bool, False),
        source_ref=env.raw("IMMICH_SOURCE_REF"),
        device=env.get(m + "DEVICE", _choice(DEVICES), "auto"),
        device_strict=env.get(m + "DEVICE_STRICT", _bool, False),
        model_precision=env.get(m + "MODEL_PRECISION", _choice(MODEL_PRECISIONS, upper=True), "FP32"),
        placement=_placement(env),
        cpu_workers=env.get(m + "CPU_WORKERS", _int(0, 64), 0),
        queue_depth=env.get(m + "QUEUE_DEPTH", _int(1, 100_000), defaults.queue_depth),
        max_request_mb=env.get(m + "MAX_REQUEST_MB", _int(1, 4096), defaults.max_request_mb),
        max_image_pixels=env.get(m + "MAX_IMAGE_PIXELS", _int(1), defaults.max_image_pixels),
        fast_decode=env.get(m + "FAST_DECODE", _bool, defaults.fast_decode),
        worker_start_timeout_s=env.get(m + "WORKER_START_TIMEOUT_S", _int(1), 300),
    )
    for message in deprecated:
        logging.getLogger("immich_ml.config").warning("Deprecated setting: %s", message)
    return settings
