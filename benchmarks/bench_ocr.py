"""OCR pre/post-processing: the compiled kernels (immich_ml.ops.ocr) vs the Python/OpenCV/pyclipper/
shapely steps Immich v3 (RapidOCR 3.x) runs, on realistic sizes, in the same run.

Run: python benchmarks/bench_ocr.py [--runs N]

Cases:
  * det input: a 1440x1080 photo -> 992x736 (Pillow LANCZOS, BGR, normalise) into the bound input.
  * DB fast / DB slow: the probability map of a rendered ~15-line page (960x736), post-processed
    end to end (binarize, dilate, contours, rects, scores, unclip, scale, order, sort).
  * rec batches: 20 text quads of a 1440x1080 photo cut, rotated, resized and normalised into
    batches of 6 (4 batches), as RapidOCR's get_rotate_crop_image + resize_norm_img do.
  * CTC: greedy decoding of 6 rows x 40 steps x 18,385 classes (PP-OCRv5's charset).
The references are tests/ops/ocr_reference.py (the independent implementations the tests compare
against). Each row: median wall and CPU ms of N interleaved runs (OpenCV limited to one thread);
"x ref" = the reference's median CPU time / the kernel's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from immich_ml.ops import ocr
from _timing import medians_ms

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "ops"))
import ocr_reference as ref  # noqa: E402


def photo(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (135, 180, 3), dtype=np.uint8)
    return cv2.resize(small, (1440, 1080), interpolation=cv2.INTER_CUBIC)


def page_map() -> np.ndarray:
    img = Image.new("L", (736, 960), 0)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=28)
    for i in range(15):
        draw.text((30 + 7 * (i % 3), 20 + 62 * i), f"Line {i}: the quick brown fox {i * 37}", 255, font=font)
    prob = cv2.GaussianBlur(np.asarray(img, np.float32) / 255.0, (0, 0), 4) * 3.0
    return np.clip(prob, 0, 1).astype(np.float32)


def quads(n: int = 20, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        size = (rng.uniform(120, 600), rng.uniform(28, 64))
        if i % 7 == 6:
            size = (size[1], size[0])
        centre = (rng.uniform(320, 1120), rng.uniform(80, 1000))
        out.append(cv2.boxPoints((centre, size, rng.uniform(-10, 10))))
    return np.array(out, np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    cv2.setNumThreads(1)

    image = photo()
    rh, rw = ocr.det_input_size(1080, 1440, 736)
    det_out = np.zeros((1, 3, rh, rw), np.float32)
    prob = page_map()

    boxes = quads()
    sizes = ocr.crop_sizes(1080, 1440, boxes)
    order = np.argsort(sizes[:, 0] / sizes[:, 1], kind="stable")
    batches = [order[i : i + 6] for i in range(0, len(order), 6)]
    widths = [int(48 * max(320 / 48, max(sizes[j, 0] / sizes[j, 1] for j in b))) for b in batches]
    rec_out = np.zeros((6, 3, 48, max(widths)), np.float32)

    def rec_kernel() -> None:
        for b, w in zip(batches, widths):
            ocr.rec_batch_into(image, boxes[b], rec_out, w)

    def rec_reference() -> None:
        for b, w in zip(batches, widths):
            ref.rec_batch(image, boxes[b], 6, w, w)

    rng = np.random.default_rng(2)
    logits = rng.normal(0, 2, (6, 40, 18385)).astype(np.float32)
    logits[:, :, 0] += 6
    logits[:, ::3, :].reshape(-1)[:: 18385 // 7] += 20
    probs = (np.exp(logits - logits.max(-1, keepdims=True)))
    probs = (probs / probs.sum(-1, keepdims=True)).astype(np.float32)
    charset = ["blank"] + [chr(0x4E00 + i) for i in range(18383)] + [" "]

    cases = [
        ("det input 1440x1080 -> 992x736",
         lambda: ocr.det_preprocess_into(image, det_out, rh, rw), lambda: ref.det_input(image, rh, rw)),
        ("DB fast, 15-line page", lambda: ocr.db_boxes(prob, 1080, 828), lambda: ref.db_boxes(prob, 1080, 828)),
        ("DB slow, 15-line page", lambda: ocr.db_boxes(prob, 1080, 828, score_mode="slow"),
         lambda: ref.db_boxes(prob, 1080, 828, score_mode="slow")),
        ("rec: 20 crops, batches of 6", rec_kernel, rec_reference),
        ("CTC 6x40x18385", lambda: ocr.ctc_greedy_decode(probs, charset), lambda: ref.ctc_decode(probs, charset)),
    ]
    fns = [f for _, k, r in cases for f in (k, r)]
    times = medians_ms(fns, args.runs)
    print(f"{'case':34} {'kernel wall/cpu ms':>20} {'reference wall/cpu ms':>23} {'x ref':>7}")
    for i, (name, _, _) in enumerate(cases):
        (kw, kc), (rw_, rc) = times[2 * i], times[2 * i + 1]
        print(f"{name:34} {kw:9.2f} / {kc:8.2f} {rw_:11.2f} / {rc:9.2f} {rc / kc:7.1f}")


if __name__ == "__main__":
    main()
