"""Accuracy checks for the speed settings: does the fast path give the same answers?

* ``fast_decode``: JPEG DCT-domain downscaled decoding vs a full decode, for CLIP (embedding cosine,
  and the preprocessed tensor itself, since the starter CLIP's random weights could hide or
  exaggerate a difference) and for faces (same faces, embedding cosine).
* ``INT8`` vs ``FP32``: embedding cosine for CLIP, and for faces the same boxes plus every face's
  INT8 embedding closest to its own FP32 embedding among all faces of the photos ("matched").

Each check runs two in-process pipelines that differ in one setting over the same payloads.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from immich_ml.backends.base import Target
from immich_ml.bench.workloads import Workload, cosine, match_faces
from immich_ml.config import Settings
from immich_ml.models.clip.visual import ClipPreprocess, decode_min_side
from immich_ml.ops.image import decode_image, resize_normalize_into
from immich_ml.pipeline import Pipeline
from immich_ml.schemas import parse_entries


@dataclass
class ParityResult:
    """Worst case over the payloads. Cosines are of embeddings; tensor figures in normalised units."""

    check: str
    workload: str
    payloads: int = 0
    min_cosine: float = 1.0
    faces_a: int = 0
    faces_b: int = 0
    faces_matched: int = 0
    max_box_shift_px: float = 0.0
    identity_kept: int = 0
    tensor_max_abs: float | None = None
    tensor_rel_rms: float | None = None
    per_payload: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if v is not None and k != "per_payload"}
        data["per_payload"] = self.per_payload
        return data


def _answers(settings: Settings, workload: Workload) -> list[dict[str, Any]]:
    pipeline = Pipeline(settings, Target("cpu"))
    entries = parse_entries(workload.entries)
    try:
        answers = []
        for payload in workload.payloads:
            if isinstance(payload, bytes):
                answers.append(pipeline.predict(entries, image=payload))
            else:
                answers.append(pipeline.predict(entries, text=payload))
        return answers
    finally:
        pipeline.close()


def _vector(text: str) -> npt.NDArray[np.float64]:
    return np.asarray(orjson.loads(text), dtype=np.float64)


def compare(check: str, workload: Workload, a: Settings, b: Settings) -> ParityResult:
    """Run ``workload`` under settings ``a`` and ``b`` and compare the answers payload by payload."""
    result = ParityResult(check, workload.name)
    first, second = _answers(a, workload), _answers(b, workload)
    if workload.name.startswith("clip"):
        for label, x, y in zip(workload.labels, first, second, strict=True):
            c = cosine(_vector(x["clip"]), _vector(y["clip"]))
            result.min_cosine = min(result.min_cosine, c)
            result.per_payload.append({"payload": label, "cosine": round(c, 6)})
        result.payloads = len(first)
        return result
    embeddings_a: list[npt.NDArray[np.float64]] = []
    embeddings_b: list[npt.NDArray[np.float64]] = []
    for label, x, y in zip(workload.labels, first, second, strict=True):
        faces_a, faces_b = x["facial-recognition"], y["facial-recognition"]
        result.faces_a += len(faces_a)
        result.faces_b += len(faces_b)
        pairs = match_faces(faces_a, faces_b)
        result.faces_matched += len(pairs)
        worst = 1.0
        for i, j, _ in pairs:
            box_a, box_b = faces_a[i]["boundingBox"], faces_b[j]["boundingBox"]
            shift = max(abs(box_a[k] - box_b[k]) for k in ("x1", "y1", "x2", "y2"))
            result.max_box_shift_px = max(result.max_box_shift_px, shift)
            va, vb = _vector(faces_a[i]["embedding"]), _vector(faces_b[j]["embedding"])
            embeddings_a.append(va)
            embeddings_b.append(vb)
            worst = min(worst, cosine(va, vb))
        result.min_cosine = min(result.min_cosine, worst)
        result.per_payload.append({"payload": label, "faces": [len(faces_a), len(faces_b)],
                                   "matched": len(pairs), "min_cosine": round(worst, 6)})
    result.payloads = len(first)
    result.identity_kept = _identity_kept(embeddings_a, embeddings_b)
    return result


def _identity_kept(a: Sequence[npt.NDArray[np.float64]], b: Sequence[npt.NDArray[np.float64]]) -> int:
    """How many faces' ``b`` embedding is closest (cosine) to their own ``a`` embedding among all."""
    if not a:
        return 0
    ma = np.stack([v / np.linalg.norm(v) for v in a])
    mb = np.stack([v / np.linalg.norm(v) for v in b])
    return int(np.sum(np.argmax(mb @ ma.T, axis=1) == np.arange(len(a))))


def clip_tensor_difference(model_dir: Path, payloads: Sequence[bytes], result: ParityResult) -> None:
    """Fill ``result.tensor_*``: the CLIP input tensor from a fast (DCT-scaled) decode vs a full one.

    ``tensor_max_abs``: largest difference of one element (normalised units, ~0.03 per grey
    level); ``tensor_rel_rms``: RMS of the difference over the RMS of the full-decode tensor.
    """
    cfg = json.loads((model_dir / "visual" / "preprocess_cfg.json").read_text(encoding="utf-8"))
    pre = ClipPreprocess.from_config(cfg)
    worst_abs, worst_rel = 0.0, 0.0
    for data in payloads:
        tensors = []
        for min_side in (None, decode_min_side(pre.size)):
            out = np.empty((1, 3, pre.size, pre.size), dtype=np.float32)
            resize_normalize_into(decode_image(data, min_side=min_side), out, 0, size=(pre.size, pre.size),
                                  mode=pre.mode, resample=pre.resample, mean=pre.mean, std=pre.std)
            tensors.append(out)
        diff = tensors[1] - tensors[0]
        worst_abs = max(worst_abs, float(np.abs(diff).max()))
        worst_rel = max(worst_rel, float(np.sqrt(np.mean(diff**2)) / np.sqrt(np.mean(tensors[0] ** 2))))
    result.tensor_max_abs = round(worst_abs, 5)
    result.tensor_rel_rms = round(worst_rel, 5)


def run_checks(workloads: Sequence[Workload], base: Settings) -> list[ParityResult]:
    """fast_decode on/off and INT8/FP32 for every image workload (INT8 also for CLIP text)."""
    results = []
    fp32 = replace(base, model_precision="FP32", model_ttl=0)
    for workload in workloads:
        if workload.name == "ocr":
            continue  # OCR agreement is the texts, checked against the reference in every run
        if workload.is_image:
            fast = compare("fast_decode", workload, replace(fp32, fast_decode=False), replace(fp32, fast_decode=True))
            if workload.name == "clip-visual":
                clip_tensor_difference(workload.model_dir, [p for p in workload.payloads if isinstance(p, bytes)], fast)
            results.append(fast)
        results.append(compare("int8", workload, fp32, replace(fp32, model_precision="INT8")))
    return results
