"""CPU-friendly copy of a model graph: same arithmetic, laid out so ONNX Runtime's fast kernels apply.

Two exact rewrites, applied only where a graph needs them:

* **Weight-only dequantization folded.** Graphs that store weights as int8 plus a
  ``DequantizeLinear`` (and quantize no activation, i.e. no ``QuantizeLinear``) recompute the
  float weights on every run, and ORT keeps them that way on purpose (for QDQ kernels), which
  also blocks Conv+BatchNorm fusion and the blocked (NCHWc) convolutions. ORT itself folds
  them here (basic level, ``session.disable_quant_qdq``): the stored floats are the very values
  the ``DequantizeLinear`` would produce at run time.
* **PRelu with a constant slope → ``x·s + Relu(x)·(1−s)``.** ORT's PRelu is a generic broadcast
  kernel that also forces a layout change around every one in an NCHWc graph; the identity turns
  it into ops the NCHWc pass fuses into neighbouring convolutions. ArcFace/SFace recognizers
  use a PRelu after almost every convolution: the real SFace runs 2.5× faster for a ≤1e-6
  difference in its outputs.

The copy is ``model.prepared.onnx`` next to the model (a reduced-precision variant of it is named
``model.prepared.int8.onnx``); a ``model.prepared.json`` sidecar remembers that a graph needs no
rewrite, so the check costs one ``stat`` after the first load. Written atomically under a lock
file, rebuilt when the source changes.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from immich_ml.errors import ModelLoadError

log = logging.getLogger(__name__)

SUFFIX = ".prepared.onnx"


def prepared_path(onnx_path: Path) -> Path:
    return onnx_path.with_name(onnx_path.name.removesuffix(".onnx") + SUFFIX)


def _sidecar(onnx_path: Path) -> Path:
    return onnx_path.with_name(onnx_path.name.removesuffix(".onnx") + ".prepared.json")


def source_stamp(source: Path) -> dict[str, int]:
    """What identifies a version of a model file in a sidecar (mtime and size)."""
    stat = source.stat()
    return {"mtime_ns": stat.st_mtime_ns, "size": stat.st_size}


def _recorded(source: Path) -> bool | None:
    """Whether a prepared copy is needed, as recorded for this exact source; None if unknown."""
    try:
        data = json.loads(_sidecar(source).read_text(encoding="utf-8"))
        if data.get("source") != source_stamp(source):
            return None
        needed = bool(data["prepared"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if needed and not prepared_path(source).is_file():
        return None
    return needed


def for_cpu(onnx_path: Path) -> Path:
    """The model file to run on the CPU: the prepared copy when one helps, else ``onnx_path``.

    Raises :class:`ModelLoadError` when a needed rewrite fails (the caller may keep the original).
    """
    needed = _recorded(onnx_path)
    if needed is not None:
        return prepared_path(onnx_path) if needed else onnx_path
    lock_path = onnx_path.with_name(onnx_path.name + ".prepare.lock")
    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            needed = _recorded(onnx_path)
            if needed is None:
                needed = _prepare(onnx_path)
                write_text_atomic(_sidecar(onnx_path), json.dumps({"source": source_stamp(onnx_path), "prepared": needed}))
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return prepared_path(onnx_path) if needed else onnx_path


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``path`` through a temporary file and a rename (readers never see half a file)."""
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _prepare(source: Path) -> bool:
    """Write the prepared copy if the graph has something to rewrite; returns whether it did."""
    import onnx

    try:
        model = onnx.load(str(source))
    except Exception as exc:  # noqa: BLE001 - the runtime will report the broken file itself
        log.debug("Not preparing %s: %s", source, exc)
        return False
    fold = _weight_only_dequantize(model)
    if not fold and not _constant_slope_prelus(model):
        return False
    target = prepared_path(source)
    fd, tmp_name = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if fold:
            _fold_with_ort(source, tmp)
            model = onnx.load(str(tmp))
        count = rewrite_prelu(model)
        onnx.save(model, str(tmp))
        tmp.chmod(0o644)  # like the downloaded model: readable by other users of a shared cache
        os.replace(tmp, target)
    except Exception as exc:  # noqa: BLE001 - onnx and ORT raise many unrelated types
        raise ModelLoadError(f"Could not prepare {source} for the CPU: {type(exc).__name__}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    log.info("Prepared %s for the CPU as %s (%s%d PRelu rewritten)", source, target.name,
             "int8 weights folded, " if fold else "", count)
    return True


def _initializers(model: Any) -> set[str]:
    return {init.name for init in model.graph.initializer}


def _weight_only_dequantize(model: Any) -> bool:
    """A DequantizeLinear on constant inputs, and no QuantizeLinear (activations stay float)."""
    constants = _initializers(model) | {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    ops = {n.op_type for n in model.graph.node}
    if "QuantizeLinear" in ops or "DynamicQuantizeLinear" in ops:
        return False
    return any(
        n.op_type == "DequantizeLinear" and all(i in constants for i in n.input if i) for n in model.graph.node
    )


def _constant_slope_prelus(model: Any) -> list[Any]:
    constants = _initializers(model)
    return [n for n in model.graph.node if n.op_type == "PRelu" and n.input[1] in constants]


def _fold_with_ort(source: Path, dest: Path) -> None:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    # Without this ORT keeps DequantizeLinear nodes for its QDQ kernels instead of folding them.
    options.add_session_config_entry("session.disable_quant_qdq", "1")
    options.optimized_model_filepath = str(dest)
    ort.InferenceSession(str(source), sess_options=options, providers=["CPUExecutionProvider"])


def rewrite_prelu(model: Any) -> int:
    """Replace every PRelu whose slope is an initializer by ``x·s + Relu(x)·(1−s)`` (in place).

    Exact in real arithmetic (x > 0: x·s + x·(1−s) = x; x ≤ 0: x·s); float results differ by at
    most a rounding step. Returns the number of PRelu nodes rewritten.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    slopes = {init.name: init for init in graph.initializer}
    complements: dict[str, str] = {}
    nodes = []
    count = 0
    for node in graph.node:
        if node.op_type != "PRelu" or node.input[1] not in slopes:
            nodes.append(node)
            continue
        x, slope = node.input[0], node.input[1]
        y = node.output[0]
        if slope not in complements:
            values = numpy_helper.to_array(slopes[slope])
            name = f"{slope}__one_minus"
            graph.initializer.append(numpy_helper.from_array((1 - values).astype(values.dtype), name))
            complements[slope] = name
        base = f"{node.name or y}__prelu"
        nodes += [
            helper.make_node("Mul", [x, slope], [f"{base}_neg"], name=f"{base}_mul_s"),
            helper.make_node("Relu", [x], [f"{base}_relu"], name=f"{base}_relu"),
            helper.make_node("Mul", [f"{base}_relu", complements[slope]], [f"{base}_pos"], name=f"{base}_mul_1ms"),
            helper.make_node("Add", [f"{base}_neg", f"{base}_pos"], [y], name=f"{base}_add"),
        ]
        count += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return count
