"""Benchmark inputs: Immich-like previews and phone-sized photos, generated once and cached."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from immich_ml.bench import inputs


def test_previews_and_phone_photos(photos: dict[str, Path], tmp_path: Path) -> None:
    images = inputs.load_inputs(tmp_path, photos)
    previews = [i for i in images if i.kind == "preview"]
    phones = [i for i in images if i.kind == "phone"]
    assert sorted(i.name for i in previews) == sorted(f"preview-{n}" for n in photos)
    assert len(phones) == len(inputs.PHONE_LAYOUTS)
    for image in images:
        with Image.open(io.BytesIO(image.data)) as img:
            assert img.format == "JPEG" and img.mode == "RGB"
            assert img.size == (image.width, image.height)
    assert all(max(i.width, i.height) == inputs.PREVIEW_LONG_SIDE for i in previews)
    assert all((i.width, i.height) == inputs.PHONE_SIZE for i in phones)
    # the preview shows the photo: its downscaled pixels match the source's
    with Image.open(photos["coffee"]) as src:
        source = np.asarray(src.convert("RGB").resize((150, 100)), dtype=np.float64)
    coffee = next(i for i in previews if i.name == "preview-coffee")
    with Image.open(io.BytesIO(coffee.data)) as img:
        shown = np.asarray(img.resize((150, 100)), dtype=np.float64)
    assert np.abs(shown - source).mean() < 4


def test_generated_once(photos: dict[str, Path], tmp_path: Path) -> None:
    first = inputs.load_inputs(tmp_path, photos, phones=False)
    folder = tmp_path / ".bench" / "inputs"
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.jpg")}
    second = inputs.load_inputs(tmp_path, photos, phones=False)
    assert [i.data for i in first] == [i.data for i in second]
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("*.jpg")} == stamps
    assert all(i.kind == "preview" for i in second)
