"""CLIP image encoder (OpenCLIP and M-CLIP visual towers).

Files: ``visual/preprocess_cfg.json`` (``size``, ``mean``, ``std``, ``interpolation``, ``resize_mode``)
and ``visual/model.onnx``: input ``image`` float32 ``[1,3,S,S]`` (or, for graphs that normalise
themselves, uint8 ``[1,S,S,3]``), output ``embedding`` float32 ``[1,D]``, L2-normalised by the graph.
The compiled resize kernel writes the normalised pixels straight into the session's input buffer.
With cross-request batching on (``MACHINE_LEARNING_BATCH_WAIT_MS``) and a graph whose batch axis
is dynamic, each request resizes into its own row and concurrent requests share runs of up to
``MAX_BATCH_SIZE__CLIP`` images (:mod:`immich_ml.models.batching`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np

from immich_ml.backends.base import Session, SessionOptions
from immich_ml.errors import ModelLoadError
from immich_ml.models.base import InferenceModel, ModelRequest, pixel_buffer
from immich_ml.models.batching import batch_sizes, static_batch
from immich_ml.models.runner import copy_rows
from immich_ml.models.cache import ModelFiles
from immich_ml.models.timing import Stages
from immich_ml.ops.embed import serialize_embedding
from immich_ml.ops.image import resize_normalize_into
from immich_ml.schemas import ModelTask, ModelType

Resample = Literal["bilinear", "bicubic", "lanczos"]
ResizeMode = Literal["shortest", "squash"]
_RESAMPLE: dict[str, Resample] = {"bicubic": "bicubic", "bilinear": "bilinear", "lanczos": "lanczos"}
# Without MAX_BATCH_SIZE__CLIP: a CPU gains nothing past a few images per run; an accelerator
# needs dozens to fill up (ViT-B-32 at 64 images is still well under 1 GB of activations).
DEFAULT_MAX_BATCH_CPU = 8
DEFAULT_MAX_BATCH_ACCELERATOR = 64


def clip_batch_sizes(model: InferenceModel) -> tuple[int, ...]:
    """Bucket sizes of a CLIP tower: ``(1,)`` without batching, else up to MAX_BATCH_SIZE__CLIP."""
    if model.batch_wait_ms() <= 0:
        return (1,)
    default = DEFAULT_MAX_BATCH_CPU if model.target.kind == "cpu" else DEFAULT_MAX_BATCH_ACCELERATOR
    return batch_sizes(model.settings.max_batch_size.clip or default)


@dataclass(frozen=True)
class ClipPreprocess:
    """Immich's CLIP image preprocessing. ``size`` in pixels; ``mean``/``std`` per RGB channel for
    pixels scaled to 0..1; ``mode`` shortest = resize the short side then centre-crop, squash = stretch."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resample: Resample = "bicubic"
    mode: ResizeMode = "shortest"

    @staticmethod
    def from_config(cfg: dict[str, Any]) -> ClipPreprocess:
        """Parse ``preprocess_cfg.json``; KeyError/TypeError/ValueError mean a broken file."""
        raw_size = cfg["size"]
        size = int(raw_size[0] if isinstance(raw_size, list) else raw_size)
        mean = tuple(float(v) for v in cfg["mean"])
        std = tuple(float(v) for v in cfg["std"])
        if len(mean) != 3 or len(std) != 3 or size < 1 or any(s == 0 for s in std):
            raise ValueError(f"size {raw_size}, mean {cfg['mean']} and std {cfg['std']} are not usable")
        interpolation = str(cfg.get("interpolation", "bicubic")).lower()
        resample = _RESAMPLE.get(interpolation)
        mode = cfg.get("resize_mode", "shortest")  # open_clip's default for configs that predate it
        if resample is None:
            raise ModelLoadError(f"Unsupported interpolation {interpolation!r} in preprocess_cfg.json.")
        if mode not in ("shortest", "squash"):
            raise ModelLoadError(f"Unsupported resize_mode {mode!r} in preprocess_cfg.json.")
        return ClipPreprocess(
            size=size,
            mean=(mean[0], mean[1], mean[2]),
            std=(std[0], std[1], std[2]),
            resample=resample,
            mode=cast(ResizeMode, mode),
        )


def decode_min_side(size: int) -> int:
    """Smallest side a JPEG may be DCT-downscaled to for a ``size`` input: 1.5× the input, so the
    bicubic resize still does most of the reduction. At 1× the 1/8-1/2 DCT box filter dominates and
    the input tensor of detailed photos (the Solvay group) differs by 22 % RMS from a full decode;
    at 1.5× by ≤ 2 %, for the same decode time on 1440-px previews (benchmarks/README.md)."""
    return (size * 3 + 1) // 2


