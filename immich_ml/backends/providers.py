"""ONNX Runtime execution providers: which to try, in what order, with which options.

The order and the options are the ones the service we replace uses (contract §5.1), so an existing
Immich deployment gets the same device behaviour: CUDA > MIGraphX (ROCm) > OpenVINO > CoreML > CPU,
intersected with what the installed ONNX Runtime build offers. What differs is what happens when a
provider does not work: ``ort.py`` checks which provider really took the graph and falls back
explicitly (WARNING + ``Placement.fallback_reason``) or, in strict mode, fails.
"""

from __future__ import annotations

import importlib.metadata
import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from immich_ml.backends.base import Target
from immich_ml.config import Settings
from immich_ml.errors import BackendUnavailable

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"  # opt-in only (MACHINE_LEARNING_DEVICE=tensorrt), never picked by auto
MIGRAPHX = "MIGraphXExecutionProvider"
ROCM = "ROCMExecutionProvider"  # removed from ORT 1.23; older onnxruntime-rocm wheels still have it
OPENVINO = "OpenVINOExecutionProvider"
COREML = "CoreMLExecutionProvider"
CPU = "CPUExecutionProvider"

# Immich's SUPPORTED_PROVIDERS order. Anything else an ORT build offers (TensorRT, Azure...) is ignored.
SUPPORTED_PROVIDERS: tuple[str, ...] = (CUDA, MIGRAPHX, ROCM, OPENVINO, COREML, CPU)

# Target.kind -> the providers that serve it, best first.
KIND_PROVIDERS: Mapping[str, tuple[str, ...]] = {
    "cuda": (CUDA,),
    # TensorRT builds engines for the graphs it can take; if it cannot take a model at all, the
    # model moves to plain CUDA with a WARNING (or fails with DEVICE_STRICT), like any provider.
    "tensorrt": (TENSORRT, CUDA),
    "rocm": (MIGRAPHX, ROCM),
    "openvino": (OPENVINO,),
    "coreml": (COREML,),
    "cpu": (CPU,),
}
PROVIDER_KIND: Mapping[str, str] = {
    p: k for k, ps in KIND_PROVIDERS.items() for p in ps if k != "tensorrt"
} | {TENSORRT: "tensorrt"}

# Providers that run on a GPU/NPU and therefore may use the FP16 model (settings.model_precision).
GPU_PROVIDERS = frozenset({CUDA, MIGRAPHX, ROCM, COREML})

# Every distribution that installs the `onnxruntime` module. Two of them overwrite each other's
# files, and whichever wrote last decides which providers exist: a classic cause of "CUDA is
# installed but the service runs on CPU".
ORT_DISTRIBUTIONS: tuple[str, ...] = (
    "onnxruntime",
    "onnxruntime-gpu",
    "onnxruntime-openvino",
    "onnxruntime-rocm",
    "onnxruntime-migraphx",
    "onnxruntime-directml",
)
_EXTRA_FOR_DISTRIBUTION = {
    "onnxruntime": "cpu",
    "onnxruntime-gpu": "cuda",
    "onnxruntime-openvino": "openvino",
    "onnxruntime-rocm": "rocm",
    "onnxruntime-migraphx": "rocm",
    "onnxruntime-directml": "cpu",
}

_logged_lock = threading.Lock()
_logged = False


def installed_ort_distributions() -> list[str]:
    """Names of the installed distributions that provide the ``onnxruntime`` module (normalized)."""
    found: set[str] = set()
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").strip().lower().replace("_", "-")
        if name in ORT_DISTRIBUTIONS:
            found.add(name)
    return sorted(found, key=ORT_DISTRIBUTIONS.index)


def check_single_flavour(installed: Sequence[str] | None = None) -> str | None:
    """Raise :class:`BackendUnavailable` if more than one ONNX Runtime flavour is installed.

    Returns the one installed flavour (``None`` if none is, e.g. a source checkout on PYTHONPATH).
    """
    names = list(installed) if installed is not None else installed_ort_distributions()
    if len(names) <= 1:
        return names[0] if names else None
    keep = next((n for n in names if n != "onnxruntime"), names[0])
    remove = " ".join(n for n in names if n != keep)
    extra = _EXTRA_FOR_DISTRIBUTION[keep]
    raise BackendUnavailable(
        f"Several ONNX Runtime packages are installed ({', '.join(names)}); they overwrite each "
        f"other's files and only one set of execution providers survives. Keep exactly one: "
        f"`pip uninstall -y {' '.join(names)} && pip install 'immich-ml[{extra}]'` "
        f"(or `pip uninstall -y {remove}` and reinstall {keep} with `pip install --force-reinstall {keep}`)."
    )


