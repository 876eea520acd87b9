"""Reduced-precision copies of a model, converted once and cached next to the original.

``MACHINE_LEARNING_MODEL_PRECISION=FP16`` gives GPU providers (CUDA, MIGraphX, OpenVINO on a GPU,
CoreML) ``model.fp16.onnx``: weights and activations in float16, graph inputs and outputs kept
float32 so preprocessing and the response code do not change. ``INT8`` gives the CPU provider
``model.int8.onnx`` (dynamic quantization of MatMul/Gemm weights). Any other provider keeps the
fp32 file, and ``Placement.precision`` says which one really runs.

A conversion writes to a temporary file and renames it into place, under a lock file, so worker
processes that start together convert once and never read a half-written model.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from immich_ml.backends import providers
from immich_ml.config import Settings
from immich_ml.errors import ModelLoadError

log = logging.getLogger(__name__)

FP32 = "FP32"
FP16 = "FP16"
INT8 = "INT8"
_SUFFIX = {FP16: ".fp16.onnx", INT8: ".int8.onnx"}


def effective_precision(settings: Settings, provider: str, options: Mapping[str, Any]) -> str:
    """The precision a model runs at on ``provider``: the setting where that provider supports it."""
    wanted = settings.model_precision
    if wanted == FP16 and providers.uses_gpu(provider, options):
        return FP16
    if wanted == INT8 and provider == providers.CPU:
        return INT8
    return FP32


def variant_path(onnx_path: Path, precision: str) -> Path:
    """Where the ``precision`` copy of ``onnx_path`` lives (``model.onnx`` → ``model.fp16.onnx``)."""
    if precision == FP32:
        return onnx_path
    return onnx_path.with_name(onnx_path.name.removesuffix(".onnx") + _SUFFIX[precision])


def model_for_precision(onnx_path: Path, precision: str) -> Path:
    """Path of the model file to load at ``precision``; converts and caches it on first use.

    A cached copy is reused while it is newer than the source. Raises :class:`ModelLoadError` if
    the conversion fails (the caller may then fall back to FP32).
    """
    if precision == FP32:
        return onnx_path
    target = variant_path(onnx_path, precision)
    if _fresh(target, onnx_path):
        return target
    convert = _convert_fp16 if precision == FP16 else _quantize_int8
    lock_path = target.with_name(target.name + ".lock")
    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not _fresh(target, onnx_path):
                log.info("Converting %s to %s (once; cached as %s)", onnx_path, precision, target.name)
                _atomic_write(onnx_path, target, convert)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return target


def _fresh(target: Path, source: Path) -> bool:
    try:
        return target.stat().st_mtime_ns >= source.stat().st_mtime_ns
    except FileNotFoundError:
        return False


def _atomic_write(source: Path, target: Path, convert: Callable[[Path, Path], None]) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        convert(source, tmp)
        os.replace(tmp, target)
    except Exception as exc:  # noqa: BLE001 - converters raise many unrelated types
        raise ModelLoadError(f"Could not convert {source} to {target.name}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)


def _convert_fp16(source: Path, dest: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(source))
    # keep_io_types: inputs/outputs stay float32, so bound buffers and postprocessing are unchanged;
    # Cast nodes at the edges convert on the device.
    converted = convert_float_to_float16(model, keep_io_types=True)
    _topological_sort(converted.graph)
    onnx.save(converted, str(dest))


def _topological_sort(graph: Any) -> None:
    """Reorder ``graph.node`` so producers precede consumers (stable; in place).

    The converter appends the input Casts after the nodes that read them: ORT sorts on load, but
    the ONNX checker and other runtimes require the order. Subgraph outer-scope reads are ignored.
    """
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        remaining = []
        for node in pending:
            if all(name in ready for name in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                remaining.append(node)
        if len(remaining) == len(pending):
            return  # a cycle or an outer-scope read: leave the order to the runtime
        pending = remaining
    copies = [type(n)() for n in ordered]
    for copy, node in zip(copies, ordered, strict=True):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)


def _quantize_int8(source: Path, dest: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # MatMul/Gemm only: that is where transformer encoders (CLIP) spend their time, and it keeps
    # embeddings at cosine >= 0.999. Dynamic ConvInteger quantizes activations per tensor, which
    # measured 0.971 cosine on the real SFace recognizer, so convolutions stay float32.
    quantize_dynamic(
        str(source),
        str(dest),
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul", "Gemm"],
    )
