"""Real photos available without a network: scikit-image's bundled samples and the scrfd sdist's images.

================ ============================== ============================================
name             file                           content
================ ============================== ============================================
astronaut        astronaut.png (skimage)        Eileen Collins, one face, 512x512 RGB
camera           camera.png (skimage)           cameraman, one face, 512x512 *grayscale*
chelsea          chelsea.png (skimage)          a cat, no human face, 451x300 RGB
coffee           coffee.png (skimage)           a coffee cup, no face, 600x400 RGB
solvay           solvay_conference_1927.jpg     29 people (Solvay conference 1927)
newton           newton.png (scrfd sdist)       portrait, one face
gauss            gauss.png (scrfd sdist)        portrait, one face
================ ============================== ============================================

Licenses: astronaut (NASA) public domain; camera, chelsea, coffee CC0 (scikit-image); the Solvay
photograph (1927) and the Newton and Gauss portraits are public domain.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from immich_ml.errors import ModelUnavailable
from immich_ml.models.starter.fetch import SCRFD_SDIST, Member, read_member

SKIMAGE_PHOTOS = {
    "astronaut": "astronaut.png",
    "camera": "camera.png",
    "chelsea": "chelsea.png",
    "coffee": "coffee.png",
}
SDIST_PHOTOS = {
    "solvay": Member(
        SCRFD_SDIST,
        "scrfd-0.3.0/images/solvay_conference_1927.jpg",
        "ae76a5be54f53cca50074a0d1ac8653187154d264fc58ed928e1b92c27e17e2a",
    ),
    "newton": Member(
        SCRFD_SDIST,
        "scrfd-0.3.0/images/newton.png",
        "91f24ec62161d131632ea78038f5fda8319abec1c78b82795be891f349e9c05a",
    ),
    "gauss": Member(
        SCRFD_SDIST,
        "scrfd-0.3.0/images/gauss.png",
        "0ecd92b4e17755deedabd46f416558c15abf06f6385d50be4486d45987c95f9e",
    ),
}
PHOTO_NAMES = (*SKIMAGE_PHOTOS, *SDIST_PHOTOS)


def _file_name(name: str) -> str:
    if name in SKIMAGE_PHOTOS:
        return SKIMAGE_PHOTOS[name]
    return SDIST_PHOTOS[name].path.rsplit("/", 1)[-1]


def photo_paths(folder: Path) -> dict[str, Path]:
    """Photo name -> path inside ``folder`` (whether or not the file exists yet)."""
    return {name: folder / _file_name(name) for name in PHOTO_NAMES}


def _skimage_data() -> Path:
    # Located without importing scikit-image: only its bundled PNG files are needed.
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(
            "The test photos astronaut/camera/chelsea/coffee come from scikit-image, which is not "
            "installed. Install it (pip install scikit-image, part of the dev extra) and run again."
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def write_photos(folder: Path, downloads: Path) -> None:
    """Copy the seven photos into ``folder`` (the scrfd sdist is downloaded if needed)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = _skimage_data()
    paths = photo_paths(folder)
    for name, file_name in SKIMAGE_PHOTOS.items():
        source = data / file_name
        if not source.is_file():
            raise ModelUnavailable(f"scikit-image has no {source}; reinstall scikit-image.")
        shutil.copyfile(source, paths[name])
    for name, member in SDIST_PHOTOS.items():
        paths[name].write_bytes(read_member(member, downloads))
