"""The generated tokenizer.json against an independent plain-Python CLIP tokenizer.

The reference re-implements OpenAI's SimpleTokenizer algorithm from its description: clean
(NFC, whitespace runs to one space, lower case), split with CLIP's pattern, map UTF-8 bytes to
symbols, then greedy lowest-rank BPE with ``</w>`` on the last symbol. Loading the wheel's own
``open_clip/tokenizer.py`` is not possible here: it imports torch, ftfy and regex at module level
(and ``open_clip/__init__`` pulls in torchvision). Two deliberate differences from OpenAI's original
are those of CLIP's Hugging Face tokenizer, which Immich uses: no ftfy/HTML unescaping, and
lower-casing character by character (Greek final sigma stays ``σ``).
"""

from __future__ import annotations

import gzip
import json
import random
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from immich_ml.models.starter import tokenizer as tok

SOT, EOT = 49406, 49407
# Unicode White_Space: what \s means to the regex engine inside `tokenizers` (Oniguruma).
WHITESPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")
SPECIALS = ("<|startoftext|>", "<|endoftext|>")


class ReferenceClip:
    """OpenAI CLIP tokenization written out by hand (slow, obvious, independent of `tokenizers`)."""

    def __init__(self, vocab_gz: bytes) -> None:
        lines = gzip.decompress(vocab_gz).decode("utf-8").split("\n")
        merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
        printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
        symbol = {b: chr(b) for b in printable}
        extra = 0
        for b in range(256):
            if b not in symbol:
                symbol[b] = chr(256 + extra)
                extra += 1
        self.byte_symbol = symbol
        ordered = [symbol[b] for b in printable] + [symbol[b] for b in range(256) if b not in printable]
        vocab = ordered + [s + "</w>" for s in ordered] + ["".join(m) for m in merges] + list(SPECIALS)
        self.ids = {t: i for i, t in enumerate(vocab)}
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.cache: dict[str, list[str]] = {}

    @staticmethod
    def clean(text: str) -> str:
        text = unicodedata.normalize("NFC", text)
        out: list[str] = []
        for ch in text:
            if ch in WHITESPACE:
                if not out or out[-1] != " ":
                    out.append(" ")
            else:
                out.append(ch)
        return "".join(ch.lower() for ch in out)

    @staticmethod
    def split(text: str) -> list[str]:
        def kind(ch: str) -> str:
            if ch in WHITESPACE:
                return "space"
            category = unicodedata.category(ch)
            return "letter" if category[0] == "L" else "number" if category[0] == "N" else "symbol"

        pieces: list[str] = []
        i = 0
        while i < len(text):
            k = kind(text[i])
            special = next((s for s in SPECIALS if text.startswith(s, i)), None)
            contraction = next((c for c in CONTRACTIONS if text.startswith(c, i)), None)
            if special or contraction:
                piece = special or contraction
                assert piece is not None
                pieces.append(piece)
                i += len(piece)
            elif k == "space":
                i += 1
            elif k == "number":
                pieces.append(text[i])
                i += 1
            else:
                j = i
                while j < len(text) and kind(text[j]) == k:
                    j += 1
                pieces.append(text[i:j])
                i = j
        return pieces

    def bpe(self, piece: str) -> list[str]:
        if piece in self.cache:
            return self.cache[piece]
        word = list(piece[:-1]) + [piece[-1] + "</w>"]
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged: list[str] = []
            i = 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        self.cache[piece] = word
        return word

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for piece in self.split(self.clean(text)):
            if piece in SPECIALS:
                ids.append(self.ids[piece])
                continue
            symbols = "".join(self.byte_symbol[b] for b in piece.encode("utf-8"))
            ids.extend(self.ids[t] for t in self.bpe(symbols))
        return ids

    def tokenize(self, text: str, context_length: int = 77) -> list[int]:
        """open_clip's layout: SOT + ids + EOT, cut to the context with EOT kept last; EOT padding."""
        ids = [SOT, *self.encode(text), EOT]
        if len(ids) > context_length:
            ids = ids[:context_length]
            ids[-1] = EOT
        return ids + [EOT] * (context_length - len(ids))


