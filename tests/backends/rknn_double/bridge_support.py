"""Fixtures and helpers shared by the RKNN tests (test_rknn.py, test_rknn_bridge*.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import rknn_double as rd
from immich_ml._core import _rknn

IMAGE = rd.Tensor("images", (1, 8, 8, 3), rd.NHWC, rd.FLOAT16)
EMBED = rd.Tensor("embedding", (1, 4), rd.UNDEFINED, rd.FLOAT32)
HEAT = rd.Tensor("heatmap", (1, 2, 3), rd.UNDEFINED, rd.FLOAT16)


@pytest.fixture(scope="module")
def libs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("rknn_double")
    return {variant: rd.build(directory, variant) for variant in rd.VARIANTS}


@pytest.fixture
def double(libs: dict[str, Path]) -> Iterator[rd.Double]:
    d = rd.Double(libs["full"])
    d.reset()
    yield d
    d.reset()


@pytest.fixture
def model_def() -> rd.DoubleModel:
    return rd.make_model([IMAGE], [EMBED, HEAT], custom='{"dims": [1, 3, 8, 8]}')


@pytest.fixture
def dynamic_def() -> rd.DoubleModel:
    return rd.make_model([IMAGE], [EMBED, HEAT], dynamic=True, seed=9)


def open_model(lib: Path, model: rd.DoubleModel, contexts: int = 1, masks: list[int] | None = None,
               out_types: list[int] | None = None, data: bytes | None = None) -> _rknn.Model:
    m = _rknn.Model(_rknn.Runtime(str(lib)), model.to_bytes())
    m.prepare(contexts, masks or [0] * contexts, [rd.FLOAT32] * len(model.inputs),
              out_types or [rd.FLOAT32] * len(model.outputs), data)
    return m


def npu_input(m: _rknn.Model, slot: int, shape: tuple[int, ...] = (1, 8, 8, 3)) -> np.ndarray:
    """The input memory of ``slot`` as a float32 array (NHWC for images: how the bridge binds it)."""
    return np.frombuffer(m.input_buffer(slot, 0), dtype=np.float32, count=int(np.prod(shape))).reshape(shape)


def read_outputs(m: _rknn.Model, slot: int) -> list[np.ndarray]:
    outs = []
    for index, t in enumerate(m.outputs):
        dst = np.empty(int(np.prod(t.dims)), dtype=np.float32)
        m.output_into(slot, index, dst)
        outs.append(dst.reshape(t.dims))
    return outs


def write_and_run(m: _rknn.Model, slot: int, image_nchw: np.ndarray) -> list[np.ndarray]:
    npu_input(m, slot)[...] = rd.nchw_to_nhwc(image_nchw)
    m.run(slot)
    return read_outputs(m, slot)
