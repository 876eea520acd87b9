"""Text → token ids for CLIP text towers, as Immich prepares them.

The Hugging Face ``tokenizer.json`` of the model does the real work (BPE for OpenCLIP, SentencePiece
for XLM-R/NLLB); this module adds what Immich adds around it: whitespace collapse, SigLIP's
``canonicalize`` cleaning, the NLLB FLORES-200 language prefix, and padding/truncation to the context
length with the pad token named in ``tokenizer_config.json``.
"""

from __future__ import annotations

import json
import logging
import string
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from immich_ml.errors import ModelLoadError
from immich_ml.models.constants import DEFAULT_FLORES200, flores_code

log = logging.getLogger(__name__)

_PUNCTUATION = str.maketrans("", "", string.punctuation)
DEFAULT_CONTEXT_LENGTH = 77


def clean_text(text: str, *, canonicalize: bool = False) -> str:
    """Collapse runs of whitespace to one space and trim; ``canonicalize`` also drops ASCII punctuation
    and lower-cases (SigLIP's text cleaning)."""
    text = " ".join(text.split())
    if canonicalize:
        text = text.translate(_PUNCTUATION).lower()
    return text


def language_prefix(language: str | None) -> str:
    """FLORES-200 prefix for an NLLB model; unknown languages fall back to English with a warning."""
    if language is None:
        return ""
    code = flores_code(language)
    if code is None:
        log.warning("Language '%s' not found, defaulting to 'en'", language)
        code = DEFAULT_FLORES200
    return code


@dataclass(frozen=True)
class TextConfig:
    """What the tokenizer needs from ``config.json`` (``text_cfg``) and the model name."""

    context_length: int = DEFAULT_CONTEXT_LENGTH
    canonicalize: bool = False
    nllb: bool = False

    @staticmethod
    def from_model_config(model_cfg: dict[str, Any], model_name: str) -> TextConfig:
        text_cfg = model_cfg["text_cfg"]
        context_length = int(text_cfg.get("context_length", DEFAULT_CONTEXT_LENGTH))
        kwargs = text_cfg.get("tokenizer_kwargs") or {}
        return TextConfig(
            context_length=context_length,
            canonicalize=isinstance(kwargs, dict) and kwargs.get("clean") == "canonicalize",
            nllb=model_name.startswith("nllb"),
        )


# Parsed tokenizers of recently loaded models, so that a model reloaded after a TTL unload skips
# parsing its tokenizer.json again (~0.2 s of the ~0.6 s a ViT-B-32 text tower takes to load;
# a few MB each). Keyed by file identity and the padding it is configured with.
_RECENT_TOKENIZERS: OrderedDict[tuple[str, int, int, str, int], Any] = OrderedDict()
_RECENT_LIMIT = 4
_RECENT_LOCK = threading.Lock()


def _load_tokenizer(path: Path, pad_token: str, context_length: int) -> Any:
    from tokenizers import Tokenizer

    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, pad_token, context_length)
    with _RECENT_LOCK:
        cached = _RECENT_TOKENIZERS.get(key)
        if cached is not None:
            _RECENT_TOKENIZERS.move_to_end(key)
            return cached
    tokenizer = Tokenizer.from_file(str(path))
    pad_id = tokenizer.token_to_id(pad_token)
    if pad_id is None or context_length < 1:
        return tokenizer  # the caller says what is wrong; nothing to cache
    # Configured before anyone else can see it: a shared instance is never mutated again.
    tokenizer.enable_padding(length=context_length, pad_token=pad_token, pad_id=pad_id)
    tokenizer.enable_truncation(max_length=context_length)
    with _RECENT_LOCK:
        tokenizer = _RECENT_TOKENIZERS.setdefault(key, tokenizer)
        while len(_RECENT_TOKENIZERS) > _RECENT_LIMIT:
            _RECENT_TOKENIZERS.popitem(last=False)
    return tokenizer


class ClipTokenizer:
    """Encodes one string to ``(ids, attention_mask)``, each int64 ``(context_length,)``. Thread-safe."""

    def __init__(self, tokenizer_file: Path, tokenizer_config_file: Path, config: TextConfig) -> None:
        tokenizer_cfg = json.loads(tokenizer_config_file.read_text(encoding="utf-8"))
        pad_token = tokenizer_cfg["pad_token"]
        if isinstance(pad_token, dict):  # newer HF configs store AddedToken objects
            pad_token = pad_token["content"]
        tokenizer = _load_tokenizer(tokenizer_file, pad_token, config.context_length)
        pad_id = tokenizer.token_to_id(pad_token)
        if pad_id is None:
            raise ModelLoadError(
                f"Pad token {pad_token!r} from {tokenizer_config_file} is not in the vocabulary of "
                f"{tokenizer_file}."
            )
        if config.context_length < 1:
            raise ModelLoadError(f"Invalid text context length {config.context_length}.")
        self._tokenizer = tokenizer
        self.config = config
        self.pad_id: int = pad_id

    @property
    def context_length(self) -> int:
        return self.config.context_length

    def prepare(self, text: str, language: str | None = None) -> str:
        """The exact string handed to the tokenizer."""
        text = clean_text(text, canonicalize=self.config.canonicalize)
        if self.config.nllb:
            text = language_prefix(language) + text
        return text

    def encode(
        self, text: str, language: str | None = None
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        encoding = self._tokenizer.encode(self.prepare(text, language))
        ids = np.asarray(encoding.ids, dtype=np.int64)
        mask = np.asarray(encoding.attention_mask, dtype=np.int64)
        return ids, mask