HAND_WRITTEN = [
    "",
    " ",
    "a photo of a cat",
    "A Photo Of A CAT",
    "  leading and trailing spaces   ",
    "tabs\tand\nnewlines\r\nmixed \u3000 ideographic space\u00a0nbsp",
    "don't you'll we've they're I'm he'd it's",
    "DON'T SHOUT IT'S LOUD",
    "rock'n'roll 'quoted' ''double'' '''",
    "o'clock ma'am y'all 'tis",
    "numbers 1234567890 3.14159 -42 1,000,000 2nd 3rd",
    "½ ¾ ² ³ ① Ⅻ ٣ ४",
    "punctuation!!! ??? ... --- ;;; ::: ((())) [[]] {{}} <<>> @#$%^&*",
    "emails: someone@example.com, urls: https://immich.app/docs?x=1&y=2",
    "café naïve résumé coöperate jalapeño façade",
    "cafe\u0301 nai\u0308ve (decomposed accents → NFC)",
    "Ünïcödé ÉCOLE ÀÉÎÕÜ ßtraße İstanbul",
    "ΣΟΦΟΣ σοφός Ελληνικά",
    "Русский текст, привет мир!",
    "東京タワー 富士山 北京 서울 대한민국",
    "漢字かなカナ混じりの文章です。",
    "مرحبا بالعالم",
    "שלום עולם",
    "नमस्ते दुनिया",
    "ภาษาไทย",
    "emoji 🐈 🐕‍🦺 👩‍👩‍👧 🇩🇪 👍🏽 ❤️ 😀😃😄",
    "zero\u200bwidth\u200djoiner\ufeffbom",
    "control \x00 \x01 \x1c \x1f \x7f chars",
    "a<|endoftext|>b",
    "start <|startoftext|> end <|endoftext|> done",
    "<|ENDOFTEXT|> in capitals",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "a" * 200,
    "word " * 100,
    "🐈" * 60,
    "東京" * 80,
    "1 2 3 " * 40,
    "mixed123letters456and789digits",
    "under_score snake_case kebab-case CamelCase",
    "x" * 75,
    " ".join(["photo"] * 75),
    " ".join(["photo"] * 76),
    "a dog running on the beach at sunset, golden hour, 35mm film",
]


def _random_corpus(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    alphabet = (
        list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        + list(" .,;:!?'\"()[]{}-_/\\@#$%^&*+=<>|~`")
        + list("     \t\n")
        + list("éèêëàâäîïôöùûüçñßÆØÅæøåŒœ")
        + list("αβγδεζηθΣΩπσςжшщэюя")
        + list("日本語中文字東京猫犬写真海")
        + list("한국어가나다")
        + ["🐈", "🐕", "📷", "🌅", "👍🏽", "❤️", "\u0301", "\u0308", "\u200d", "\u00a0", "\u3000", "\u2028"]
        + list("٠١٢३४½²")
        + ["'s", "'t", "'re", "'ll", "'d", "'m", "'ve"]
    )
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 120))) for _ in range(count)]


CORPUS = HAND_WRITTEN + _random_corpus(400)


@pytest.fixture(scope="module")
def reference(vocab_gz: bytes) -> ReferenceClip:
    return ReferenceClip(vocab_gz)


@pytest.fixture(scope="module")
def generated(vocab_gz: bytes) -> Tokenizer:
    return tok.build_tokenizer(vocab_gz)


def test_known_clip_ids(generated: Tokenizer) -> None:
    # The published CLIP ids of "a photo of a cat", an anchor outside both implementations.
    assert generated.encode("a photo of a cat").ids[:7] == [SOT, 320, 1125, 539, 320, 2368, EOT]


def test_vocabulary_layout(generated: Tokenizer, reference: ReferenceClip) -> None:
    vocab = generated.get_vocab()
    assert len(vocab) == 49408
    assert vocab == reference.ids
    assert generated.token_to_id("<|startoftext|>") == SOT
    assert generated.token_to_id("<|endoftext|>") == EOT
    assert generated.token_to_id("!") == 0 and generated.token_to_id("!</w>") == 256


@pytest.mark.parametrize("start", range(0, len(CORPUS), 50))
def test_ids_match_reference(generated: Tokenizer, reference: ReferenceClip, start: int) -> None:
    texts = CORPUS[start : start + 50]
    ours = [e.ids for e in generated.encode_batch(texts)]
    expected = [reference.tokenize(t) for t in texts]
    for text, got, want in zip(texts, ours, expected, strict=True):
        assert got == want, f"tokenization differs for {text!r}"


def test_truncation_keeps_end_token_last(generated: Tokenizer, reference: ReferenceClip) -> None:
    text = " ".join(["photo"] * 200)
    ids = generated.encode(text).ids
    assert len(ids) == 77 and ids[0] == SOT and ids[-1] == EOT
    assert ids[1:76] == reference.encode(text)[:75]


def test_padding_and_empty_string(generated: Tokenizer) -> None:
    ids = generated.encode("").ids
    assert ids == [SOT] + [EOT] * 76
    short = generated.encode("cat").ids
    assert short[:3] == [SOT, 2368, EOT] and set(short[3:]) == {EOT}


def test_files_load_the_way_immich_loads_them(tmp_path: Path, vocab_gz: bytes, reference: ReferenceClip) -> None:
    tok.write_tokenizer_files(vocab_gz, tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    special = json.loads((tmp_path / "special_tokens_map.json").read_text())
    assert config["pad_token"] == "<|endoftext|>" == special["pad_token"]
    assert config["bos_token"] == "<|startoftext|>" and config["model_max_length"] == 77
    loaded = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    pad_id = loaded.token_to_id(config["pad_token"])
    loaded.enable_padding(length=77, pad_token=config["pad_token"], pad_id=pad_id)
    loaded.enable_truncation(max_length=77)
    for text in CORPUS[::20]:
        ids = np.asarray([loaded.encode(" ".join(text.split())).ids], dtype=np.int32)
        assert ids.shape == (1, 77)
        assert ids[0].tolist() == reference.tokenize(" ".join(text.split()))


def test_decode_round_trip(generated: Tokenizer) -> None:
    ids = generated.encode("A photo of Chelsea, the café cat 🐈").ids
    assert generated.decode(ids).strip() == "a photo of chelsea , the café cat 🐈"
