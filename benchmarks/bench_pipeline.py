"""Per-stage times of the engine's CLIP and face pipelines on the offline starter models.

Runs ``Pipeline.predict`` exactly as a worker does and reports the median milliseconds per stage
(decode, preprocess, inference, postprocess, serialize), per request (wall) and the CPU time one
request costs over all threads (steadier than wall time on a busy host), plus, for the stages our
kernels replace, a reference measured in the same run: Immich's way (PIL decode, PIL resize/crop and
numpy normalisation for CLIP; cv2 letterbox and numpy normalisation for SCRFD).

    .venv/bin/python benchmarks/bench_pipeline.py [--cache .cache/models] [--repeat 20]

Figures, not pass/fail. Run on a quiet machine: other processes show up directly in the numbers.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from immich_ml.backends.base import Target
from immich_ml.config import Settings
from immich_ml.models import starter
from immich_ml.pipeline import Pipeline
from immich_ml.schemas import Entry, parse_entries

STAGES = ("decode", "preprocess", "inference", "postprocess", "serialize")
OPENAI_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
OPENAI_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)


def preview_jpeg(path: Path, long_side: int = 1440) -> bytes:
    """What Immich's server sends: a JPEG preview with the long side at 1440 px (quality 80)."""
    img = Image.open(path).convert("RGB")
    scale = long_side / max(img.size)
    img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


def clip_reference(data: bytes, size: int = 224) -> np.ndarray:
    """Immich's CLIP preprocessing: PIL decode, bicubic short-side resize, centre crop, normalise."""
    img = Image.open(io.BytesIO(data))
    img.load()
    img = img.convert("RGB")
    w, h = img.size
    img = img.resize((size, int(h / w * size)) if w < h else (int(w / h * size), size), Image.Resampling.BICUBIC)
    left, top = int(img.size[0] / 2 - size / 2), int(img.size[1] / 2 - size / 2)
    img = img.crop((left, top, left + size, top + size))
    x = np.asarray(img, dtype=np.float32) / 255.0
    return ((x - OPENAI_MEAN) / OPENAI_STD).transpose(2, 0, 1)[None]


def scrfd_reference(data: bytes, size: int = 640) -> np.ndarray:
    """Immich's SCRFD preprocessing: PIL decode, cv2 letterbox (bilinear), (x-127.5)/128, NCHW."""
    import cv2

    img = Image.open(io.BytesIO(data))
    img.load()
    pixels = np.asarray(img.convert("RGB"))
    h, w = pixels.shape[:2]
    new_h, new_w = (size, int(size * w / h)) if h > w else (int(size * h / w), size)
    canvas = np.zeros((size, size, 3), dtype=np.uint8)
    canvas[:new_h, :new_w] = cv2.resize(pixels, (new_w, new_h))
    return ((canvas.astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1)[None]


def median_time(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(pipeline: Pipeline, entries: tuple[Entry, ...], data: bytes, repeat: int, warmup: int
            ) -> tuple[dict[str, float], float, float, dict[str, Any]]:
    """Median seconds per stage, median wall and CPU seconds per request (all threads), last answer."""
    response: dict[str, Any] = {}
    for _ in range(warmup):
        response = pipeline.predict(entries, image=data)
    per_stage: dict[str, list[float]] = {stage: [] for stage in STAGES}
    totals, cpu = [], []
    for _ in range(repeat):
        timings: dict[str, float] = {}
        start, start_cpu = time.perf_counter(), time.process_time()
        response = pipeline.predict(entries, image=data, timings=timings)
        totals.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        for stage in STAGES:
            per_stage[stage].append(timings.get(stage, 0.0))
    medians = {s: statistics.median(v) for s, v in per_stage.items()}
    return medians, statistics.median(totals), statistics.median(cpu), response


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=Path(".cache/models"))
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    starter.install(args.cache)
    photos = starter.photos(args.cache)
    pipeline = Pipeline(Settings(cache_folder=args.cache), Target())
    clip = parse_entries(json.dumps({"clip": {"visual": {"modelName": starter.CLIP_MODEL}}}))
    faces = parse_entries(json.dumps({"facial-recognition": {
        "detection": {"modelName": starter.FACE_MODEL, "options": {"minScore": 0.7}},
        "recognition": {"modelName": starter.FACE_MODEL}}}))
    cases = [
        ("clip visual ViT-B-32, 1440px JPEG preview", clip, preview_jpeg(photos["chelsea"]), clip_reference),
        ("faces scrfd_sface, astronaut 512px PNG", faces, photos["astronaut"].read_bytes(), scrfd_reference),
        ("faces scrfd_sface, Solvay 3000px JPEG", faces, photos["solvay"].read_bytes(), scrfd_reference),
    ]
    print(f"host: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; median of {args.repeat} runs "
          f"after {args.warmup} warm-up runs; milliseconds")
    header = "case".ljust(44) + "".join(s.rjust(12) for s in STAGES) + "total".rjust(10) + "cpu".rjust(10)
    header += "  answer"
    print(header)
    figures: dict[str, Any] = {}
    for label, entries, data, reference in cases:
        stages, total, cpu, response = measure(pipeline, entries, data, args.repeat, args.warmup)
        found = response.get("facial-recognition")
        answer = f"{len(found)} faces" if isinstance(found, list) else "1 embedding"
        print(label.ljust(44) + "".join(f"{stages[s] * 1e3:12.2f}" for s in STAGES)
              + f"{total * 1e3:10.1f}{cpu * 1e3:10.1f}  {answer}")
        ours = stages["decode"] + stages["preprocess"]
        theirs = median_time(lambda reference=reference, data=data: reference(data), args.repeat)  # type: ignore[misc]
        print(" " * 4 + f"decode+preprocess: ours {ours * 1e3:.2f} ms vs Immich-style reference "
              f"{theirs * 1e3:.2f} ms ({theirs / ours:.1f}x)")
        figures[label] = {"stages_ms": {s: stages[s] * 1e3 for s in STAGES}, "total_ms": total * 1e3, "cpu_ms": cpu * 1e3,
                          "reference_decode_preprocess_ms": theirs * 1e3, "answer": answer}
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    pipeline.close()


if __name__ == "__main__":
    main()
