"""``onnxruntime.SessionOptions`` for one model on one provider.

Threads: counts are set when configured, or on CPU-only sessions (inter 1, intra = cores /
REQUEST_THREADS, spinning off), because concurrency comes from requests and a small host must not
run requests x threads > cores (Immich's fixed intra 2 does; see :func:`default_cpu_intra_threads`). Memory settings aim at a flat footprint under varying shapes:

* one input-shape bucket + a symbolic dimension → a free-dimension override pins it, so ORT plans
  memory once and compiling providers (OpenVINO, MIGraphX) build one static graph;
* several buckets (or unknown shapes) → the memory-pattern cache is turned off: ORT keeps one
  cached allocation plan per input shape it has seen, which is exactly the per-face-count
  growth users saw on CUDA (Immich #31675).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from immich_ml.backends import providers
from immich_ml.backends.base import SessionOptions
from immich_ml.backends.onnxinfo import symbolic_input_dims
from immich_ml.config import Settings

log = logging.getLogger(__name__)


def free_dimension_overrides(
    symbolic: Mapping[str, Sequence[str | None]], buckets: Sequence[Mapping[str, tuple[int, ...]]]
) -> dict[str, int]:
    """Symbolic dim name → size, when the model will only ever see one shape per input.

    ``symbolic`` is :func:`symbolic_input_dims` output. A name bound to two different sizes (or a
    model with several buckets) gets no override.
    """
    if len(buckets) != 1:
        return {}
    bucket = buckets[0]
    sizes: dict[str, int] = {}
    conflicting: set[str] = set()
    for name, dims in symbolic.items():
        shape = bucket.get(name)
        if shape is None or len(shape) != len(dims):
            continue
        for dim, size in zip(dims, shape, strict=True):
            if not dim:
                continue
            if sizes.get(dim, size) != size:
                conflicting.add(dim)
            sizes[dim] = size
    return {k: v for k, v in sizes.items() if k not in conflicting}


def has_symbolic(symbolic: Mapping[str, Sequence[str | None]]) -> bool:
    return any(d for dims in symbolic.values() for d in dims)


def read_symbolic(path: Path) -> dict[str, list[str | None]]:
    """:func:`symbolic_input_dims`, or ``{}`` when the header cannot be read (ORT will say why)."""
    try:
        return symbolic_input_dims(path)
    except (OSError, ValueError) as exc:
        log.debug("Could not read graph inputs of %s: %s", path, exc)
        return {}


def default_cpu_intra_threads(settings: Settings, cores: int | None = None) -> int:
    """Intra-op threads of a CPU session when MODEL_INTRA_OP_THREADS is unset: the cores shared
    among the request threads that may run models at once (Immich uses a fixed 2, which runs
    REQUEST_THREADS × 2 threads, i.e. twice the cores with the default REQUEST_THREADS = cores)."""
    cores = cores or os.cpu_count() or 1
    return max(1, cores // max(1, settings.request_threads))


def session_options(
    settings: Settings,
    provider: str,
    options: SessionOptions,
    symbolic: Mapping[str, Sequence[str | None]],
) -> Any:
    """Build an ``onnxruntime.SessionOptions`` (typed ``Any``: ORT ships no stubs)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.enable_cpu_mem_arena = settings.model_arena
    intra = options.intra_op_threads or settings.model_intra_op_threads
    inter = settings.model_inter_op_threads
    if provider == providers.CPU:
        intra = intra if intra > 0 else default_cpu_intra_threads(settings)
        inter = inter if inter > 0 else 1
        # ORT's idle pool threads busy-wait for the next operator; on a small shared host that
        # burns the cores other requests (and the rest of the Immich stack) need: measured +40 %
        # CPU per CLIP image at 2 threads on a loaded 2-core VM (benchmarks/README.md).
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if intra > 0:
        so.intra_op_num_threads = intra
    if inter > 0:
        so.inter_op_num_threads = inter
    if inter > 1:
        so.execution_mode = ort.ExecutionMode.ORT_PARALLEL
    # Some CPUs slow down many times over on subnormal floats; models never need them.
    so.add_session_config_entry("session.set_denormal_as_zero", "1")
    overrides = free_dimension_overrides(symbolic, options.shapes)
    for name, size in overrides.items():
        so.add_free_dimension_override_by_name(name, size)
    distinct = {tuple(sorted((k, tuple(v)) for k, v in b.items())) for b in options.shapes}
    if has_symbolic(symbolic) and not overrides and len(distinct) != 1:
        so.enable_mem_pattern = False
    return so
