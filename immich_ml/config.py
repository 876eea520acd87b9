"""Settings: the only module that reads the process environment.

The ``MACHINE_LEARNING_*`` and ``IMMICH_*`` variables immich-machine-learning reads are read here
once, with the same names, into one frozen :class:`Settings` that is passed down. Each default is
written once, on its :class:`Settings` (or nested) field; :func:`load_settings` maps every field to
its variable and parser. Names are case-insensitive and nested keys use ``__`` as Immich's pydantic
settings do (``MACHINE_LEARNING_PRELOAD__CLIP__TEXTUAL``). An empty value counts as unset. An
invalid value raises :class:`SettingsError`, which names the variable and the accepted values, and
start-up stops.

Two of Immich's variables are not read: ``MACHINE_LEARNING_TEST_FULL`` only switches Immich's own
test suite to its slow tests, and ``NO_COLOR`` turns off Immich's colour log output; this service
never writes colour, so it honours ``NO_COLOR`` whatever its value.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from immich_ml.errors import SettingsError

T = TypeVar("T")
D = TypeVar("D", "Settings", "PreloadModels", "MaxBatchSize", "Placement")
Parser = Callable[[str, str], Any]

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
DEVICES = ("auto", "cpu", "cuda", "tensorrt", "rocm", "openvino", "coreml", "armnn", "rknn")
# Where Immich (through RapidOCR 3.8.1) downloads PP-OCRv5 files from.
OCR_MODEL_URL = "https://www.modelscope.cn/models/RapidAI/RapidOCR/resolve/v3.8.0/onnx/PP-OCRv5"
# Accelerator families a placement may name with its device id (``cuda:1``).
_PLACEMENT_KINDS = ("cuda", "tensorrt", "rocm", "openvino", "coreml", "armnn", "rknn", "gpu")


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
    # immich_ml addition: most images/texts one CLIP run takes when requests are batched
    # (None: 8 on the CPU, 64 on accelerators; see models/batching.py).
    clip: int | None = None


@dataclass(frozen=True)
class Placement:
    """Per-model device placement: ``auto`` runs on the worker's device, ``cpu`` on a CPU worker,
    a device id (``1``; written ``cuda:1`` too, stored as ``1``) only on the workers of that one
    of ``MACHINE_LEARNING_DEVICE_IDS``.

    Immich users asked for this (text encoder on CPU for search latency while images use the GPU;
    CLIP on GPU 1 and faces on GPU 0); the variables are
    ``MACHINE_LEARNING_PLACEMENT__CLIP__TEXTUAL=cpu`` and so on.
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


# Model deployments of the Ray path: CLIP's two encoders apart, each face/OCR chain in one replica call.
RAY_GROUPS = ("clip-textual", "clip-visual", "facial-recognition", "ocr")
PROXY_LOCATIONS = ("EveryNode", "HeadOnly")


@dataclass(frozen=True)
class RayServe:
    """How ``python -m immich_ml.ray`` deploys onto a Ray cluster (``MACHINE_LEARNING_RAY_*``).

    One model deployment per group of :data:`RAY_GROUPS` (``clip-textual``, ``clip-visual``,
    ``facial-recognition``, ``ocr``); each replica asks Ray for ``num_cpus``/``num_gpus`` and
    the deployment autoscales between ``min_replicas`` and ``max_replicas`` on
    ``target_ongoing_requests`` per replica.
    """

    # Ray's own variable: the cluster to join ("auto", "ray://host:10001", host:port); None starts one.
    address: str | None = None
    groups: tuple[str, ...] = RAY_GROUPS
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    min_replicas: int = 1
    max_replicas: int = 2
    target_ongoing_requests: float = 2.0
    max_ongoing_requests: int = 8
    max_replicas_per_node: int | None = None
    upscale_delay_s: float = 30.0
    downscale_delay_s: float = 600.0
    # Model names (multiplexed ids) one replica keeps loaded; the least recently used goes first.
    max_models_per_replica: int = 3
    ingress_replicas: int = 1
    # "EveryNode" runs an HTTP proxy on IMMICH_PORT on every node; "HeadOnly" on the head node only.
    proxy_location: str = "EveryNode"
    # Extra tries on another replica when the one serving a request dies (predictions are idempotent).
    request_retries: int = 1


