"""Write a generated, non-semantic CLIP into Immich's ``clip/<name>/`` layout.

Files (the same set Immich's exported OpenCLIP repositories have, plus labels):

* ``config.json``: the open_clip model config (``embed_dim``, ``vision_cfg``, ``text_cfg``)
* ``visual/model.onnx`` and ``visual/preprocess_cfg.json`` (224 px, OpenAI mean/std, bicubic,
  shortest-side resize then centre crop)
* ``textual/model.onnx``, ``textual/tokenizer.json``, ``textual/tokenizer_config.json``,
  ``textual/special_tokens_map.json`` (the real CLIP tokenizer)
* ``README.md`` and ``immich_ml.json`` saying the weights are random and the embeddings meaningless.

The same name, spec and seed always give byte-identical files.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import onnx

from immich_ml.models.starter.clip_graph import ClipSpec, build_textual, build_visual
from immich_ml.models.starter.tokenizer import write_tokenizer_files

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
METADATA_FILE = "immich_ml.json"
NONSEMANTIC = (
    "NON-SEMANTIC: random weights in the real CLIP architecture. Embeddings are unit-length and "
    "differ between inputs, but similarities between them mean nothing."
)


def open_clip_config(spec: ClipSpec) -> dict[str, Any]:
    """The open_clip-style ``config.json`` for ``spec`` (OpenAI CLIP uses QuickGELU)."""
    return {
        "embed_dim": spec.embed_dim,
        "quick_gelu": True,
        "vision_cfg": {
            "image_size": spec.image_size,
            "layers": spec.vision_layers,
            "width": spec.vision_width,
            "head_width": spec.vision_head_width,
            "patch_size": spec.patch_size,
        },
        "text_cfg": {
            "context_length": spec.context_length,
            "vocab_size": spec.vocab_size,
            "width": spec.text_width,
            "heads": spec.text_heads,
            "layers": spec.text_layers,
        },
    }


def preprocess_config(spec: ClipSpec) -> dict[str, Any]:
    """``visual/preprocess_cfg.json`` as open_clip writes it for OpenAI models."""
    return {
        "size": [spec.image_size, spec.image_size],
        "mode": "RGB",
        "mean": list(OPENAI_MEAN),
        "std": list(OPENAI_STD),
        "interpolation": "bicubic",
        "resize_mode": "shortest",
        "fill_color": 0,
    }


def _readme(name: str, spec: ClipSpec, seed: int) -> str:
    return f"""# {name}: a NON-SEMANTIC CLIP for tests and offline setups

{NONSEMANTIC}

* Architecture: OpenAI CLIP ViT (patch {spec.patch_size}, {spec.image_size} px, vision width
  {spec.vision_width} x {spec.vision_layers} layers, text width {spec.text_width} x
  {spec.text_layers} layers, {spec.text_heads} text heads, embedding {spec.embed_dim}), QuickGELU.
* Weights: random, drawn with seed {seed} by `immich_ml.models.starter` (no torch, no download).
* Tokenizer: the real CLIP BPE vocabulary (open-clip-torch 3.3.0, MIT), so text handling is the
  same as for real CLIP models.
* Inputs/outputs as in Immich's ONNX exports: visual `image` float32 [1,3,{spec.image_size},{spec.image_size}]
  -> `embedding` [1,{spec.embed_dim}]; textual `text` int32 [1,{spec.context_length}] -> `embedding`
  [1,{spec.embed_dim}]. Both embeddings are L2-normalized.

Do not use it for a real photo library: smart search results would be arbitrary.
"""


def _save(model: onnx.ModelProto, path: Path, name: str, seed: int) -> None:
    onnx.helper.set_model_props(model, {"immich_ml.model": name, "immich_ml.semantic": "false", "seed": str(seed)})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())


def write_clip_model(model_dir: Path, name: str, spec: ClipSpec, seed: int, vocab_gz: bytes) -> None:
    """Generate both towers and write the whole ``clip/<name>/`` folder into ``model_dir``.

    The towers are built and written one at a time to keep peak memory near one tower's size
    (about 0.7 GB for ViT-B/32's visual tower).
    """
    model_dir.mkdir(parents=True, exist_ok=True)
    doc = f"{name}: {NONSEMANTIC}"
    _save(build_visual(spec, seed, doc), model_dir / "visual" / "model.onnx", name, seed)
    _save(build_textual(spec, seed, doc), model_dir / "textual" / "model.onnx", name, seed)
    write_tokenizer_files(vocab_gz, model_dir / "textual", spec.context_length)
    metadata = {
        "schema_version": 1,
        "semantic": False,
        "description": NONSEMANTIC,
        "generator": "immich_ml.models.starter.clip_graph",
        "seed": seed,
        "spec": asdict(spec),
        "license": "Generated weights: no third-party rights. Tokenizer vocabulary: MIT (OpenAI CLIP, open_clip).",
    }
    for path, content in (
        (model_dir / "config.json", open_clip_config(spec)),
        (model_dir / "visual" / "preprocess_cfg.json", preprocess_config(spec)),
        (model_dir / METADATA_FILE, metadata),
    ):
        path.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    (model_dir / "README.md").write_text(_readme(name, spec, seed), encoding="utf-8")
