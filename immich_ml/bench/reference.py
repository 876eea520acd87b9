"""Reference pipelines built the way immich-machine-learning does the same work, for speed ratios.

Written for this benchmark from the documented behaviour of Immich's service (contract §4.3–4.6,
§5.1), not copied: plain ``onnxruntime.InferenceSession`` objects on the CPU with Immich's settings
(inter-op 1, intra-op 2 threads, sequential execution, CPU arena off with ``kSameAsRequested``),
fed by Pillow/OpenCV/numpy preprocessing, on the *same* model files the service loads.

* CLIP visual: Pillow decode (open, load, convert RGB), bicubic short-side resize, centre crop,
  numpy ``/255``, ``(x - mean) / std``, HWC→CHW.
* CLIP textual: the model's HF tokenizer with padding and truncation to the context length.
* Faces (:mod:`immich_ml.bench.reference_faces`): OpenCV decode, insightface-style SCRFD.

Each reference's ``__call__`` returns the same JSON-ready body shape as ``Pipeline.predict`` and
adds seconds per stage (decode, preprocess, inference, postprocess, serialize) to ``timings``.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import orjson


class Reference(Protocol):
    """A reference pipeline: payload (image bytes or text) in, response body out."""

    def __call__(self, payload: bytes | str, timings: dict[str, float] | None = None) -> dict[str, Any]: ...


def immich_cpu_session(path: Path) -> Any:
    """``onnxruntime.InferenceSession`` on ``path`` with immich-machine-learning's CPU settings."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.enable_cpu_mem_arena = False  # MACHINE_LEARNING_MODEL_ARENA=false in Immich's images
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = 2
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(
        str(path),
        sess_options=options,
        providers=[("CPUExecutionProvider", {"arena_extend_strategy": "kSameAsRequested"})],
    )


@contextmanager
def stage(timings: dict[str, float] | None, name: str) -> Iterator[None]:
    """Add the seconds spent in the ``with`` block to ``timings[name]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        if timings is not None:
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - start


def serialize(vector: npt.NDArray[np.float32]) -> str:
    """Immich's ``serialize_np_array``: orjson with numpy support, as a string."""
    return orjson.dumps(vector, option=orjson.OPT_SERIALIZE_NUMPY).decode()


class ReferenceClipVisual:
    """Immich's OpenCLIP visual encoder path. ``model_dir`` is ``<cache>/clip/<name>/visual``."""

    def __init__(self, model_dir: Path) -> None:
        cfg = json.loads((model_dir / "preprocess_cfg.json").read_text(encoding="utf-8"))
        size = cfg["size"]
        self.size = int(size[0] if isinstance(size, list) else size)
        self.mean = np.array(cfg["mean"], dtype=np.float32)
        self.std = np.array(cfg["std"], dtype=np.float32)
        self.session = immich_cpu_session(model_dir / "model.onnx")
        self.input_name = self.session.get_inputs()[0].name

    def preprocess(self, data: bytes, timings: dict[str, float] | None = None) -> npt.NDArray[np.float32]:
        """Decode and preprocess: float32 (1, 3, S, S) NCHW, normalised."""
        from PIL import Image

        with stage(timings, "decode"):
            opened = Image.open(io.BytesIO(data))
            opened.load()
            image: Image.Image = opened.convert("RGB")
        with stage(timings, "preprocess"):
            s = self.size
            width, height = image.size
            # Short side to S, the other side truncated, as Immich's resize_pil; always bicubic.
            new_size = (s, int(height / width * s)) if width < height else (int(width / height * s), s)
            image = image.resize(new_size, Image.Resampling.BICUBIC)
            left, top = int(image.width / 2 - s / 2), int(image.height / 2 - s / 2)
            image = image.crop((left, top, left + s, top + s))
            pixels = np.asarray(image, dtype=np.float32) / 255.0
            normalized = (pixels - self.mean) / self.std
            batch: npt.NDArray[np.float32] = np.expand_dims(normalized.transpose(2, 0, 1), 0)
        return batch

    def __call__(self, payload: bytes | str, timings: dict[str, float] | None = None) -> dict[str, Any]:
        assert isinstance(payload, bytes)
        batch = self.preprocess(payload, timings)
        with stage(timings, "inference"):
            outputs = self.session.run(None, {self.input_name: batch})
        with stage(timings, "postprocess"):
            vector = outputs[0][0]
        with stage(timings, "serialize"):
            text = serialize(vector)
        return {"clip": text}


class ReferenceClipTextual:
    """Immich's OpenCLIP textual encoder path. ``model_dir`` is ``<cache>/clip/<name>/textual``."""

    def __init__(self, model_dir: Path) -> None:
        from tokenizers import Tokenizer

        config_path = model_dir.parent / "config.json"
        config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
        context = int(config.get("text_cfg", {}).get("context_length", 77))
        tokenizer_cfg = json.loads((model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
        pad = tokenizer_cfg["pad_token"]
        pad = pad["content"] if isinstance(pad, dict) else pad
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        pad_id = self.tokenizer.token_to_id(pad)
        self.tokenizer.enable_padding(length=context, pad_token=pad, pad_id=pad_id)
        self.tokenizer.enable_truncation(max_length=context)
        self.session = immich_cpu_session(model_dir / "model.onnx")
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, payload: bytes | str, timings: dict[str, float] | None = None) -> dict[str, Any]:
        assert isinstance(payload, str)
        with stage(timings, "preprocess"):
            ids = self.tokenizer.encode(" ".join(payload.split())).ids
            tokens = np.array([ids], dtype=np.int32)
        with stage(timings, "inference"):
            outputs = self.session.run(None, {self.input_name: tokens})
        with stage(timings, "postprocess"):
            vector = outputs[0][0]
        with stage(timings, "serialize"):
            text = serialize(vector)
        return {"clip": text}