class ClipVisual(InferenceModel):
    task = ModelTask.SEARCH
    type = ModelType.VISUAL

    _pre: ClipPreprocess | None = None
    _input = "image"
    _fused = False
    _output_index = 0
    _sizes: tuple[int, ...] = (1,)

    def required_files(self) -> tuple[str, ...]:
        return ("visual/preprocess_cfg.json",)

    def _prepare(self, files: ModelFiles) -> None:
        cfg = json.loads(files.path("visual/preprocess_cfg.json").read_text(encoding="utf-8"))
        self._pre = ClipPreprocess.from_config(cfg)

    def _configure(self, session: Session) -> None:
        assert self._pre is not None
        if not session.inputs:
            raise ModelLoadError(f"Model '{self.spec.name}' has no inputs.")
        names = [spec.name for spec in session.inputs]
        spec = session.inputs[names.index("image") if "image" in names else 0]
        self._input = spec.name
        self._fused = spec.dtype == "uint8"
        if len(spec.shape) != 4:
            raise ModelLoadError(
                f"Model '{self.spec.name}': image input {spec.name} has shape {spec.shape}, expected 4-D."
            )
        spatial = spec.shape[1:3] if self._fused else spec.shape[2:4]
        size = self._pre.size
        if any(isinstance(d, int) and d > 0 and d != size for d in spatial):
            raise ModelLoadError(
                f"Model '{self.spec.name}' takes {spatial} images but preprocess_cfg.json says {size}."
            )
        outputs = [o.name for o in session.outputs]
        self._output_index = outputs.index("embedding") if "embedding" in outputs else 0
        fixed = static_batch(spec.shape[0])
        self._sizes = (fixed,) if fixed is not None else clip_batch_sizes(self)

    def _batching(self, session: Session) -> None:
        self._make_batching(session, self._shapes, self._sizes, output_index=self._output_index, batched=True)

    def _shapes(self, batch: int) -> dict[str, tuple[int, ...]]:
        return {self._input: self._shape(batch)}

    def warmup_shapes(self) -> tuple[dict[str, tuple[int, ...]], ...]:
        return tuple(self._shapes(size) for size in self._sizes)

    def _fill_batch(self, buffers: Any, items: Any, batch: int) -> None:
        copy_rows(self._input)(buffers, items, batch)

    def _reset(self) -> None:
        self._pre = None
        self._sizes = (1,)

    def _shape(self, batch: int = 1) -> tuple[int, int, int, int]:
        assert self._pre is not None
        s = self._pre.size
        return (batch, s, s, 3) if self._fused else (batch, 3, s, s)

    def session_options(self) -> SessionOptions:
        # Every bucket the model will run (before _configure: the ones the settings allow).
        sizes = self._sizes if self._sizes != (1,) else clip_batch_sizes(self)
        shapes = tuple({self._input: self._shape(size)} for size in sizes) if self._pre else ()
        return SessionOptions(shapes=shapes, label=self.spec.label)

    def min_image_side(self) -> int | None:
        return decode_min_side(self._pre.size) if self._pre else None

    def _predict(self, session: Session, request: ModelRequest, stages: Stages) -> str:
        image = request.pixels()
        pre = self._pre
        runner = self._runner
        assert pre is not None and runner is not None

        def resize(buffer: Any, source: Any) -> None:
            resize_normalize_into(
                source, pixel_buffer(buffer), 0, size=(pre.size, pre.size), mode=pre.mode,
                resample=pre.resample, mean=pre.mean, std=pre.std,
            )

        if self._batcher is not None:
            with stages("preprocess"):
                row = np.empty(self._shape(1), dtype=np.uint8 if self._fused else np.float32)
                resize(row, image)
            with stages("inference"):
                (vector,) = self._batcher.submit([row[0]])
        else:
            preprocess = 0.0

            def fill(buffers: Any, items: Any, batch: int) -> None:
                nonlocal preprocess
                started = time.perf_counter()
                resize(buffers[self._input], items[0])
                if batch > 1:
                    buffers[self._input][1:] = 0
                preprocess += time.perf_counter() - started

            started = time.perf_counter()
            (vector,) = runner.rows(session, [image], fill)
            stages.add("preprocess", preprocess)
            stages.add("inference", time.perf_counter() - started - preprocess)
        with stages("postprocess"):
            vector = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)
        with stages("serialize"):
            return serialize_embedding(vector)
