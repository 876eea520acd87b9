"""CLIP image encoder: what reaches the graph vs a PIL/numpy rendering of Immich's preprocessing."""

from __future__ import annotations

import json

import numpy as np
import numpy.typing as npt
import pytest
from model_testing import RecordingSession
from graphs import OPENAI_MEAN, OPENAI_STD, ClipRepo, clip_repo, clip_visual_reference, write_repo
from PIL import Image
from skimage import data as skdata

from immich_ml.backends.base import Target
from immich_ml.config import Settings
from immich_ml.errors import InvalidInput, ModelLoadError
from immich_ml.models.base import ModelRequest
from immich_ml.models.cache import ModelStore
from immich_ml.models.catalog import resolve
from immich_ml.models.clip.visual import ClipPreprocess
from immich_ml.models.manager import ModelManager
from immich_ml.models.timing import Stages
from immich_ml.schemas import ModelTask, ModelType

SIGLIP_MEAN = SIGLIP_STD = (0.5, 0.5, 0.5)
_PIL = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
        "lanczos": Image.Resampling.LANCZOS}


def immich_preprocess(pixels: npt.NDArray[np.uint8], size: int, mean: tuple[float, ...], std: tuple[float, ...],
                      mode: str = "shortest", interpolation: str = "bicubic") -> npt.NDArray[np.float32]:
    """Immich's CLIP preprocessing written out with PIL + numpy: (3, S, S) float32."""
    img = Image.fromarray(pixels)
    resample = _PIL[interpolation]
    if mode == "shortest":
        w, h = img.size
        if w < h:
            img = img.resize((size, int(h / w * size)), resample=resample)
        else:
            img = img.resize((int(w / h * size), size), resample=resample)
        left = int(img.size[0] / 2 - size / 2)
        top = int(img.size[1] / 2 - size / 2)
        img = img.crop((left, top, left + size, top + size))
    else:
        img = img.resize((size, size), resample=resample)
    x = np.asarray(img, dtype=np.float32) / 255.0
    x = (x - np.array(mean, np.float32)) / np.array(std, np.float32)
    return x.transpose(2, 0, 1)


