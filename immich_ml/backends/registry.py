"""Backend selection: which runtime opens a model for a worker's target, with explicit fallback.

Each worker asks :func:`detect_target_kind` once at start-up which accelerator family it uses (the
only place the family is chosen); it then opens models with :func:`open_session` on its slot's :class:`Target` and proves
the device works with :func:`self_test`. Every fallback is logged at WARNING and recorded in
``Placement.fallback_reason``; with ``MACHINE_LEARNING_DEVICE_STRICT`` it raises instead.
"""

from __future__ import annotations

import importlib
import logging
from types import ModuleType

from immich_ml.backends import providers
from immich_ml.backends.base import Availability, ModelArtifacts, Placement, Session, SessionOptions, Target
from immich_ml.config import Settings
from immich_ml.errors import BackendUnavailable
from immich_ml.schemas import ModelFormat

log = logging.getLogger(__name__)

BRIDGES = ("rknn", "armnn")  # NPU/Mali bridges win when present: such boards have no CUDA/ROCm
_BRIDGE_SESSION = {"armnn": "ArmnnSession", "rknn": "RknnSession"}
_BRIDGE_SETTING = {"armnn": ("ann", "MACHINE_LEARNING_ANN"), "rknn": ("rknn", "MACHINE_LEARNING_RKNN")}


def _bridge(kind: str) -> ModuleType | None:
    """The bridge module, or ``None`` when it is not installed or cannot even be imported."""
    try:
        return importlib.import_module(f"immich_ml.backends.{kind}")
    except ImportError:
        return None
    except Exception as exc:  # noqa: BLE001 - a broken native bridge must not stop start-up
        log.warning("The %s bridge failed to import: %s: %s", kind, type(exc).__name__, exc)
        return None


def probe(kind: str, settings: Settings) -> Availability:
    """Whether ``kind`` (``cuda``, ``rocm``, ``openvino``, ``coreml``, ``cpu``, ``armnn``, ``rknn``) works here."""
    if kind in BRIDGES:
        attr, variable = _BRIDGE_SETTING[kind]
        if not getattr(settings, attr):
            return Availability(False, f"{variable} is false")
        module = _bridge(kind)
        if module is None:
            return Availability(False, f"the {kind} bridge is not part of this installation")
        try:
            result: Availability = module.probe(settings)
        except Exception as exc:  # noqa: BLE001 - a broken bridge must not stop start-up
            return Availability(False, f"{kind} probe failed: {type(exc).__name__}: {exc}")
        return result
    if kind == "cpu":
        return Availability(True, "")
    wanted = providers.KIND_PROVIDERS.get(kind)
    if wanted is None:
        return Availability(False, f"unknown device kind {kind!r}")
    offered = providers.available_providers()
    if kind == "tensorrt":
        wanted = wanted[:1]  # CUDA alone does not make TensorRT usable
    if any(p in offered for p in wanted):
        return Availability(True, "")
    return Availability(False, f"{wanted[0]} {providers.missing_provider_reason(wanted[0])}")


def detect_target_kind(settings: Settings) -> str:
    """The accelerator family this service's workers use: ``cuda``, ``rocm``, ``openvino``,
    ``coreml``, ``cpu``, ``armnn`` or ``rknn``.

    Raises :class:`BackendUnavailable` when two ONNX Runtime flavours are installed, or when
    ``MACHINE_LEARNING_DEVICE`` names a family that is not available and DEVICE_STRICT is set.
    Without strict mode an unavailable requested family is still returned (with a WARNING), so
    every model reports in health why it runs elsewhere.
    """
    providers.check_single_flavour()
    providers.log_available_providers()
    if settings.device != "auto":
        availability = probe(settings.device, settings)
        if not availability.available:
            message = f"MACHINE_LEARNING_DEVICE={settings.device} is not usable: {availability.reason}"
            if settings.device_strict:
                raise BackendUnavailable(message + " (MACHINE_LEARNING_DEVICE_STRICT is set).")
            log.warning("%s; models will fall back and say so in /health", message)
        return settings.device
    for kind in BRIDGES:
        availability = probe(kind, settings)
        if availability.available:
            return kind
        log.debug("%s not used: %s", kind, availability.reason)
    for provider in providers.supported_available():
        return providers.PROVIDER_KIND[provider]
    return "cpu"


