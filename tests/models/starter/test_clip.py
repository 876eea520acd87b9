"""The installed non-semantic CLIP folders, used the way Immich's CLIP code uses them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import pytest
from PIL import Image
from tokenizers import Tokenizer

from immich_ml.models.starter import CLIP_MODEL, TINY_CLIP_MODEL

PROVIDERS = ["CPUExecutionProvider"]
EXPECTED_FILES = {
    "config.json",
    "README.md",
    "immich_ml.json",
    "visual/model.onnx",
    "visual/preprocess_cfg.json",
    "textual/model.onnx",
    "textual/tokenizer.json",
    "textual/tokenizer_config.json",
    "textual/special_tokens_map.json",
}


@pytest.fixture(scope="module", params=[TINY_CLIP_MODEL, CLIP_MODEL])
def model_dir(request: pytest.FixtureRequest, starter_cache: Path) -> Path:
    return starter_cache / "clip" / str(request.param)


def _derived(path: str) -> bool:
    """Files the service writes next to a model at run time: precision variants, prepared,
    memory-mapped and variable-length graphs,
    locks, and execution-provider compile caches (``<type>/openvino/…`` and the like)."""
    name = path.rsplit("/", 1)[-1]
    if path.count("/") > 1 and path.split("/")[1] in ("openvino", "migraphx", "coreml"):
        return True
    return name.endswith(".lock") or any(tag in name for tag in (".int8.", ".fp16.", ".prepared.", ".mapped.", ".textlen."))


def test_layout_and_labels(model_dir: Path) -> None:
    files = {q for p in model_dir.rglob("*") if p.is_file() and not _derived(q := p.relative_to(model_dir).as_posix())}
    assert files == EXPECTED_FILES
    assert "NON-SEMANTIC" in (model_dir / "README.md").read_text()
    assert json.loads((model_dir / "immich_ml.json").read_text())["semantic"] is False
    for tower in ("visual", "textual"):
        props = {p.key: p.value for p in onnx.load(str(model_dir / tower / "model.onnx"), load_external_data=False).metadata_props}
        assert props["immich_ml.semantic"] == "false"


def test_configs(model_dir: Path) -> None:
    config = json.loads((model_dir / "config.json").read_text())
    assert set(config["vision_cfg"]) >= {"image_size", "layers", "width", "patch_size"}
    assert config["text_cfg"]["context_length"] == 77 and config["text_cfg"]["vocab_size"] == 49408
    pre = json.loads((model_dir / "visual" / "preprocess_cfg.json").read_text())
    assert pre["size"] == [224, 224] and pre["interpolation"] == "bicubic"
    assert pre["resize_mode"] == "shortest" and pre["fill_color"] == 0
    assert pre["mean"] == [0.48145466, 0.4578275, 0.40821073]
    assert pre["std"] == [0.26862954, 0.26130258, 0.27577711]


def _preprocess(path: Path, cfg: dict[str, object]) -> npt.NDArray[np.float32]:
    """Immich's CLIP image path: bicubic resize of the short side, centre crop, /255, mean/std, NCHW."""
    size = 224
    image = Image.open(path).convert("RGB")
    scale = size / min(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)
    left, top = (image.width - size) // 2, (image.height - size) // 2
    image = image.crop((left, top, left + size, top + size))
    mean, std = (np.asarray(cfg[k], np.float32) for k in ("mean", "std"))
    return (((np.asarray(image, np.float32) / 255 - mean) / std).transpose(2, 0, 1)[None]).astype(np.float32)


def test_visual_embeds_real_photos(model_dir: Path, photos: dict[str, Path]) -> None:
    config = json.loads((model_dir / "config.json").read_text())
    cfg = json.loads((model_dir / "visual" / "preprocess_cfg.json").read_text())
    session = ort.InferenceSession(str(model_dir / "visual" / "model.onnx"), providers=PROVIDERS)
    names = ("astronaut", "camera", "chelsea", "coffee")
    emb = np.concatenate([session.run(None, {"image": _preprocess(photos[n], cfg)})[0] for n in names])
    assert emb.shape == (4, config["embed_dim"])
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert np.all((emb @ emb.T)[~np.eye(4, dtype=bool)] < 0.9999)


def test_textual_with_immich_tokenizer_flow(model_dir: Path) -> None:
    config = json.loads((model_dir / "config.json").read_text())
    context = config["text_cfg"].get("context_length", 77)
    pad = json.loads((model_dir / "textual" / "tokenizer_config.json").read_text())["pad_token"]
    tokenizer = Tokenizer.from_file(str(model_dir / "textual" / "tokenizer.json"))
    pad_id = tokenizer.token_to_id(pad)
    assert pad_id is not None
    tokenizer.enable_padding(length=context, pad_token=pad, pad_id=pad_id)
    tokenizer.enable_truncation(max_length=context)
    session = ort.InferenceSession(str(model_dir / "textual" / "model.onnx"), providers=PROVIDERS)
    texts = ["a photo of a cat", "an astronaut", "a cup of coffee " * 30]
    emb = []
    for text in texts:
        ids = np.asarray([tokenizer.encode(" ".join(text.split())).ids], dtype=np.int32)
        assert ids.shape == (1, context)
        emb.append(session.run(None, {"text": ids})[0])
    out = np.concatenate(emb)
    assert out.shape == (3, config["embed_dim"])
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert np.all((out @ out.T)[~np.eye(3, dtype=bool)] < 0.9999)


def test_vit_b_32_has_openai_shapes(starter_cache: Path) -> None:
    folder = starter_cache / "clip" / CLIP_MODEL
    visual = onnx.load(str(folder / "visual" / "model.onnx"))
    shapes = {t.name: tuple(t.dims) for t in visual.graph.initializer}
    assert shapes["visual.conv1.weight"] == (768, 3, 32, 32)
    assert shapes["visual.class_embedding"] == (1, 1, 768)
    assert shapes["visual.positional_embedding"] == (50, 768)
    assert shapes["visual.proj"] == (768, 512)
    assert shapes["visual.transformer.resblocks.11.mlp.c_fc.weight_t"] == (768, 3072)
    assert "visual.transformer.resblocks.12.ln_1.weight" not in shapes
    params = sum(int(np.prod(d)) for d in shapes.values())
    assert 87_000_000 < params < 89_000_000  # OpenAI ViT-B/32 image tower: 87.8 M
    del visual
    textual = onnx.load(str(folder / "textual" / "model.onnx"))
    shapes = {t.name: tuple(t.dims) for t in textual.graph.initializer}
    assert shapes["token_embedding.weight"] == (49408, 512)
    assert shapes["positional_embedding"] == (77, 512)
    assert shapes["attn_mask"] == (77, 77)
    assert shapes["transformer.resblocks.11.attn.in_proj.weight_t"] == (512, 1536)
    assert shapes["text_projection"] == (512, 512)
    assert "transformer.resblocks.12.ln_1.weight" not in shapes
