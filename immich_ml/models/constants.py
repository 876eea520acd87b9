"""Model names the service knows, as Immich lists them, plus the offline starter models.

A request names a model the way Immich's server sends it (``ViT-B-32__openai``, ``buffalo_l``); the name
decides which family of network it is (OpenCLIP, M-CLIP, InsightFace, Paddle OCR) and which folder of the
model cache holds it. The lists are Immich's own, so a name Immich accepts is accepted here and a name it
rejects is rejected here too. The starter models are ours: they live only on disk (written by
``python -m immich_ml.models.starter install``) and are never downloaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class ModelSource(StrEnum):
    """Family of a model; picks the model classes and the repository layout."""

    OPENCLIP = "openclip"
    MCLIP = "mclip"
    INSIGHTFACE = "insightface"
    PADDLE = "paddle"


OPENCLIP_MODELS: frozenset[str] = frozenset(
    {
        "RN101__openai",
        "RN101__yfcc15m",
        "RN50__cc12m",
        "RN50__openai",
        "RN50__yfcc15m",
        "RN50x16__openai",
        "RN50x4__openai",
        "RN50x64__openai",
        "ViT-B-16-SigLIP-256__webli",
        "ViT-B-16-SigLIP-384__webli",
        "ViT-B-16-SigLIP-512__webli",
        "ViT-B-16-SigLIP-i18n-256__webli",
        "ViT-B-16-SigLIP__webli",
        "ViT-B-16-plus-240__laion400m_e31",
        "ViT-B-16-plus-240__laion400m_e32",
        "ViT-B-16__laion400m_e31",
        "ViT-B-16__laion400m_e32",
        "ViT-B-16__openai",
        "ViT-B-32__laion2b-s34b-b79k",
        "ViT-B-32__laion2b_e16",
        "ViT-B-32__laion400m_e31",
        "ViT-B-32__laion400m_e32",
        "ViT-B-32__openai",
        "ViT-H-14-378-quickgelu__dfn5b",
        "ViT-H-14-quickgelu__dfn5b",
        "ViT-H-14__laion2b-s32b-b79k",
        "ViT-L-14-336__openai",
        "ViT-L-14-quickgelu__dfn2b",
        "ViT-L-14__laion2b-s32b-b82k",
        "ViT-L-14__laion400m_e31",
        "ViT-L-14__laion400m_e32",
        "ViT-L-14__openai",
        "ViT-L-16-SigLIP-256__webli",
        "ViT-L-16-SigLIP-384__webli",
        "ViT-SO400M-14-SigLIP-384__webli",
        "ViT-g-14__laion2b-s12b-b42k",
        "XLM-Roberta-Base-ViT-B-32__laion5b_s13b_b90k",
        "XLM-Roberta-Large-ViT-H-14__frozen_laion5b_s13b_b90k",
        "nllb-clip-base-siglip__mrl",
        "nllb-clip-base-siglip__v1",
        "nllb-clip-large-siglip__mrl",
        "nllb-clip-large-siglip__v1",
        "ViT-B-16-SigLIP2__webli",
        "ViT-B-32-SigLIP2-256__webli",
        "ViT-L-16-SigLIP2-256__webli",
        "ViT-L-16-SigLIP2-384__webli",
        "ViT-L-16-SigLIP2-512__webli",
        "ViT-SO400M-14-SigLIP2-378__webli",
        "ViT-SO400M-14-SigLIP2__webli",
        "ViT-SO400M-16-SigLIP2-256__webli",
        "ViT-SO400M-16-SigLIP2-384__webli",
        "ViT-SO400M-16-SigLIP2-512__webli",
        "ViT-gopt-16-SigLIP2-256__webli",
        "ViT-gopt-16-SigLIP2-384__webli",
        "fg-clip2-base",
    }
)

MCLIP_MODELS: frozenset[str] = frozenset(
    {
        "LABSE-Vit-L-14",
        "XLM-Roberta-Large-Vit-B-16Plus",
        "XLM-Roberta-Large-Vit-B-32",
        "XLM-Roberta-Large-Vit-L-14",
    }
)

INSIGHTFACE_MODELS: frozenset[str] = frozenset({"antelopev2", "buffalo_s", "buffalo_m", "buffalo_l"})

PADDLE_MODELS: frozenset[str] = frozenset(
    {
        "PP-OCRv5_server",
        "PP-OCRv5_mobile",
        "CH__PP-OCRv5_server",
        "CH__PP-OCRv5_mobile",
        "EL__PP-OCRv5_mobile",
        "EN__PP-OCRv5_mobile",
        "ESLAV__PP-OCRv5_mobile",
        "KOREAN__PP-OCRv5_mobile",
        "LATIN__PP-OCRv5_mobile",
        "TH__PP-OCRv5_mobile",
    }
)

# Offline starter models (see immich_ml.models.starter): same layout and graph contract as their Immich
# counterparts, installed from PyPI packages, never fetched from a model hub.
STARTER_FACE_MODELS: frozenset[str] = frozenset({"scrfd_sface"})
STARTER_CLIP_MODELS: frozenset[str] = frozenset({"ViT-B-32__nonsemantic", "ViT-tiny__nonsemantic"})
STARTER_MODELS: frozenset[str] = STARTER_FACE_MODELS | STARTER_CLIP_MODELS

_SOURCES: tuple[tuple[frozenset[str], ModelSource], ...] = (
    (INSIGHTFACE_MODELS | STARTER_FACE_MODELS, ModelSource.INSIGHTFACE),
    (MCLIP_MODELS, ModelSource.MCLIP),
    (OPENCLIP_MODELS | STARTER_CLIP_MODELS, ModelSource.OPENCLIP),
    (PADDLE_MODELS, ModelSource.PADDLE),
)

# Weblate language codes (what Immich's web app sends as ``language``) to the FLORES-200 codes that
# NLLB-based text encoders expect as a prefix.
WEBLATE_TO_FLORES200: Mapping[str, str] = {
    "af": "afr_Latn",
    "ar": "arb_Arab",
    "az": "azj_Latn",
    "be": "bel_Cyrl",
    "bg": "bul_Cyrl",
    "ca": "cat_Latn",
    "cs": "ces_Latn",
    "da": "dan_Latn",
    "de": "deu_Latn",
    "el": "ell_Grek",
    "en": "eng_Latn",
    "es": "spa_Latn",
    "et": "est_Latn",
    "fa": "pes_Arab",
    "fi": "fin_Latn",
    "fr": "fra_Latn",
    "he": "heb_Hebr",
    "hi": "hin_Deva",
    "hr": "hrv_Latn",
    "hu": "hun_Latn",
    "hy": "hye_Armn",
    "id": "ind_Latn",
    "it": "ita_Latn",
    "ja": "jpn_Hira",
    "kmr": "kmr_Latn",
    "ko": "kor_Hang",
    "lb": "ltz_Latn",
    "lt": "lit_Latn",
    "lv": "lav_Latn",
    "mfa": "zsm_Latn",
    "mk": "mkd_Cyrl",
    "mn": "khk_Cyrl",
    "mr": "mar_Deva",
    "ms": "zsm_Latn",
    "nb-NO": "nob_Latn",
    "nn": "nno_Latn",
    "nl": "nld_Latn",
    "pl": "pol_Latn",
    "pt-BR": "por_Latn",
    "pt": "por_Latn",
    "ro": "ron_Latn",
    "ru": "rus_Cyrl",
    "sk": "slk_Latn",
    "sl": "slv_Latn",
    "sr-Cyrl": "srp_Cyrl",
    "sv": "swe_Latn",
    "ta": "tam_Taml",
    "te": "tel_Telu",
    "th": "tha_Thai",
    "tr": "tur_Latn",
    "uk": "ukr_Cyrl",
    "ur": "urd_Arab",
    "vi": "vie_Latn",
    "zh-CN": "zho_Hans",
    "zh-Hans": "zho_Hans",
    "zh-TW": "zho_Hant",
}
DEFAULT_FLORES200 = "eng_Latn"

_CLEAN_NAME = str.maketrans(":\\/", "___", ".")


def clean_name(model_name: str) -> str:
    """Immich's folder name for a model: the part after the last ``/``, ``:``/``\\`` to ``_``, no dots.

    ``immich-app/ViT-B-32::openai`` → ``ViT-B-32__openai``. Used both for lookup and for the folder name, so
    a model already in an Immich cache is found under the same name.
    """
    return model_name.split("/")[-1].translate(_CLEAN_NAME)


def model_source(model_name: str) -> ModelSource | None:
    """Family of ``model_name`` (after :func:`clean_name`), or ``None`` if the name is unknown."""
    cleaned = clean_name(model_name)
    for names, source in _SOURCES:
        if cleaned in names:
            return source
    return None


def is_starter(model_name: str) -> bool:
    """True for the offline starter models, which are installed locally and never downloaded."""
    return clean_name(model_name) in STARTER_MODELS


def flores_code(language: str) -> str | None:
    """FLORES-200 code for a Weblate ``language`` (``de``, ``de-CH`` → ``deu_Latn``); ``None`` if unknown."""
    code = WEBLATE_TO_FLORES200.get(language)
    if code is None:
        code = WEBLATE_TO_FLORES200.get(language.split("-")[0])
    return code