def available_providers() -> list[str]:
    """The providers this ORT build offers, in ORT's own order (unfiltered)."""
    import onnxruntime as ort

    providers: list[str] = list(ort.get_available_providers())
    return providers


def supported_available() -> list[str]:
    """:data:`SUPPORTED_PROVIDERS` that the installed ORT offers, in Immich's order."""
    offered = set(available_providers())
    return [p for p in SUPPORTED_PROVIDERS if p in offered]


_EXTRA_FOR_PROVIDER = {CUDA: "cuda", TENSORRT: "cuda", MIGRAPHX: "rocm", ROCM: "rocm", OPENVINO: "openvino", COREML: "cpu"}


def missing_provider_reason(provider: str) -> str:
    """Why ``provider`` cannot be used when the ORT build does not offer it, and what to install."""
    import onnxruntime as ort

    flavours = installed_ort_distributions()
    build = f"{flavours[0] if flavours else 'onnxruntime'} {ort.__version__}"
    hint = (
        "CoreML needs the macOS onnxruntime wheel"
        if provider == COREML
        else f"install immich-ml[{_EXTRA_FOR_PROVIDER.get(provider, 'cpu')}] instead of the current ONNX Runtime"
    )
    return f"not in this ONNX Runtime build ({build} offers {available_providers()}); {hint}"


def log_available_providers() -> None:
    """Log the line users grep for (``Available ORT providers: [...]``), once per process."""
    global _logged
    with _logged_lock:
        if _logged:
            return
        _logged = True
    log.info("Available ORT providers: %s", available_providers())


def provider_chain(settings: Settings, target: Target) -> list[str]:
    """Providers to try for ``target``, best first; CPU is always the last resort.

    ``target.kind == "cpu"`` gives ``[CPU]``. An accelerator kind gives that kind's providers that
    are available, then (unless ``settings.device`` pins a family) the lower-ranked available
    accelerators, then CPU. A requested provider that the build lacks is still listed first, so
    ``OrtSession`` reports *why* it could not be used instead of silently skipping it.
    """
    if target.kind == "cpu":
        return [CPU]
    own = list(KIND_PROVIDERS.get(target.kind, ()))
    offered = supported_available()
    listed = set(available_providers())
    chain = [p for p in own if p in listed] or own[:1]
    if settings.device == "auto":
        start = min((SUPPORTED_PROVIDERS.index(p) for p in own), default=len(SUPPORTED_PROVIDERS))
        chain += [p for p in offered if SUPPORTED_PROVIDERS.index(p) > start and p not in chain]
    if CPU not in chain:
        chain.append(CPU)
    return chain


def openvino_devices() -> list[str]:
    """OpenVINO device names (``CPU``, ``GPU.0``, ``NPU``...) or ``[]`` without the OpenVINO EP."""
    try:
        from onnxruntime.capi import _pybind_state as capi

        devices: list[str] = list(capi.get_available_openvino_device_ids())
    except (ImportError, AttributeError):
        return []
    return devices


def openvino_device_type(device_id: str, devices: Sequence[str] | None = None) -> str:
    """``GPU.<device_id>`` when OpenVINO sees any GPU, else ``CPU`` (Immich's rule)."""
    found = openvino_devices() if devices is None else devices
    if any(d.startswith("GPU") for d in found):
        return f"GPU.{device_id}"
    return "CPU"


