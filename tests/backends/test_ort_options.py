"""Session options for a flat memory footprint and Immich's thread rules."""

from __future__ import annotations

from dataclasses import replace

from immich_ml.backends import providers as P
from immich_ml.backends.base import SessionOptions
from immich_ml.backends.ort_options import default_cpu_intra_threads, free_dimension_overrides, session_options
from immich_ml.config import Settings

SYMBOLIC = {"input": ["batch", None, None, None]}


def test_override_only_with_a_single_bucket() -> None:
    assert free_dimension_overrides(SYMBOLIC, [{"input": (1, 3, 640, 640)}]) == {"batch": 1}
    assert free_dimension_overrides(SYMBOLIC, [{"input": (1, 3, 112, 112)}, {"input": (4, 3, 112, 112)}]) == {}
    assert free_dimension_overrides(SYMBOLIC, []) == {}


def test_conflicting_dim_names_are_not_pinned() -> None:
    symbolic = {"a": ["n", "k"], "b": ["n"]}
    assert free_dimension_overrides(symbolic, [{"a": (2, 5), "b": (3,)}]) == {"k": 5}


def test_mem_pattern_off_for_variable_shapes() -> None:
    buckets = tuple({"input": (b, 3, 112, 112)} for b in (1, 2, 4, 8, 16))
    so = session_options(Settings(), P.CPU, SessionOptions(shapes=buckets), SYMBOLIC)
    assert so.enable_mem_pattern is False
    so = session_options(Settings(), P.CPU, SessionOptions(shapes=({"input": (1, 3, 640, 640)},)), SYMBOLIC)
    assert so.enable_mem_pattern is True
    # Fully static graphs keep ORT's memory planning.
    so = session_options(Settings(), P.CPU, SessionOptions(shapes=buckets), {"input": [None] * 4})
    assert so.enable_mem_pattern is True


def test_thread_rules() -> None:
    cpu = session_options(Settings(), P.CPU, SessionOptions(), {})
    assert (cpu.intra_op_num_threads, cpu.inter_op_num_threads) == (default_cpu_intra_threads(Settings()), 1)
    gpu = session_options(Settings(), P.CUDA, SessionOptions(), {})
    assert (gpu.intra_op_num_threads, gpu.inter_op_num_threads) == (0, 0)  # ORT defaults
    tuned = session_options(replace(Settings(), model_inter_op_threads=3), P.CUDA, SessionOptions(intra_op_threads=4), {})
    assert (tuned.intra_op_num_threads, tuned.inter_op_num_threads) == (4, 3)
    assert tuned.execution_mode.name == "ORT_PARALLEL"
    assert cpu.enable_cpu_mem_arena is False  # MACHINE_LEARNING_MODEL_ARENA default of the images


def test_cpu_threads_share_the_cores_among_request_threads() -> None:
    assert default_cpu_intra_threads(replace(Settings(), request_threads=2), cores=2) == 1
    assert default_cpu_intra_threads(replace(Settings(), request_threads=2), cores=8) == 4
    assert default_cpu_intra_threads(replace(Settings(), request_threads=16), cores=4) == 1
    assert default_cpu_intra_threads(replace(Settings(), request_threads=0), cores=4) == 4
    configured = session_options(replace(Settings(), model_intra_op_threads=3), P.CPU, SessionOptions(), {})
    assert configured.intra_op_num_threads == 3
    assert configured.get_session_config_entry("session.intra_op.allow_spinning") == "0"
