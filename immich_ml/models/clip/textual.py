"""CLIP text encoders: OpenCLIP (input ``text``) and M-CLIP (``input_ids`` + ``attention_mask``).

Files: ``<name>/config.json`` (``text_cfg``), ``textual/tokenizer.json``,
``textual/tokenizer_config.json`` (``pad_token``), ``textual/model.onnx``. Output: ``embedding``
float32 ``[1, D]``, already L2-normalised by the graph, returned as Immich's JSON-array string.
Cross-request batching is off by default for text (search is interactive; see
:data:`~immich_ml.models.batching.UNBATCHED_BY_DEFAULT`); ``MACHINE_LEARNING_BATCH_WAIT_MS`` turns it on.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

import numpy as np

from immich_ml.backends.base import Session, SessionOptions, TensorSpec
from immich_ml.errors import InvalidInput, ModelLoadError
from immich_ml.models.base import InferenceModel, ModelRequest
from immich_ml.models.batching import static_batch
from immich_ml.models.cache import ModelFiles
from immich_ml.models.clip.visual import clip_batch_sizes
from immich_ml.models.clip.tokenizer import ClipTokenizer, TextConfig
from immich_ml.models.timing import Stages
from immich_ml.ops.embed import serialize_embedding
from immich_ml.schemas import ModelTask, ModelType

log = logging.getLogger(__name__)


class OpenClipTextual(InferenceModel):
    """OpenCLIP text tower: ``text`` int32 ``[1, context_length]`` → ``embedding`` ``[1, D]``."""

    task = ModelTask.SEARCH
    type = ModelType.TEXTUAL
    input_names: tuple[str, ...] = ("text",)

    _tokenizer: ClipTokenizer | None = None
    _inputs: tuple[TensorSpec, ...] = ()
    _output_index = 0
    _sizes: tuple[int, ...] = (1,)

    def required_files(self) -> tuple[str, ...]:
        return ("config.json", "textual/tokenizer.json", "textual/tokenizer_config.json")

    def _prepare(self, files: ModelFiles) -> None:
        model_cfg: dict[str, Any] = json.loads(files.path("config.json").read_text(encoding="utf-8"))
        config = TextConfig.from_model_config(model_cfg, self.spec.name)
        self._tokenizer = ClipTokenizer(
            files.path("textual/tokenizer.json"), files.path("textual/tokenizer_config.json"), config
        )

    def _configure(self, session: Session) -> None:
        by_name = {spec.name: spec for spec in session.inputs}
        missing = [name for name in self.input_names if name not in by_name]
        if missing:
            found = ", ".join(by_name) or "none"
            raise ModelLoadError(
                f"Model '{self.spec.name}' is not a {type(self).__name__} text encoder: it lacks input(s) "
                f"{', '.join(missing)} (found {found})."
            )
        self._inputs = tuple(by_name[name] for name in self.input_names)
        assert self._tokenizer is not None
        context = self._tokenizer.context_length
        for spec in self._inputs:
            dim = spec.shape[-1] if spec.shape else None
            if isinstance(dim, int) and dim > 0 and dim != context:
                raise ModelLoadError(
                    f"Model '{self.spec.name}': input {spec.name} takes {dim} tokens but config.json says "
                    f"context_length {context}."
                )
        names = [o.name for o in session.outputs]
        self._output_index = names.index("embedding") if "embedding" in names else 0
        fixed = static_batch(self._inputs[0].shape[0] if self._inputs[0].shape else None)
        self._sizes = (fixed,) if fixed is not None else clip_batch_sizes(self)

    def _batching(self, session: Session) -> None:
        self._make_batching(session, self._shapes, self._sizes, output_index=self._output_index, batched=True)

    def _shapes(self, batch: int) -> dict[str, tuple[int, ...]]:
        context = self._tokenizer.context_length if self._tokenizer else 0
        return {name: (batch, context) for name in self.input_names}

    def warmup_shapes(self) -> tuple[dict[str, tuple[int, ...]], ...]:
        return tuple(self._shapes(size) for size in self._sizes)

    def _reset(self) -> None:
        self._tokenizer = None
        self._inputs = ()
        self._sizes = (1,)

    def session_options(self) -> SessionOptions:
        sizes = self._sizes if self._sizes != (1,) else clip_batch_sizes(self)
        shapes = tuple(self._shapes(size) for size in sizes) if self._tokenizer else ()
        return SessionOptions(shapes=shapes, label=self.spec.label, intra_op_threads=self._search_threads())

    def _search_threads(self) -> int:
        """Search is interactive (one query, a person waiting): up to 4 intra-op threads per run
        unless MODEL_INTRA_OP_THREADS is set, where image models share the cores among concurrent
        requests (0 = backend default). On the 2-core VM: 50 instead of 65 ms per query."""
        if self.settings.model_intra_op_threads:
            return 0
        return min(4, os.cpu_count() or 1)

    def _predict(self, session: Session, request: ModelRequest, stages: Stages) -> str:
        text = request.prompt()
        tokenizer = self._tokenizer
        assert tokenizer is not None
        language = request.options.get("language")
        if language is not None and not isinstance(language, str):
            raise InvalidInput("Option 'language' must be a string such as 'de' or 'zh-CN'.")
        runner = self._runner
        assert runner is not None
        with stages("preprocess"):
            ids, mask = tokenizer.encode(text, language)
            row = self._row(ids, mask)
        started = time.perf_counter()
        if self._batcher is not None:
            (vector,) = self._batcher.submit([row])
        else:
            (vector,) = runner.rows(session, [row], self._fill_batch)
        stages.add("inference", time.perf_counter() - started)
        with stages("postprocess"):
            vector = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)
        with stages("serialize"):
            return serialize_embedding(vector)

    def _row(self, ids: np.ndarray[Any, Any], mask: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], ...]:
        """One request's values for each of :attr:`input_names`."""
        return (ids,)

    def _fill_batch(self, buffers: Any, items: Any, batch: int) -> None:
        for position, name in enumerate(self.input_names):
            buffer = buffers[name]
            for i, row in enumerate(items):
                buffer[i] = row[position]
            if len(items) < batch:
                buffer[len(items) :] = 0


class MClipTextual(OpenClipTextual):
    """M-CLIP (multilingual) text tower: ``input_ids`` + ``attention_mask`` → ``embedding``."""

    input_names = ("input_ids", "attention_mask")

    def _row(self, ids: np.ndarray[Any, Any], mask: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], ...]:
        return (ids, mask)
