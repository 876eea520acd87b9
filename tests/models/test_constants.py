"""Model names: Immich's lists, clean_name, sources and the NLLB language map."""

from __future__ import annotations

import pytest

from immich_ml.models import constants
from immich_ml.models.constants import ModelSource, clean_name, flores_code, is_starter, model_source


@pytest.mark.parametrize(
    ("raw", "cleaned"),
    [
        ("ViT-B-32__openai", "ViT-B-32__openai"),
        ("immich-app/ViT-B-32__openai", "ViT-B-32__openai"),
        ("ViT-B-32::openai", "ViT-B-32__openai"),
        ("nllb-clip-base-siglip__v1", "nllb-clip-base-siglip__v1"),
        ("a/b/c.d", "cd"),
        ("..", ""),
        ("../../etc/passwd", "passwd"),
        ("x\\y", "x_y"),
    ],
)
def test_clean_name_as_immich(raw: str, cleaned: str) -> None:
    assert clean_name(raw) == cleaned


@pytest.mark.parametrize(
    ("name", "source"),
    [
        ("ViT-B-32__openai", ModelSource.OPENCLIP),
        ("immich-app/ViT-B-32__openai", ModelSource.OPENCLIP),
        ("ViT-SO400M-16-SigLIP2-512__webli", ModelSource.OPENCLIP),
        ("nllb-clip-large-siglip__mrl", ModelSource.OPENCLIP),
        ("fg-clip2-base", ModelSource.OPENCLIP),
        ("XLM-Roberta-Large-Vit-B-16Plus", ModelSource.MCLIP),
        ("LABSE-Vit-L-14", ModelSource.MCLIP),
        ("buffalo_l", ModelSource.INSIGHTFACE),
        ("antelopev2", ModelSource.INSIGHTFACE),
        ("../buffalo_l", ModelSource.INSIGHTFACE),  # as Immich: only the part after the last "/"
        ("PP-OCRv5_mobile", ModelSource.PADDLE),
        ("LATIN__PP-OCRv5_mobile", ModelSource.PADDLE),
        ("scrfd_sface", ModelSource.INSIGHTFACE),
        ("ViT-B-32__nonsemantic", ModelSource.OPENCLIP),
        ("ViT-tiny__nonsemantic", ModelSource.OPENCLIP),
    ],
)
def test_known_names(name: str, source: ModelSource) -> None:
    assert model_source(name) == source


@pytest.mark.parametrize("name", ["", "ViT-B-32", "buffalo", "buffalo_xl", "buffalo_l\x00", "BUFFALO_L", "/"])
def test_unknown_names(name: str) -> None:
    assert model_source(name) is None


def test_list_sizes_match_immich() -> None:
    assert len(constants.OPENCLIP_MODELS) == 55
    assert len(constants.MCLIP_MODELS) == 4
    assert len(constants.INSIGHTFACE_MODELS) == 4
    assert len(constants.PADDLE_MODELS) == 10
    lists = [constants.OPENCLIP_MODELS, constants.MCLIP_MODELS, constants.INSIGHTFACE_MODELS,
             constants.PADDLE_MODELS, constants.STARTER_MODELS]
    assert sum(len(names) for names in lists) == len(set().union(*lists))


def test_starters_are_local_only() -> None:
    assert all(is_starter(name) for name in ("scrfd_sface", "ViT-B-32__nonsemantic", "ViT-tiny__nonsemantic"))
    assert not is_starter("buffalo_l")


@pytest.mark.parametrize(
    ("language", "code"),
    [("de", "deu_Latn"), ("de-CH", "deu_Latn"), ("zh-CN", "zho_Hans"), ("zh-TW", "zho_Hant"),
     ("pt-BR", "por_Latn"), ("nb-NO", "nob_Latn"), ("sr-Cyrl", "srp_Cyrl"), ("xx", None), ("", None)],
)
def test_flores_codes(language: str, code: str | None) -> None:
    assert flores_code(language) == code
