"""CLIP text encoders on tiny graphs: exact token ids fed for OpenCLIP, M-CLIP, NLLB and SigLIP."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from model_testing import RecordingSession
from graphs import ClipRepo, clip_repo, clip_textual_reference, write_repo
from tokenizers import Tokenizer

from immich_ml.backends.base import Target
from immich_ml.config import Settings
from immich_ml.errors import InvalidInput, ModelLoadError
from immich_ml.models.base import ModelRequest
from immich_ml.models.cache import ModelStore
from immich_ml.models.catalog import resolve
from immich_ml.models.clip.tokenizer import clean_text, language_prefix
from immich_ml.models.manager import ModelManager
from immich_ml.models.timing import Stages
from immich_ml.schemas import ModelTask, ModelType

WORDS = ("a", "photo", "of", "dog", "cat", "forest", "the", "hund", "wald", "deu_latnein", "eng_latna")


def text_model(settings: Settings, name: str, repo: ClipRepo) -> object:
    spec = resolve(name, ModelTask.SEARCH, ModelType.TEXTUAL)
    store = ModelStore(settings)
    write_repo(store.root(spec), clip_repo(repo))
    return ModelManager(settings, Target(), store).get(spec)


def expected_ids(text: str, repo: ClipRepo, pad_id: int) -> list[int]:
    """``start words… end``, content truncated to fit the context, then padded with ``pad_id``."""
    vocab = json.loads(clip_repo(repo)["textual/tokenizer.json"])["model"]["vocab"]
    words = [vocab.get(w, 0) for w in text.lower().replace(".", " . ").replace(",", " , ").split()]
    ids = [vocab["<|startoftext|>"], *words[: repo.context - 2], vocab["<|endoftext|>"]]
    return ids + [pad_id] * (repo.context - len(ids))


def embed(model: object, text: str, **options: object) -> np.ndarray:
    result = model.predict(ModelRequest(text=text, options=options), Stages())  # type: ignore[attr-defined]
    assert isinstance(result, str)
    return np.array(json.loads(result), dtype=np.float32)


@pytest.mark.parametrize(
    ("raw", "cleaned", "canonical"),
    [
        ("  a   photo\tof\na dog ", "a photo of a dog", "a photo of a dog"),
        ("A Dog, in the Forest!", "A Dog, in the Forest!", "a dog in the forest"),
        ("", "", ""),
        ("\u00a0München\u2003Straße ", "München Straße", "münchen straße"),
    ],
)
def test_clean_text_as_immich(raw: str, cleaned: str, canonical: str) -> None:
    assert clean_text(raw) == cleaned
    assert clean_text(raw, canonicalize=True) == canonical


def test_language_prefix(caplog: pytest.LogCaptureFixture) -> None:
    assert language_prefix(None) == ""
    assert language_prefix("de") == "deu_Latn"
    assert language_prefix("de-CH") == "deu_Latn"
    assert language_prefix("zh-TW") == "zho_Hant"
    assert "not found" not in caplog.text
    assert language_prefix("tlh") == "eng_Latn"
    assert "Language 'tlh' not found, defaulting to 'en'" in caplog.text


def test_openclip_feeds_int32_text_padded_to_the_context(
    settings: Settings, recording: list[RecordingSession]
) -> None:
    repo = ClipRepo(words=WORDS)
    model = text_model(settings, "ViT-B-32__openai", repo)
    vector = embed(model, "  A photo of   the DOG ")
    fed = recording[0].recorded[0]
    assert list(fed) == ["text"] and fed["text"].dtype == np.int32 and fed["text"].shape == (1, 77)
    pad_id = 2  # <|endoftext|>
    want = expected_ids("a photo of the dog", repo, pad_id)
    assert fed["text"][0].tolist() == want
    np.testing.assert_allclose(vector, clip_textual_reference(want), atol=1e-5)
    assert vector.shape == (16,) and abs(float(np.linalg.norm(vector)) - 1) < 1e-5


def test_context_length_and_truncation_from_config(settings: Settings, recording: list[RecordingSession]) -> None:
    repo = ClipRepo(words=WORDS, context=8)
    model = text_model(settings, "ViT-B-32__openai", repo)
    embed(model, "a photo of the dog in the forest of the cat")
    fed = recording[0].recorded[0]["text"][0].tolist()
    assert len(fed) == 8
    assert fed == expected_ids("a photo of the dog in the forest of the cat", repo, 2)
    assert fed[-1] == 2 and fed[0] == 1


def test_mclip_feeds_ids_and_attention_mask(settings: Settings, recording: list[RecordingSession]) -> None:
    repo = ClipRepo(words=WORDS, mclip=True, pad_token="<pad>")
    model = text_model(settings, "XLM-Roberta-Large-Vit-B-32", repo)
    vector = embed(model, "a dog", language="de")  # M-CLIP ignores the language
    fed = recording[0].recorded[0]
    assert sorted(fed) == ["attention_mask", "input_ids"]
    pad_id = 3  # "<pad>" is the first extra token
    ids = expected_ids("a dog", repo, pad_id)
    assert fed["input_ids"][0].tolist() == ids
    assert fed["attention_mask"][0].tolist() == [1] * 4 + [0] * 73
    assert fed["input_ids"].dtype == fed["attention_mask"].dtype == np.int32
    np.testing.assert_allclose(vector, clip_textual_reference(ids, fed["attention_mask"][0]), atol=1e-5)


def test_nllb_prefixes_the_flores_code(
    settings: Settings, recording: list[RecordingSession], caplog: pytest.LogCaptureFixture
) -> None:
    repo = ClipRepo(words=WORDS)
    model = text_model(settings, "nllb-clip-base-siglip__v1", repo)
    embed(model, "ein hund", language="de-CH")
    embed(model, "a dog", language="xx-YY")
    embed(model, "a dog")
    runs = [r["text"][0].tolist() for r in recording[0].recorded]
    assert runs[0] == expected_ids("deu_latnein hund", repo, 2)
    assert runs[1] == expected_ids("eng_latna dog", repo, 2)
    assert runs[2] == expected_ids("a dog", repo, 2)
    assert "Language 'xx-YY' not found" in caplog.text


def test_other_models_ignore_the_language(settings: Settings, recording: list[RecordingSession]) -> None:
    repo = ClipRepo(words=WORDS)
    model = text_model(settings, "ViT-B-32__openai", repo)
    assert np.array_equal(embed(model, "a dog", language="de"), embed(model, "a dog"))
    first, second = (r["text"][0].tolist() for r in recording[0].recorded)
    assert first == second == expected_ids("a dog", repo, 2)


def test_siglip_canonicalize(settings: Settings, recording: list[RecordingSession]) -> None:
    repo = ClipRepo(words=WORDS, canonicalize=True, context=64)
    model = text_model(settings, "ViT-B-16-SigLIP__webli", repo)
    embed(model, "A  Dog, in the FOREST!!")
    fed = recording[0].recorded[0]["text"][0].tolist()
    assert fed == expected_ids("a dog in the forest", repo, 2)


def test_matches_the_tokenizers_library_on_varied_text(settings: Settings, recording: list[RecordingSession]) -> None:
    repo = ClipRepo(words=WORDS, context=12)
    model = text_model(settings, "ViT-B-32__openai", repo)
    reference = Tokenizer.from_str(clip_repo(repo)["textual/tokenizer.json"].decode())
    reference.enable_padding(length=12, pad_id=2, pad_token="<|endoftext|>")
    reference.enable_truncation(max_length=12)
    texts = ["", " ", "dog 🐕 émoji", "日本語のテキスト", "a " * 40, "x\u200by", "The\tCAT\n\nphoto"]
    for text in texts:
        embed(model, text)
    for text, fed in zip(texts, recording[0].recorded, strict=True):
        assert fed["text"][0].tolist() == reference.encode(" ".join(text.split())).ids


def test_text_is_required(settings: Settings) -> None:
    model = text_model(settings, "ViT-B-32__openai", ClipRepo(words=WORDS))
    with pytest.raises(InvalidInput, match="Either image or text must be provided"):
        model.predict(ModelRequest(text=None), Stages())  # type: ignore[attr-defined]
    with pytest.raises(InvalidInput, match="language"):
        embed(model, "a dog", language=["de"])


def test_unknown_pad_token_is_a_load_error(settings: Settings) -> None:
    model = text_model(settings, "ViT-B-32__openai", ClipRepo(words=WORDS))
    root = ModelStore(settings).root(resolve("ViT-B-32__openai", ModelTask.SEARCH, ModelType.TEXTUAL))
    (root / "textual" / "tokenizer_config.json").write_text('{"pad_token": "<nope>"}')
    with pytest.raises(ModelLoadError, match="<nope>"):
        model.load()  # type: ignore[attr-defined]


def test_graph_context_must_match_config(settings: Settings, tmp_path: Path) -> None:
    repo = ClipRepo(words=WORDS, context=77)
    model = text_model(settings, "ViT-B-32__openai", repo)
    root = ModelStore(settings).root(resolve("ViT-B-32__openai", ModelTask.SEARCH, ModelType.TEXTUAL))
    config = json.loads((root / "config.json").read_text())
    config["text_cfg"]["context_length"] = 64
    (root / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="context_length 64"):
        model.load()  # type: ignore[attr-defined]


def test_search_gets_up_to_four_threads_unless_configured(settings: Settings) -> None:
    import os
    from dataclasses import replace

    model = text_model(settings, "ViT-B-32__openai", ClipRepo())
    assert model.session_options().intra_op_threads == min(4, os.cpu_count() or 1)  # type: ignore[attr-defined]
    configured = text_model(replace(settings, model_intra_op_threads=3), "ViT-B-32__openai", ClipRepo())
    assert configured.session_options().intra_op_threads == 0  # type: ignore[attr-defined]  # the setting wins
