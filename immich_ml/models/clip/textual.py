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
import threading
from collections import OrderedDict
from dataclasses import replace
from typing import Any

import numpy as np

from immich_ml.backends.base import ModelArtifacts, Session, SessionOptions, Target, TensorSpec
from immich_ml.config import Settings
from immich_ml.errors import InvalidInput, ModelLoadError
from immich_ml.models.base import InferenceModel, ModelRequest
from immich_ml.models.batching import static_batch
from immich_ml.models.cache import ModelFiles
from immich_ml.models.clip.visual import clip_batch_sizes
from immich_ml.models.cache import ModelFiles, ModelStore
from immich_ml.models.catalog import ModelSpec
from immich_ml.models.clip import text_length
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
    # Set when the session runs the variable-length graph (see text_length): queries then run on
    # their own length rounded up to a bucket instead of the full context.
    _variable_length = False

    def required_files(self) -> tuple[str, ...]:
        return ("config.json", "textual/tokenizer.json", "textual/tokenizer_config.json")

    def _prepare(self, files: ModelFiles) -> None:
        model_cfg: dict[str, Any] = json.loads(files.path("config.json").read_text(encoding="utf-8"))
        config = TextConfig.from_model_config(model_cfg, self.spec.name)
        self._tokenizer = ClipTokenizer(
            files.path("textual/tokenizer.json"), files.path("textual/tokenizer_config.json"), config
        )

    def __init__(self, spec: ModelSpec, store: ModelStore, settings: Settings, target: Target) -> None:
        super().__init__(spec, store, settings, target)
        self._recent = RecentEmbeddings(self.settings.text_cache_size)

    def _load_artifacts(self, files: ModelFiles) -> ModelArtifacts:
        """The variable-length graph on the CPU when the model qualifies (:mod:`.text_length`)."""
        artifacts = files.artifacts()
        self._variable_length = False
        if not self._wants_variable_length():
            return artifacts
        tokenizer = self._tokenizer
        assert tokenizer is not None
        path, reason = text_length.variable_length_graph(
            artifacts.onnx, self.input_names[0], np.int32, lambda text: tokenizer.encode(text)[0],
            tokenizer.context_length,
        )
        if path is None:
            log.info("%s runs every query at %d tokens: %s", self.spec.label, tokenizer.context_length, reason)
            return artifacts
        self._variable_length = True
        return replace(artifacts, onnx=path)

    def _wants_variable_length(self) -> bool:
        # ORT on the CPU only: compiling providers (OpenVINO, MIGraphX, bridges) build per shape.
        return self.settings.text_variable_length and self.target.kind == "cpu" and self.input_names == ("text",)

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
            if self._variable_length and not isinstance(dim, int):
                continue
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
        self._recent.clear()
        self._tokenizer = None
        self._inputs = ()
        self._sizes = (1,)
        self._variable_length = False

    def session_options(self) -> SessionOptions:
        context = self._tokenizer.context_length if self._tokenizer else 0
        shapes: tuple[dict[str, tuple[int, ...]], ...]
        if self._variable_length:
            # Queries run on their own length (rounded up to a bucket), one at a time.
            lengths = text_length.buckets(context)
            shapes = tuple({name: (1, n) for name in self.input_names} for n in lengths) if context else ()
        else:
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
        key = (text, language)
        cached = self._recent.get(key)
        if cached is not None:
            return cached
        runner = self._runner
        assert runner is not None
        with stages("preprocess"):
            ids, mask = tokenizer.encode(text, language)
            length = tokenizer.context_length
            if self._variable_length and self._batcher is None:
                # Up to the first end-of-text token (the highest id, where the graph reads).
                length = text_length.bucket_length(int(np.argmax(ids)) + 1, length)
            row = self._row(ids[:length], mask[:length])
        if self._batcher is not None or not self._variable_length:
            # Full-context rows: batched across requests (MACHINE_LEARNING_BATCH_WAIT_MS) or run
            # alone through the runner (which also recovers from accelerator OOM).
            started = time.perf_counter()
            if self._batcher is not None:
                (vector,) = self._batcher.submit([row])
            else:
                (vector,) = runner.rows(session, [row], self._fill_batch)
            stages.add("inference", time.perf_counter() - started)
        else:
            with session.bind({spec.name: (1, length) for spec in self._inputs}) as call:
                with stages("preprocess"):
                    self._fill_batch(call.inputs, [row], 1)
                with stages("inference"):
                    outputs = call.run()
                vector = outputs[self._output_index]
        with stages("postprocess"):
            vector = np.array(vector, dtype=np.float32).reshape(-1)
        with stages("serialize"):
            answer = serialize_embedding(vector)
        self._recent.put(key, answer)
        return answer

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


class RecentEmbeddings:
    """The answers to the last ``size`` distinct queries of one text model (LRU; thread-safe).

    The same text and options always give the same vector, and people repeat searches (paging,
    going back, the same name typed again): a hit costs a dictionary lookup instead of a run.
    ``size`` 0 disables it. Cleared when the model unloads.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[tuple[str, str | None], str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str | None]) -> str | None:
        if not self._size:
            return None
        with self._lock:
            answer = self._entries.get(key)
            if answer is not None:
                self._entries.move_to_end(key)
            return answer

    def put(self, key: tuple[str, str | None], answer: str) -> None:
        if not self._size:
            return
        with self._lock:
            self._entries[key] = answer
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class MClipTextual(OpenClipTextual):
    """M-CLIP (multilingual) text tower: ``input_ids`` + ``attention_mask`` → ``embedding``."""

    input_names = ("input_ids", "attention_mask")

    def _row(self, ids: np.ndarray[Any, Any], mask: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], ...]:
        return (ids, mask)