def portrait() -> npt.NDArray[np.uint8]:
    """A tall image with detail at every scale (gradients plus a checkerboard)."""
    y, x = np.mgrid[0:517, 0:301]
    r = (x * 255 // 300).astype(np.uint8)
    g = (y * 255 // 516).astype(np.uint8)
    b = (((x // 7 + y // 5) % 2) * 200 + 20).astype(np.uint8)
    return np.ascontiguousarray(np.stack([r, g, b], axis=-1))


def visual_model(settings: Settings, repo: ClipRepo, name: str = "ViT-B-32__openai") -> object:
    spec = resolve(name, ModelTask.SEARCH, ModelType.VISUAL)
    store = ModelStore(settings)
    write_repo(store.root(spec), clip_repo(repo))
    return ModelManager(settings, Target(), store).get(spec)


def run(model: object, image: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    result = model.predict(ModelRequest(image=image), Stages())  # type: ignore[attr-defined]
    assert isinstance(result, str) and result.startswith("[")
    return np.array(json.loads(result), dtype=np.float32)


CASES = [
    pytest.param("chelsea", 224, OPENAI_MEAN, OPENAI_STD, "shortest", "bicubic", id="chelsea-224-openai"),
    pytest.param("portrait", 32, OPENAI_MEAN, OPENAI_STD, "shortest", "bicubic", id="portrait-shortest"),
    pytest.param("chelsea", 48, SIGLIP_MEAN, SIGLIP_STD, "squash", "bicubic", id="chelsea-squash-siglip"),
    pytest.param("portrait", 40, OPENAI_MEAN, OPENAI_STD, "shortest", "bilinear", id="portrait-bilinear"),
    pytest.param("astronaut", 64, SIGLIP_MEAN, SIGLIP_STD, None, "bicubic", id="no-resize-mode-is-shortest"),
]


@pytest.mark.parametrize(("image", "size", "mean", "std", "mode", "interpolation"), CASES)
def test_input_matches_immich_preprocessing(
    settings: Settings, recording: list[RecordingSession], image: str, size: int,
    mean: tuple[float, ...], std: tuple[float, ...], mode: str | None, interpolation: str,
) -> None:
    pixels = portrait() if image == "portrait" else getattr(skdata, image)()
    repo = ClipRepo(size=size, mean=mean, std=std, resize_mode=mode, interpolation=interpolation)
    vector = run(visual_model(settings, repo), pixels)
    fed = recording[0].recorded[0]["image"]
    assert fed.shape == (1, 3, size, size) and fed.dtype == np.float32
    want = immich_preprocess(pixels, size, mean, std, mode or "shortest", interpolation)
    assert float(np.abs(fed[0] - want).max()) <= 1e-2
    # The embedding is the graph's output for exactly that input, serialized as Immich does.
    np.testing.assert_allclose(vector, clip_visual_reference(fed, size=size), atol=1e-5)


def test_fused_graph_gets_raw_pixels(settings: Settings, recording: list[RecordingSession]) -> None:
    pixels = skdata.chelsea()
    model = visual_model(settings, ClipRepo(size=32, fused=True))
    vector = run(model, pixels)
    fed = recording[0].recorded[0]["image"]
    assert fed.shape == (1, 32, 32, 3) and fed.dtype == np.uint8
    img = Image.fromarray(pixels).resize((48, 32), Image.Resampling.BICUBIC).crop((8, 0, 40, 32))
    assert int(np.abs(fed[0].astype(int) - np.asarray(img, dtype=int)).max()) <= 1
    normalized = ((fed[0] / 255.0 - np.array(OPENAI_MEAN)) / np.array(OPENAI_STD)).astype(np.float32)
    np.testing.assert_allclose(vector, clip_visual_reference(normalized.transpose(2, 0, 1)[None]), atol=1e-5)


def test_decode_may_downscale_to_the_model_size(settings: Settings) -> None:
    model = visual_model(settings, ClipRepo(size=32))
    assert model.min_image_side() is None  # type: ignore[attr-defined]  # unknown before loading
    model.load()  # type: ignore[attr-defined]
    assert model.min_image_side() == 48  # type: ignore[attr-defined]  # 1.5x the input (decode_min_side)


def test_image_is_required(settings: Settings) -> None:
    model = visual_model(settings, ClipRepo(size=32))
    with pytest.raises(InvalidInput, match="Either image or text must be provided"):
        model.predict(ModelRequest(text="a dog"), Stages())  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("cfg", "error"),
    [
        ({"size": 224, "mean": [0.5] * 3, "std": [0.5] * 3, "resize_mode": "crop"}, ModelLoadError),
        ({"size": 224, "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "box"}, ModelLoadError),
        ({"size": 224, "mean": [0.5] * 2, "std": [0.5] * 3}, ValueError),
        ({"size": 224, "mean": [0.5] * 3, "std": [0.0] * 3}, ValueError),
        ({"mean": [0.5] * 3, "std": [0.5] * 3}, KeyError),
    ],
)
def test_preprocess_config_errors(cfg: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        ClipPreprocess.from_config(cfg)


def test_preprocess_config_defaults() -> None:
    pre = ClipPreprocess.from_config({"size": [336, 336], "mean": [0.1, 0.2, 0.3], "std": [1, 2, 3]})
    assert (pre.size, pre.mode, pre.resample) == (336, "shortest", "bicubic")
    assert pre.mean == (0.1, 0.2, 0.3) and pre.std == (1.0, 2.0, 3.0)


def test_graph_size_must_match_config(settings: Settings) -> None:
    spec = resolve("ViT-B-32__openai", ModelTask.SEARCH, ModelType.VISUAL)
    model = visual_model(settings, ClipRepo(size=32))
    root = ModelStore(settings).root(spec)
    cfg = json.loads((root / "visual" / "preprocess_cfg.json").read_text())
    cfg["size"] = 64
    (root / "visual" / "preprocess_cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="64"):
        model.load()  # type: ignore[attr-defined]
