"""A CLIP text graph that runs on the query's own length instead of the full context.

OpenCLIP text towers pad every query to ``context_length`` (77) tokens, then read the features
at the first end-of-text token. Attention is causal: position ``i`` sees positions ``0..i`` only,
and every other operation works token by token, so the tokens after the end-of-text token cannot
change the output. A search query is typically 5–15 tokens: 80–90 % of the FLOPs of a padded run
compute features nobody reads.

The rewrite makes the sequence axis of the ``text`` input symbolic and slices the two constants
that carry the context length (the positional embedding ``[C, W]`` and the causal mask
``[C, C]``) to the length of the input at run time. The model then runs on the tokens up to a
bucket boundary past the end-of-text token (:func:`bucket_length`); the padding inside the bucket
is the tokenizer's own.

A graph qualifies only if the rewrite finds exactly those constants and no other tensor holds the
context length, **and** the rewritten graph gives the original's embedding (cosine ≥ 0.99999 and
max |Δ| ≤ 1e-4) on the model's own tokenization of probe strings of every bucket length. Graphs that
differ (SigLIP-style last-token pooling, bidirectional attention, reshapes with the length baked
in) keep the padded full-length run. The verdict is cached next to the model as
``model.textlen.json``, the graph as ``model.textlen.onnx``, so only the first load pays for it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from immich_ml.backends.prepare import source_stamp, write_text_atomic

log = logging.getLogger(__name__)

SUFFIX = ".textlen.onnx"
# Lengths the graph runs at: a query of n tokens runs at the first bucket >= n. Few distinct
# shapes keep buffer pools and allocator plans small; 8-token steps waste little on short queries.
BUCKET_STEP = 8
_SEQUENCE_DIM = "text_length"
_MIN_COSINE = 0.99999
_MAX_ABS = 1e-4
# Probe texts for the verification: every bucket length up to the context gets one.
_PROBE_WORDS = (
    "a dog playing on the beach with a red ball while the sun sets behind the hills and two children "
    "build a sandcastle near the water, their parents reading books under a striped umbrella, "
    "gulls circling above the pier where fishing boats return with the evening catch and lights "
    "come on along the promenade"
).split()


class NotApplicable(Exception):
    """The graph does not have the shape this rewrite needs; the message says what differs."""


@dataclass(frozen=True)
class Verdict:
    """Whether ``model.textlen.onnx`` may replace the model, and why not if it may not."""

    usable: bool
    reason: str

    def to_json(self, source: Path) -> str:
        return json.dumps({"source": source_stamp(source), "usable": self.usable, "reason": self.reason})


def variable_length_path(onnx_path: Path) -> Path:
    return onnx_path.with_name(onnx_path.name.removesuffix(".onnx") + SUFFIX)


def _sidecar(onnx_path: Path) -> Path:
    return onnx_path.with_name(onnx_path.name.removesuffix(".onnx") + ".textlen.json")



def bucket_length(tokens: int, context_length: int) -> int:
    """The sequence length a query of ``tokens`` tokens (end-of-text included) runs at."""
    if tokens <= 0:
        return min(BUCKET_STEP, context_length)
    return min(context_length, -(-tokens // BUCKET_STEP) * BUCKET_STEP)


def buckets(context_length: int) -> tuple[int, ...]:
    """Every length :func:`bucket_length` can return."""
    return tuple(sorted({bucket_length(n, context_length) for n in range(1, context_length + 1)}))


# --- the rewrite ----------------------------------------------------------------------------------


def rewrite(model: Any, input_name: str, context_length: int) -> Any:
    """Make ``input_name``'s sequence axis symbolic and slice the positional embedding and the causal
    mask to it (in place; returns ``model``). Raises :class:`NotApplicable`."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    c = context_length
    graph_input = next((i for i in graph.input if i.name == input_name), None)
    if graph_input is None:
        raise NotApplicable(f"no input named {input_name!r}")
    dims = graph_input.type.tensor_type.shape.dim
    if len(dims) != 2 or (dims[1].HasField("dim_value") and dims[1].dim_value not in (0, c)):
        raise NotApplicable(f"input {input_name!r} is not [batch, {c}]")
    if any(n.op_type in ("Loop", "If", "Scan") for n in graph.node):
        raise NotApplicable("the graph has control flow")
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    constants: dict[str, npt.NDArray[Any]] = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    constants[node.output[0]] = numpy_helper.to_array(attribute.t)
    positional: list[tuple[str, int]] = []
    masks: list[str] = []
    for name, array in constants.items():
        shape = array.shape
        holds_length = c in shape or (
            array.ndim <= 1 and np.issubdtype(array.dtype, np.integer) and c in array.reshape(-1).tolist()
        )
        if not holds_length:
            continue
        users = consumers.get(name, [])
        if not users:
            continue
        if not all(u.op_type == "Add" for u in users):
            raise NotApplicable(f"constant {name!r} {list(shape)} holds the context length {c}")
        squeezed = tuple(d for d in shape if d != 1)
        if len(squeezed) == 2 and squeezed[0] == c and squeezed[1] != c and shape[-2] == c:
            positional.append((name, array.ndim - 2))
        elif squeezed == (c, c):
            if not _is_causal(array.reshape(c, c)):
                raise NotApplicable(f"constant {name!r} {list(shape)} is not a causal mask: tokens see later ones")
            masks.append(name)
        else:
            raise NotApplicable(f"constant {name!r} {list(shape)} holds the context length {c}")
    if len(positional) != 1 or not masks:
        raise NotApplicable(
            f"expected one positional embedding [{c}, W] and a causal mask [{c}, {c}], found "
            f"{len(positional)} and {len(masks)}"
        )
    dims[1].Clear()
    dims[1].dim_param = _SEQUENCE_DIM
    prefix = "immich_ml_textlen"
    length = f"{prefix}.length"
    shape_name = f"{prefix}.input_shape"
    one, two, zero = f"{prefix}.one", f"{prefix}.two", f"{prefix}.zero"
    graph.initializer.extend(
        [
            helper.make_tensor(one, TensorProto.INT64, [1], [1]),
            helper.make_tensor(two, TensorProto.INT64, [1], [2]),
            helper.make_tensor(zero, TensorProto.INT64, [1], [0]),
        ]
    )
    new_nodes = [
        helper.make_node("Shape", [input_name], [shape_name], name=f"{prefix}.shape"),
        helper.make_node("Slice", [shape_name, one, two, zero], [length], name=f"{prefix}.length"),
    ]
    for index, (name, axis) in enumerate(positional):
        axis_name = f"{prefix}.pos_axis{index}"
        graph.initializer.append(helper.make_tensor(axis_name, TensorProto.INT64, [1], [axis]))
        sliced = f"{name}__{prefix}"
        new_nodes.append(
            helper.make_node("Slice", [name, zero, length, axis_name], [sliced], name=f"{prefix}.pos{index}")
        )
        _redirect(consumers[name], name, sliced)
    zeros, axes, ends = f"{prefix}.zeros2", f"{prefix}.mask_axes", f"{prefix}.mask_ends"
    graph.initializer.extend(
        [
            helper.make_tensor(zeros, TensorProto.INT64, [2], [0, 0]),
            helper.make_tensor(axes, TensorProto.INT64, [2], [-2, -1]),
        ]
    )
    new_nodes.append(helper.make_node("Concat", [length, length], [ends], name=f"{prefix}.mask_ends", axis=0))
    for index, name in enumerate(masks):
        sliced = f"{name}__{prefix}"
        new_nodes.append(
            helper.make_node("Slice", [name, zeros, ends, axes], [sliced], name=f"{prefix}.mask{index}")
        )
        _redirect(consumers[name], name, sliced)
    # Intermediate shapes recorded at export time name the full length; ORT infers them again.
    del graph.value_info[:]
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(new_nodes + nodes)
    return model


