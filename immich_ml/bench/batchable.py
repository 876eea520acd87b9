"""A copy of a model cache in which the CLIP towers take any batch size, for batching figures.

The starter CLIP graphs are exported with a static batch of 1 but keep the batch symbolic inside
(``models/starter/clip_graph.py``); Immich's own exports have a symbolic batch axis. Cross-request
batching needs the latter, so the benchmarks and the GPU check run on a copy whose graph inputs
and outputs say ``batch``. Face recognizers (SFace, ArcFace) already have a symbolic batch.
"""

from __future__ import annotations

import shutil
from pathlib import Path


def symbolic_batch(path: Path) -> None:
    """Rewrite ``path`` in place so its inputs' and outputs' first axis is the symbolic ``batch``."""
    import onnx

    model = onnx.load(str(path))
    for value in [*model.graph.input, *model.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    onnx.save(model, str(path))


def batchable_cache(source: Path, target: Path, clip_models: tuple[str, ...]) -> Path:
    """``target`` holding a copy of ``source``'s face models (the cache refuses links that leave it) and copies of ``clip_models`` with
    symbolic batch axes; reused when already there."""
    target.mkdir(parents=True, exist_ok=True)
    faces = target / "facial-recognition"
    if not faces.exists() and (source / "facial-recognition").is_dir():
        shutil.copytree(source / "facial-recognition", faces)
    for name in clip_models:
        copy = target / "clip" / name
        if copy.is_dir():
            continue
        shutil.copytree(source / "clip" / name, copy)
        for tower in ("visual", "textual"):
            for stale in (copy / tower).glob("model.*"):
                if stale.name != "model.onnx":
                    stale.unlink()  # prepared/quantized variants of the static graph
            symbolic_batch(copy / tower / "model.onnx")
    return target