@dataclass(frozen=True)
class Settings:
    # --- Immich's own settings (same names and defaults) ---
    cache_folder: Path = field(default_factory=lambda: Path.home() / ".cache" / "immich_ml")
    model_ttl: int = 300
    model_ttl_poll_s: int = 10
    workers: int = 1
    worker_timeout: int = 300
    http_keepalive_timeout_s: int = 2
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
    # huggingface_hub's HF_HUB_OFFLINE, which Immich users set to forbid downloads; the OCR registry
    # download (not a Hugging Face one) honours it too.
    hf_hub_offline: bool = False
    device_ids: tuple[str, ...] = ("0",)
    device_id: str = "0"
    host: str = "[::]"
    port: int = 3003
    log_level: str = "info"
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
    # Base URL of RapidOCR's PP-OCRv5 files (a mirror, or a local server in tests).
    ocr_model_url: str = OCR_MODEL_URL
    # Cross-request batching window in ms (0 = off); None = the measured default for the device
    # kind (models/batching.py: default_wait_ms).
    batch_wait_ms: float | None = None
    # Run each shape bucket once at load so the first request is at steady speed; None = on for
    # accelerators (they compile/autotune per shape), off on the CPU (measured: no first-request
    # gain there, +2.3 s per load; benchmarks/README.md "Cross-request batching and warm-up").
    warmup: bool | None = None
    # After an accelerator OOM (even at batch 1), run that request on the CPU (never with DEVICE_STRICT).
    oom_cpu_fallback: bool = True
    # TensorRT provider (MACHINE_LEARNING_DEVICE=tensorrt): FP32, FP16 or INT8 (INT8 needs a
    # calibration table next to the model, else TensorRT refuses and the model falls back, logged).
    tensorrt_precision: str = "FP16"
    # CLIP text towers with causal attention run on the query's length, not the full context
    # (exact: verified per model at first load; models/clip/text_length.py).
    text_variable_length: bool = True
    # Recent search-text embeddings kept per text model (same text + options → same vector); 0 = off.
    text_cache_size: int = 256
    ray: RayServe = field(default_factory=RayServe)

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


class _Reader:
    """Case-insensitive view of the environment; blank values count as unset."""

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

    def fields(self, defaults: D, variables: Mapping[str, tuple[str, Parser]]) -> D:
        """``defaults`` with each field named in ``variables`` read from its variable, when set."""
        return replace(
            defaults,
            **{f: self.get(name, parse, getattr(defaults, f)) for f, (name, parse) in variables.items()},
        )


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


def _optional_bool(name: str, value: str) -> bool | None:
    return None if value.lower() == "auto" else _bool(name, value)


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