def _is_causal(mask: npt.NDArray[Any]) -> bool:
    """0 on and below the diagonal, a large negative number above it."""
    if not np.issubdtype(mask.dtype, np.floating):
        return False
    lower = np.tril(np.ones(mask.shape, dtype=bool))
    return bool(np.all(mask[lower] == 0) and np.all(mask[~lower] <= -1e4))


def _redirect(nodes: Sequence[Any], old: str, new: str) -> None:
    for node in nodes:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new


# --- verification and caching ---------------------------------------------------------------------

Encoder = Callable[[str], npt.NDArray[np.int64]]


def probe_texts(encode: Encoder, context_length: int) -> list[str]:
    """Strings whose tokenizations reach every bucket (and the full context, truncated)."""
    wanted = set(buckets(context_length))
    texts: list[str] = []
    seen: set[int] = set()
    for count in range(1, len(_PROBE_WORDS) + 1):
        text = " ".join(_PROBE_WORDS[:count])
        length = bucket_length(_token_count(encode(text)), context_length)
        if length not in seen:
            seen.add(length)
            texts.append(text)
        if seen >= wanted:
            break
    return texts


def _token_count(ids: npt.NDArray[np.int64]) -> int:
    """Tokens up to and including the first end-of-text token (the highest id, where the graph reads)."""
    return int(np.argmax(ids)) + 1


