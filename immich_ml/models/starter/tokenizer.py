"""OpenAI CLIP's byte-level BPE tokenizer as a Hugging Face ``tokenizers`` file, built from the real vocabulary.

The vocabulary is ``open_clip/bpe_simple_vocab_16e6.txt.gz`` from the ``open-clip-torch==3.3.0``
wheel (MIT, the file OpenAI released with CLIP). Its first line is a header; the next 48 894 lines
are the merges CLIP uses (49 152 - 256 - 2). The id layout is CLIP's:

* 0..255: the 256 byte symbols, 256..511: the same symbols with the end-of-word suffix ``</w>``,
* 512..49 405: one token per merge, in merge order,
* 49 406 ``<|startoftext|>``, 49 407 ``<|endoftext|>`` (49 408 tokens).

Text handling follows CLIP's Hugging Face tokenizer, which is OpenAI's minus ftfy and HTML
unescaping: NFC, runs of whitespace to one space, lower case; then CLIP's split pattern, the
byte-to-symbol mapping, BPE with ``</w>`` on the last symbol of each word, and
``<|startoftext|> ... <|endoftext|>`` around the ids. Truncation keeps 75 text tokens so the end
token always stays last, as open_clip does; padding uses ``<|endoftext|>`` like Immich's exported
tokenizers (the text tower reads features at the first end token, so pad ids never matter).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from immich_ml.models.starter.fetch import OPEN_CLIP_WHEEL, Member

BPE_VOCAB = Member(
    OPEN_CLIP_WHEEL,
    "open_clip/bpe_simple_vocab_16e6.txt.gz",
    "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a",
)
SOT_TOKEN = "<|startoftext|>"
EOT_TOKEN = "<|endoftext|>"
VOCAB_SIZE = 49408
SOT_ID = VOCAB_SIZE - 2
EOT_ID = VOCAB_SIZE - 1
CONTEXT_LENGTH = 77
MERGE_COUNT = VOCAB_SIZE - 2 * 256 - 2
END_OF_WORD = "</w>"
# CLIP's pre-tokenizer pattern: English contractions, letter runs, single digits, symbol runs.
SPLIT_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""

TOKENIZER_CONFIG = {
    "add_prefix_space": False,
    "bos_token": SOT_TOKEN,
    "clean_up_tokenization_spaces": False,
    "do_lower_case": True,
    "eos_token": EOT_TOKEN,
    "errors": "replace",
    "model_max_length": CONTEXT_LENGTH,
    "pad_token": EOT_TOKEN,
    "tokenizer_class": "CLIPTokenizer",
    "unk_token": EOT_TOKEN,
}
SPECIAL_TOKENS_MAP = {"bos_token": SOT_TOKEN, "eos_token": EOT_TOKEN, "pad_token": EOT_TOKEN, "unk_token": EOT_TOKEN}


def byte_symbols() -> list[str]:
    """The 256 printable symbols standing for bytes, in CLIP's vocabulary order (index = token id).

    Bytes that are printable and not whitespace (``!``..``~``, ``¡``..``¬``, ``®``..``ÿ``) stand for
    themselves and come first; every other byte, in increasing order, gets ``chr(256 + n)``.
    Returns a list whose entry ``i`` is the symbol with token id ``i``.
    """
    keep = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    kept = set(keep)
    rest = [b for b in range(256) if b not in kept]
    return [chr(b) for b in keep] + [chr(256 + n) for n in range(len(rest))]


def read_merges(vocab_gz: bytes) -> list[tuple[str, str]]:
    """The first :data:`MERGE_COUNT` merges (rank order) of the gzipped CLIP BPE file's bytes."""
    lines = gzip.decompress(vocab_gz).decode("utf-8").split("\n")
    merges: list[tuple[str, str]] = []
    for line in lines[1 : 1 + MERGE_COUNT]:
        left, right = line.split()
        merges.append((left, right))
    if len(merges) != MERGE_COUNT:
        raise ValueError(f"the BPE file has {len(merges)} merges, CLIP needs {MERGE_COUNT}")
    return merges


def build_vocab(merges: list[tuple[str, str]]) -> dict[str, int]:
    """Token -> id in CLIP's layout (see the module docstring)."""
    symbols = byte_symbols()
    tokens = [*symbols, *(s + END_OF_WORD for s in symbols), *(a + b for a, b in merges), SOT_TOKEN, EOT_TOKEN]
    vocab = {token: i for i, token in enumerate(tokens)}
    if len(vocab) != VOCAB_SIZE:
        raise ValueError(f"CLIP vocabulary has {len(vocab)} distinct tokens, expected {VOCAB_SIZE}")
    return vocab


def build_tokenizer(vocab_gz: bytes, context_length: int = CONTEXT_LENGTH) -> Tokenizer:
    """A ready ``tokenizers.Tokenizer``: CLIP BPE, SOT/EOT added, truncated and padded to ``context_length``."""
    merges = read_merges(vocab_gz)
    bpe = models.BPE(
        vocab=build_vocab(merges),
        merges=merges,
        dropout=None,
        continuing_subword_prefix="",
        end_of_word_suffix=END_OF_WORD,
        fuse_unk=False,
        unk_token=EOT_TOKEN,
    )
    tokenizer = Tokenizer(bpe)
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    # The split already isolates words, so the byte-level step only maps bytes to symbols.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.Sequence(
        [decoders.ByteLevel(), decoders.Replace(END_OF_WORD, " ")]
    )
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{SOT_TOKEN} $A {EOT_TOKEN}",
        pair=f"{SOT_TOKEN} $A {EOT_TOKEN} $B:1 {EOT_TOKEN}:1",
        special_tokens=[(SOT_TOKEN, SOT_ID), (EOT_TOKEN, EOT_ID)],
    )
    tokenizer.add_special_tokens([AddedToken(t, normalized=True, special=True) for t in (SOT_TOKEN, EOT_TOKEN)])
    tokenizer.enable_truncation(max_length=context_length)
    tokenizer.enable_padding(length=context_length, pad_id=EOT_ID, pad_token=EOT_TOKEN)
    return tokenizer


def write_tokenizer_files(vocab_gz: bytes, folder: Path, context_length: int = CONTEXT_LENGTH) -> None:
    """Write ``tokenizer.json``, ``tokenizer_config.json`` and ``special_tokens_map.json`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(vocab_gz, context_length)
    (folder / "tokenizer.json").write_text(tokenizer.to_str(pretty=False), encoding="utf-8")
    config = {**TOKENIZER_CONFIG, "model_max_length": context_length}
    for name, content in (("tokenizer_config.json", config), ("special_tokens_map.json", SPECIAL_TOKENS_MAP)):
        (folder / name).write_text(json.dumps(content, indent=2, sort_keys=True) + "\n", encoding="utf-8")
