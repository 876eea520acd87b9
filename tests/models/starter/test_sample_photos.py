"""photos(): the seven offline test photos, extracted into the cache and readable."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from immich_ml.models import starter
from immich_ml.models.starter import fetch, sample_photos


def test_all_photos_are_there_and_decode(photos: dict[str, Path], starter_cache: Path) -> None:
    assert sorted(photos) == sorted(["astronaut", "camera", "chelsea", "coffee", "solvay", "newton", "gauss"])
    folder = starter_cache / ".starter" / "photos"
    sizes = {}
    for name, path in photos.items():
        assert path.parent == folder and path.is_file()
        with Image.open(path) as image:
            image.load()
            sizes[name] = (image.size, image.mode)
    assert sizes["astronaut"] == ((512, 512), "RGB")
    assert sizes["camera"] == ((512, 512), "L")
    assert sizes["chelsea"] == ((451, 300), "RGB")
    assert sizes["coffee"] == ((600, 400), "RGB")
    assert min(sizes["solvay"][0]) > 1000


def test_sdist_photos_match_their_pins(photos: dict[str, Path]) -> None:
    for name, member in sample_photos.SDIST_PHOTOS.items():
        assert fetch.sha256_file(photos[name]) == member.sha256


def test_photos_are_restored_when_deleted(seeded_cache: Path) -> None:
    first = starter.photos(seeded_cache)
    first["newton"].unlink()
    again = starter.photos(seeded_cache)
    assert again == first and again["newton"].is_file()