def verify(
    original: Path, rewritten: Path, input_name: str, dtype: Any, encode: Encoder, context_length: int
) -> Verdict:
    """Whether ``rewritten`` answers like ``original`` on the tokenizer's own probe strings."""
    import onnxruntime as ort

    def session(path: Path) -> Any:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.log_severity_level = 3
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])

    try:
        full, short = session(original), session(rewritten)
        for text in probe_texts(encode, context_length):
            ids = encode(text).astype(dtype)[None, :]
            length = bucket_length(_token_count(ids[0]), context_length)
            expected = np.asarray(full.run(None, {input_name: ids})[0], dtype=np.float64).reshape(-1)
            got = np.asarray(short.run(None, {input_name: ids[:, :length]})[0], dtype=np.float64).reshape(-1)
            if expected.shape != got.shape:
                return Verdict(False, f"output shape {got.shape} instead of {expected.shape}")
            denominator = float(np.linalg.norm(expected) * np.linalg.norm(got))
            cosine = float(expected @ got) / denominator if denominator > 0 else 0.0
            worst = float(np.max(np.abs(expected - got))) if expected.size else 0.0
            if not (cosine >= _MIN_COSINE and worst <= _MAX_ABS):
                return Verdict(
                    False, f"at {length} tokens the output differs (cosine {cosine:.6f}, max |Δ| {worst:.2e})"
                )
    except Exception as exc:  # noqa: BLE001 - ORT raises many unrelated types
        return Verdict(False, f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
    return Verdict(True, "verified")


def _recorded(source: Path) -> Verdict | None:
    try:
        data = json.loads(_sidecar(source).read_text(encoding="utf-8"))
        if data.get("source") != source_stamp(source):
            return None
        verdict = Verdict(bool(data["usable"]), str(data["reason"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if verdict.usable and not variable_length_path(source).is_file():
        return None
    return verdict


def variable_length_graph(
    source: Path, input_name: str, dtype: Any, encode: Encoder, context_length: int
) -> tuple[Path | None, str]:
    """``(path of the variable-length graph, "verified")`` or ``(None, reason)``; built and checked
    once per model file (under a lock file, so concurrent workers do it once)."""
    verdict = _recorded(source)
    if verdict is None:
        lock_path = source.with_name(source.name + ".textlen.lock")
        with lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                verdict = _recorded(source)
                if verdict is None:
                    verdict = _build(source, input_name, dtype, encode, context_length)
                    write_text_atomic(_sidecar(source), verdict.to_json(source))
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
    if not verdict.usable:
        return None, verdict.reason
    return variable_length_path(source), verdict.reason


def _build(source: Path, input_name: str, dtype: Any, encode: Encoder, context_length: int) -> Verdict:
    import onnx

    target = variable_length_path(source)
    try:
        model = onnx.load(str(source))
        rewrite(model, input_name, context_length)
    except NotApplicable as exc:
        return Verdict(False, str(exc))
    except Exception as exc:  # noqa: BLE001 - onnx raises many unrelated types
        return Verdict(False, f"{type(exc).__name__}: {exc}")
    fd, tmp_name = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        onnx.save(model, str(tmp))
        del model
        verdict = verify(source, tmp, input_name, dtype, encode, context_length)
        if verdict.usable:
            tmp.chmod(0o644)
            os.replace(tmp, target)
            log.info("Prepared %s: the text model runs on the query's length (%s)", target.name, verdict.reason)
        else:
            log.info("%s keeps the full %d-token context: %s", source, context_length, verdict.reason)
        return verdict
    finally:
        tmp.unlink(missing_ok=True)