def preferred_formats(settings: Settings, target: Target) -> tuple[ModelFormat, ...]:
    """Model formats to fetch for ``target``, best first; ONNX always last as the fallback."""
    if target.kind == "rknn":
        return (ModelFormat.RKNN, ModelFormat.ONNX)
    if target.kind == "armnn":
        return (ModelFormat.ARMNN, ModelFormat.ONNX)
    return (ModelFormat.ONNX,)


def open_session(
    artifacts: ModelArtifacts, settings: Settings, target: Target, options: SessionOptions
) -> Session:
    """Open ``artifacts`` on ``target``. Fallbacks are logged at WARNING and shown in ``placement``."""
    from immich_ml.backends.ort import OrtSession

    if target.kind in BRIDGES:
        reason = _open_bridge_reason(artifacts, settings, target)
        if reason is not None and options.onnx_runtime_reason:
            text = f"{options.onnx_runtime_reason.format(kind=target.kind)} ({reason})"
            log.info("%s runs on ONNX Runtime: %s", options.label or artifacts.onnx, text)
            return OrtSession(
                artifacts, settings, Target("cpu", target.device_id), options,
                fallback_reason=text, requested=str(target),
            )
        if reason is None:
            try:
                return _bridge_session(artifacts, settings, target, options)
            except BackendUnavailable:
                raise
            except Exception as exc:  # noqa: BLE001 - surface any bridge failure as a fallback
                reason = f"{target.kind} could not load it: {type(exc).__name__}: {exc}"
        label = options.label or str(artifacts.onnx)
        text = f"{target.kind} failed for {label}: {reason}"
        if settings.device_strict:
            raise BackendUnavailable(text + " (MACHINE_LEARNING_DEVICE_STRICT is set).")
        log.warning("%s; moving %s to ONNX Runtime", text, label)
        return OrtSession(
            artifacts, settings, Target("cpu", target.device_id), options,
            fallback_reason=text, requested=str(target),
        )
    return OrtSession(artifacts, settings, target, options)


def _open_bridge_reason(artifacts: ModelArtifacts, settings: Settings, target: Target) -> str | None:
    """Why the bridge cannot open this model, or ``None`` if it should try."""
    availability = probe(target.kind, settings)
    if not availability.available:
        return availability.reason
    path = artifacts.rknn if target.kind == "rknn" else artifacts.armnn
    if path is None or not path.is_file():
        return f"no {target.kind} export of this model ({path or 'none listed'})"
    return None


def _bridge_session(
    artifacts: ModelArtifacts, settings: Settings, target: Target, options: SessionOptions
) -> Session:
    module = _bridge(target.kind)
    if module is None:
        raise BackendUnavailable(f"the {target.kind} bridge is not part of this installation")
    session: Session = getattr(module, _BRIDGE_SESSION[target.kind])(artifacts, settings, target, options)
    return session


def self_test(settings: Settings, target: Target) -> Placement:
    """Run a tiny graph on ``target`` and check its result; returns where it really ran.

    A provider that fails moves to the next one (WARNING, ``fallback_reason``) or, in strict
    mode, raises :class:`BackendUnavailable`; wrong numbers raise ``BackendError``.
    """
    from immich_ml.backends.selftest import run_self_test

    if target.kind in BRIDGES:
        module = _bridge(target.kind)
        availability = probe(target.kind, settings)
        if availability.available and module is not None and hasattr(module, "self_test"):
            placement: Placement = module.self_test(settings, target)
            return placement
        if availability.available:
            return Placement(
                backend=target.kind,
                provider=target.kind,
                device=str(target),
                requested=str(target),
                extra={"self_test": "not run: this bridge has no self-test"},
            )
        text = f"{target.kind} is not usable: {availability.reason}"
        if settings.device_strict:
            raise BackendUnavailable(text + " (MACHINE_LEARNING_DEVICE_STRICT is set).")
        log.warning("%s; this worker's models will run on ONNX Runtime", text)
        return run_self_test(settings, Target("cpu", target.device_id), fallback_reason=text, requested=str(target))
    return run_self_test(settings, target)
