"""Benchmark inputs shaped like what Immich's server sends: JPEG previews and phone-sized photos.

Immich sends its *preview* rendition to the ML service: a JPEG of about 1440 px on the long side
(quality ~90 here). Seven previews are made from the real offline photos of the starter models
(:func:`immich_ml.models.starter.photos`), and three phone-sized 4000×3000 JPEGs are upscaled and
tiled from the same photos (people, portraits, a scene), for clients that send originals.

The sample photos are small (300–1024 px), so their upscaled versions are smoother than real
camera output; a light deterministic grain (σ 2 levels for previews, 3 for phone photos) brings
JPEG sizes and entropy-decoding work to realistic levels. Files are written once into
``<cache>/.bench/inputs/`` and reused while :data:`VERSION` matches.
"""

from __future__ import annotations

import io
import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from PIL import Image

VERSION = 1
PREVIEW_LONG_SIDE = 1440
PHONE_SIZE = (4000, 3000)  # (width, height), a 12 MP 4:3 phone photo
JPEG_QUALITY = 90
# name -> photos laid out left-to-right, top-to-bottom on a 1x1 or 2x2 grid
PHONE_LAYOUTS: dict[str, tuple[str, ...]] = {
    "phone-group": ("solvay",),
    "phone-portraits": ("astronaut", "newton", "gauss", "camera"),
    "phone-scene": ("chelsea", "coffee", "astronaut", "solvay"),
}
# What people type into Immich's smart search.
SEARCH_TEXTS = (
    "a dog playing on the beach",
    "birthday party with a chocolate cake",
    "snowy mountains at sunset",
    "my grandmother in the kitchen",
    "receipt",
    "red car parked in front of a house",
    "people at a conference, black and white photo",
    "a cup of coffee on a wooden table",
)

Kind = Literal["preview", "phone"]


@dataclass(frozen=True)
class BenchImage:
    """One encoded test image. ``width``/``height`` in pixels; ``data`` is the JPEG file."""

    name: str
    kind: Kind
    width: int
    height: int
    data: bytes

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "kind": self.kind, "width": self.width, "height": self.height,
                "bytes": len(self.data)}


def load_inputs(
    cache_folder: Path, photos: dict[str, Path], *, phones: bool = True
) -> list[BenchImage]:
    """The previews (one per photo, sorted by name) then, with ``phones``, the phone-sized JPEGs.

    ``photos`` is :func:`immich_ml.models.starter.photos` output. Generated files are cached in
    ``<cache_folder>/.bench/inputs``.
    """
    folder = cache_folder / ".bench" / "inputs"
    manifest = folder / "inputs.json"
    wanted = _recipes(photos)
    if not _fresh(manifest, wanted):
        _generate(folder, photos, wanted)
        manifest.write_text(json.dumps({"version": VERSION, "names": sorted(wanted)}), encoding="utf-8")
    images = []
    for name, kind in sorted(wanted.items(), key=lambda item: (item[1] != "preview", item[0])):
        if kind == "phone" and not phones:
            continue
        data = (folder / f"{name}.jpg").read_bytes()
        with Image.open(io.BytesIO(data)) as probe:
            width, height = probe.size
        images.append(BenchImage(name, kind, width, height, data))
    return images


def _recipes(photos: dict[str, Path]) -> dict[str, Kind]:
    recipes: dict[str, Kind] = {f"preview-{name}": "preview" for name in photos}
    for name, layout in PHONE_LAYOUTS.items():
        if all(part in photos for part in layout):
            recipes[name] = "phone"
    return recipes


def _fresh(manifest: Path, wanted: dict[str, Kind]) -> bool:
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if data.get("version") != VERSION or data.get("names") != sorted(wanted):
        return False
    return all((manifest.parent / f"{name}.jpg").is_file() for name in wanted)


def _generate(folder: Path, photos: dict[str, Path], wanted: dict[str, Kind]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, kind in wanted.items():
        if kind == "preview":
            image = preview(_open_rgb(photos[name.removeprefix("preview-")]), PREVIEW_LONG_SIDE)
            pixels = _grain(np.asarray(image), 2.0, name)
        else:
            pixels = _grain(np.asarray(phone_photo([_open_rgb(photos[p]) for p in PHONE_LAYOUTS[name]])), 3.0, name)
        tmp = folder / f"{name}.jpg.tmp"
        Image.fromarray(pixels).save(tmp, "JPEG", quality=JPEG_QUALITY)
        tmp.replace(folder / f"{name}.jpg")


def _open_rgb(path: Path) -> Image.Image:
    with Image.open(path) as img:
        return img.convert("RGB")


def preview(image: Image.Image, long_side: int) -> Image.Image:
    """``image`` resized (Lanczos, as Immich's thumbnailer) so its long side is ``long_side``."""
    scale = long_side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def _cover(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Scale to cover ``size`` (width, height) and crop the centre."""
    scale = max(size[0] / image.width, size[1] / image.height)
    resized = image.resize(
        (max(size[0], round(image.width * scale)), max(size[1], round(image.height * scale))),
        Image.Resampling.BICUBIC,
    )
    left, top = (resized.width - size[0]) // 2, (resized.height - size[1]) // 2
    return resized.crop((left, top, left + size[0], top + size[1]))


def phone_photo(parts: list[Image.Image]) -> Image.Image:
    """A :data:`PHONE_SIZE` RGB image: one photo covering it, or four on a 2×2 grid."""
    width, height = PHONE_SIZE
    if len(parts) == 1:
        return _cover(parts[0], PHONE_SIZE)
    canvas = Image.new("RGB", PHONE_SIZE)
    cell = (width // 2, height // 2)
    for i, part in enumerate(parts[:4]):
        canvas.paste(_cover(part, cell), ((i % 2) * cell[0], (i // 2) * cell[1]))
    return canvas


def _grain(pixels: npt.NDArray[np.uint8], sigma: float, name: str) -> npt.NDArray[np.uint8]:
    """Add deterministic Gaussian grain (``sigma`` levels), seeded by ``name``."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    noise = rng.normal(0.0, sigma, size=pixels.shape).astype(np.float32)
    noisy: npt.NDArray[np.uint8] = np.clip(pixels.astype(np.float32) + noise, 0, 255).round().astype(np.uint8)
    return noisy