def cache_dir(model_dir: Path, name: str) -> str:
    """A compile-cache directory next to the model, created first (MIGraphX crashes without it)."""
    path = model_dir / name
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def provider_options(
    provider: str,
    settings: Settings,
    target: Target,
    model_dir: Path,
    *,
    openvino_device_list: Sequence[str] | None = None,
    shapes: Sequence[Mapping[str, tuple[int, ...]]] = (),
) -> dict[str, str]:
    """Options for one provider, as strings (ORT stringifies them anyway).

    ``target.device_id`` is the worker slot's device (one of ``MACHINE_LEARNING_DEVICE_IDS``).
    Compile caches go below ``model_dir`` so a restart does not recompile.
    """
    device_id = target.device_id
    if provider == CPU:
        return {"arena_extend_strategy": "kSameAsRequested"}
    if provider in (CUDA, ROCM):
        return {"arena_extend_strategy": "kSameAsRequested", "device_id": device_id}
    if provider == TENSORRT:
        return tensorrt_options(settings, device_id, model_dir, shapes)
    if provider == MIGRAPHX:
        return {
            "device_id": device_id,
            "migraphx_model_cache_dir": cache_dir(model_dir, "migraphx"),
            "migraphx_fp16_enable": "1" if settings.rocm_precision == "FP16" else "0",
        }
    if provider == OPENVINO:
        device_type = openvino_device_type(device_id, openvino_device_list)
        return {
            "device_type": device_type,
            # OpenVINO's CPU device accepts only FP32/ACCURACY: FP16 there makes ORT drop the
            # whole provider (verified with onnxruntime-openvino 1.24), so the setting is for GPUs.
            "precision": settings.openvino_precision if device_type.startswith("GPU") else "FP32",
            "cache_dir": cache_dir(model_dir, "openvino"),
        }
    if provider == COREML:
        return {
            "ModelFormat": "MLProgram",
            "MLComputeUnits": "ALL",
            "SpecializationStrategy": "FastPrediction",
            "AllowLowPrecisionAccumulationOnGPU": "1",
            "ModelCacheDirectory": cache_dir(model_dir, "coreml"),
        }
    return {}


def tensorrt_options(
    settings: Settings, device_id: str, model_dir: Path, shapes: Sequence[Mapping[str, tuple[int, ...]]]
) -> dict[str, str]:
    """TensorRT EP options: precision from MACHINE_LEARNING_TENSORRT_PRECISION, engines and timing
    cache persisted next to the model (a restart or a TTL reload reuses them instead of spending
    minutes rebuilding), and one optimisation profile spanning the model's shape buckets."""
    cache = cache_dir(model_dir, "tensorrt")
    options = {
        "device_id": device_id,
        "trt_fp16_enable": "True" if settings.tensorrt_precision in ("FP16", "INT8") else "False",
        "trt_int8_enable": "True" if settings.tensorrt_precision == "INT8" else "False",
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": cache,
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": cache,
    }
    if settings.tensorrt_precision == "INT8":
        # Calibration table written by TensorRT's own tools, next to the model; without it only
        # graphs with Q/DQ nodes build at INT8 (TensorRT reports the rest and the model falls back).
        options["trt_int8_calibration_table_name"] = "calibration.flatbuffers"
    if len(shapes) > 1:
        names = sorted({name for bucket in shapes for name in bucket})
        smallest = min(shapes, key=lambda b: sum(_volume(v) for v in b.values()))
        largest = max(shapes, key=lambda b: sum(_volume(v) for v in b.values()))

        def profile(bucket: Mapping[str, tuple[int, ...]]) -> str:
            return ",".join(f"{n}:{'x'.join(str(d) for d in bucket[n])}" for n in names if n in bucket)

        options["trt_profile_min_shapes"] = profile(smallest)
        options["trt_profile_opt_shapes"] = profile(largest)
        options["trt_profile_max_shapes"] = profile(largest)
    return options


def _volume(shape: tuple[int, ...]) -> int:
    total = 1
    for dim in shape:
        total *= dim
    return total


def device_label(provider: str, options: Mapping[str, Any]) -> str:
    """Human-readable device for health: ``cuda:1``, ``openvino:GPU.0``, ``cpu``."""
    if provider == CPU:
        return "cpu"
    if provider == OPENVINO:
        return f"openvino:{options.get('device_type', 'CPU')}"
    if provider == COREML:
        return "coreml"
    return f"{PROVIDER_KIND.get(provider, provider)}:{options.get('device_id', '0')}"


def uses_gpu(provider: str, options: Mapping[str, Any]) -> bool:
    """Whether this provider+options runs on a GPU (the FP16 model applies only there)."""
    if provider == OPENVINO:
        return str(options.get("device_type", "CPU")).startswith("GPU")
    return provider in GPU_PROVIDERS