def _wait_ms(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise SettingsError(name, value, "milliseconds from 0 to 1000 (0 turns batching off)") from None
    if not 0 <= number <= 1000:
        raise SettingsError(name, value, "milliseconds from 0 to 1000 (0 turns batching off)")
    return number


def _text(name: str, value: str) -> str:
    return value


def _float(lo: float, hi: float | None = None) -> Callable[[str, str], float]:
    def parse(name: str, value: str) -> float:
        accepted = f"a number >= {lo}" + (f" and <= {hi}" if hi is not None else "")
        try:
            number = float(value)
        except ValueError:
            raise SettingsError(name, value, accepted) from None
        if number != number or number < lo or (hi is not None and number > hi):
            raise SettingsError(name, value, accepted)
        return number

    return parse


def _groups(name: str, value: str) -> tuple[str, ...]:
    groups = tuple(dict.fromkeys(part.lower() for part in _names(name, value)))
    if not groups or any(group not in RAY_GROUPS for group in groups):
        raise SettingsError(name, value, "a comma-separated list of " + ", ".join(RAY_GROUPS))
    return groups


def _proxy_location(name: str, value: str) -> str:
    for option in PROXY_LOCATIONS:
        if value.lower() == option.lower():
            return option
    raise SettingsError(name, value, "one of " + ", ".join(PROXY_LOCATIONS))


def _ray(env: _Reader) -> RayServe:
    r = "MACHINE_LEARNING_RAY_"
    d = RayServe()
    settings = RayServe(
        address=env.raw("RAY_ADDRESS"),
        groups=env.get(r + "DEPLOYMENTS", _groups, d.groups),
        num_cpus=env.get(r + "NUM_CPUS", _float(0.0), d.num_cpus),
        num_gpus=env.get(r + "NUM_GPUS", _float(0.0), d.num_gpus),
        min_replicas=env.get(r + "MIN_REPLICAS", _int(0, 1000), d.min_replicas),
        max_replicas=env.get(r + "MAX_REPLICAS", _int(1, 1000), d.max_replicas),
        target_ongoing_requests=env.get(
            r + "TARGET_ONGOING_REQUESTS", _float(0.1), d.target_ongoing_requests
        ),
        max_ongoing_requests=env.get(r + "MAX_ONGOING_REQUESTS", _int(1, 10_000), d.max_ongoing_requests),
        max_replicas_per_node=env.get(r + "MAX_REPLICAS_PER_NODE", _optional_int(1), None),
        upscale_delay_s=env.get(r + "UPSCALE_DELAY_S", _float(0.0), d.upscale_delay_s),
        downscale_delay_s=env.get(r + "DOWNSCALE_DELAY_S", _float(0.0), d.downscale_delay_s),
        max_models_per_replica=env.get(r + "MAX_MODELS_PER_REPLICA", _int(1, 100), d.max_models_per_replica),
        ingress_replicas=env.get(r + "INGRESS_REPLICAS", _int(1, 100), d.ingress_replicas),
        proxy_location=env.get(r + "PROXY_LOCATION", _proxy_location, d.proxy_location),
        request_retries=env.get(r + "REQUEST_RETRIES", _int(0, 10), d.request_retries),
    )
    if settings.max_replicas < max(1, settings.min_replicas):
        raise SettingsError(
            r + "MAX_REPLICAS", str(settings.max_replicas),
            f"an integer >= MACHINE_LEARNING_RAY_MIN_REPLICAS ({settings.min_replicas}) and >= 1",
        )
    return settings


def _log_level(name: str, value: str) -> str:
    lowered = value.lower()
    if lowered not in LOG_LEVELS:
        raise SettingsError(name, value, "one of " + ", ".join(LOG_LEVELS))
    return lowered


def _path(name: str, value: str) -> Path:
    return Path(value).expanduser()


_M = "MACHINE_LEARNING_"
_PRELOAD = _M + "PRELOAD__"
_PLACEMENT = _M + "PLACEMENT__"
_TASK_TYPES = {  # nested field name → the variable's key
    "clip_textual": "CLIP__TEXTUAL",
    "clip_visual": "CLIP__VISUAL",
    "facial_recognition_detection": "FACIAL_RECOGNITION__DETECTION",
    "facial_recognition_recognition": "FACIAL_RECOGNITION__RECOGNITION",
    "ocr_detection": "OCR__DETECTION",
    "ocr_recognition": "OCR__RECOGNITION",
}
_SETTINGS: dict[str, tuple[str, Parser]] = {
    "cache_folder": (_M + "CACHE_FOLDER", _path),
    "model_ttl": (_M + "MODEL_TTL", _int()),
    "model_ttl_poll_s": (_M + "MODEL_TTL_POLL_S", _int()),
    "workers": (_M + "WORKERS", _int(1, 64)),
    "worker_timeout": (_M + "WORKER_TIMEOUT", _int(1)),
    "http_keepalive_timeout_s": (_M + "HTTP_KEEPALIVE_TIMEOUT_S", _int(0)),
    "request_threads": (_M + "REQUEST_THREADS", _int()),
    "model_inter_op_threads": (_M + "MODEL_INTER_OP_THREADS", _int(0)),
    "model_intra_op_threads": (_M + "MODEL_INTRA_OP_THREADS", _int(0)),
    "model_arena": (_M + "MODEL_ARENA", _bool),
    "ann": (_M + "ANN", _bool),
    "ann_fp16_turbo": (_M + "ANN_FP16_TURBO", _bool),
    "ann_tuning_level": (_M + "ANN_TUNING_LEVEL", _int(0, 3)),
    "rknn": (_M + "RKNN", _bool),
    "rknn_threads": (_M + "RKNN_THREADS", _int(1, 16)),
    "rknn_library": (_M + "RKNN_LIBRARY", _text),
    "ann_library": (_M + "ANN_LIBRARY", _text),
    "openvino_precision": (_M + "OPENVINO_PRECISION", _choice(PRECISIONS, upper=True)),
    "rocm_precision": (_M + "ROCM_PRECISION", _choice(PRECISIONS, upper=True)),
    "model_organization": (_M + "MODEL_ORGANIZATION", _text),
    "model_revision": (_M + "MODEL_REVISION", _text),
    "device_ids": (_M + "DEVICE_IDS", _device_ids),
    "host": ("IMMICH_HOST", _text),
    "port": ("IMMICH_PORT", _int(1, 65535)),
    "log_level": ("IMMICH_LOG_LEVEL", _log_level),
    "source_ref": ("IMMICH_SOURCE_REF", _text),
    "device": (_M + "DEVICE", _choice(DEVICES)),
    "device_strict": (_M + "DEVICE_STRICT", _bool),
    "model_precision": (_M + "MODEL_PRECISION", _choice(MODEL_PRECISIONS, upper=True)),
    "cpu_workers": (_M + "CPU_WORKERS", _int(0, 64)),
    "queue_depth": (_M + "QUEUE_DEPTH", _int(1, 100_000)),
    "max_request_mb": (_M + "MAX_REQUEST_MB", _int(1, 4096)),
    "max_image_pixels": (_M + "MAX_IMAGE_PIXELS", _int(1)),
    "fast_decode": (_M + "FAST_DECODE", _bool),
    "worker_start_timeout_s": (_M + "WORKER_START_TIMEOUT_S", _int(1)),
    "hf_hub_offline": ("HF_HUB_OFFLINE", _bool),
    "ocr_model_url": (_M + "OCR_MODEL_URL", _text),
    "batch_wait_ms": (_M + "BATCH_WAIT_MS", _wait_ms),
    "warmup": (_M + "WARMUP", _optional_bool),
    "oom_cpu_fallback": (_M + "OOM_CPU_FALLBACK", _bool),
    "tensorrt_precision": (_M + "TENSORRT_PRECISION", _choice(MODEL_PRECISIONS, upper=True)),
    "text_variable_length": (_M + "TEXT_VARIABLE_LENGTH", _bool),
    "text_cache_size": (_M + "TEXT_CACHE_SIZE", _int(0, 1_000_000)),
}
_PRELOADS: dict[str, tuple[str, Parser]] = {
    **{f: (_PRELOAD + key, _names) for f, key in _TASK_TYPES.items()},
    "ocr_max_resolution": (_PRELOAD + "OCR__MAX_RESOLUTION", _int(32, 8192)),
}
_BATCH_SIZES: dict[str, tuple[str, Parser]] = {
    "facial_recognition": (_M + "MAX_BATCH_SIZE__FACIAL_RECOGNITION", _optional_int(1)),
    "ocr": (_M + "MAX_BATCH_SIZE__OCR", _int(1)),
    "clip": (_M + "MAX_BATCH_SIZE__CLIP", _optional_int(1)),
}


def _preload(env: _Reader, deprecated: list[str]) -> PreloadModels:
    """Immich's older per-task variables (``…__CLIP``, ``…__FACIAL_RECOGNITION``) still work, as
    the default of both types of their task, with a deprecation warning."""
    defaults = PreloadModels()
    none: tuple[str, ...] = ()
    clip = env.get(_PRELOAD + "CLIP", _names, none)
    if clip:
        deprecated.append(f"{_PRELOAD}CLIP (use {_PRELOAD}CLIP__TEXTUAL and {_PRELOAD}CLIP__VISUAL)")
        defaults = replace(defaults, clip_textual=clip, clip_visual=clip)
    faces = env.get(_PRELOAD + "FACIAL_RECOGNITION", _names, none)
    if faces:
        deprecated.append(
            f"{_PRELOAD}FACIAL_RECOGNITION (use {_PRELOAD}FACIAL_RECOGNITION__DETECTION and __RECOGNITION)"
        )
        defaults = replace(defaults, facial_recognition_detection=faces, facial_recognition_recognition=faces)
    return env.fields(defaults, _PRELOADS)


def _placement_value(device_ids: tuple[str, ...]) -> Callable[[str, str], str]:
    """``auto``, ``cpu``, or a device id of ``device_ids`` (``1`` or ``cuda:1`` → ``1``)."""

    def parse(name: str, value: str) -> str:
        lowered = value.strip().lower()
        if lowered in PLACEMENTS:
            return lowered
        kind, sep, device = lowered.partition(":")
        device_id = device if sep and kind in _PLACEMENT_KINDS else (lowered if not sep else "")
        if device_id and device_id in device_ids:
            return device_id
        ids = ", ".join(device_ids)
        raise SettingsError(
            name, value, f"auto, cpu, or one of MACHINE_LEARNING_DEVICE_IDS ({ids}), e.g. {device_ids[0]} or cuda:{device_ids[-1]}"
        )

    return parse


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read every setting from ``environ`` (default: ``os.environ``) into one frozen object."""
    env = _Reader(os.environ if environ is None else environ)
    deprecated: list[str] = []
    settings = env.fields(Settings(), _SETTINGS)
    settings = replace(
        settings,
        # One device id by default: the first of MACHINE_LEARNING_DEVICE_IDS.
        device_id=env.get(_M + "DEVICE_ID", _text, settings.device_ids[0]),
        preload=_preload(env, deprecated),
        placement=env.fields(
            Placement(),
            {f: (_PLACEMENT + key, _placement_value(settings.device_ids)) for f, key in _TASK_TYPES.items()},
        ),
        max_batch_size=env.fields(MaxBatchSize(), _BATCH_SIZES),
        ray=_ray(env),
    )
    for message in deprecated:
        logging.getLogger("immich_ml.config").warning("Deprecated setting: %s", message)
    _check_pinned_devices(settings)
    return settings


def _check_pinned_devices(settings: Settings) -> None:
    """A model pinned to a device id needs a worker on that device (worker i serves ids[i % n])."""
    served = set(settings.device_ids[: settings.workers])
    for name in Placement.__dataclass_fields__:
        value = getattr(settings.placement, name)
        if value not in PLACEMENTS and value not in served:
            task, _, model_type = name.rpartition("_")
            variable = f"MACHINE_LEARNING_PLACEMENT__{task.upper()}__{model_type.upper()}"
            raise SettingsError(
                variable, value,
                f"a device with a worker: MACHINE_LEARNING_WORKERS={settings.workers} starts workers only on "
                f"device(s) {', '.join(sorted(served))}; set MACHINE_LEARNING_WORKERS to at least "
                f"{settings.device_ids.index(value) + 1}",
            )
