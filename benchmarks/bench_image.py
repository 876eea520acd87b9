"""Image preprocessing: the compiled kernel vs what immich-machine-learning does today.

Run: python benchmarks/bench_image.py [--runs N]

Each row times one preprocessing of a 1440x1080 photo-sized RGB image into a model input and
prints the median of N runs, wall clock and CPU time; "x ref" is the reference's median divided by
the row's, measured in the same run (cases take turns). References:
  * CLIP (shortest, bicubic, 224): Immich's PIL path: Image.resize (short side 224) -> crop ->
    np.asarray(float32) / 255 -> (x - mean) / std -> transpose(2, 0, 1)[None].
  * SCRFD (letterbox, 640): Immich v3's OpenCV path: cv2.resize (INTER_LINEAR, no antialiasing)
    -> top-left of a zero 640x640 canvas -> cv2.dnn.blobFromImage((x - 127.5) / 128); ours writes
    the same values (resample="opencv_linear"). For comparison: ours with Pillow's antialiased
    bilinear (the detector's input before v3), and PIL resize + paste + numpy.
The reference starts from the decoded PIL image (what Immich holds), ours from the decoded array.
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from immich_ml.ops.image import Resample, decode_image, resize_normalize_into
from _timing import medians_ms

MEAN = np.asarray([0.48145466, 0.4578275, 0.40821073], np.float32)
STD = np.asarray([0.26862954, 0.26130258, 0.27577711], np.float32)
MEAN_T = (0.48145466, 0.4578275, 0.40821073)
STD_T = (0.26862954, 0.26130258, 0.27577711)


def photo(h: int = 1080, w: int = 1440) -> NDArray[np.uint8]:
    """A photo-like test image: smooth gradients plus mild noise (timing does not depend on it)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([xx / w * 255, yy / h * 255, (xx + yy) / (w + h) * 255], axis=-1)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def clip_reference(pil: Image.Image) -> NDArray[np.float32]:
    s = 224
    if pil.width < pil.height:
        resized = pil.resize((s, int(pil.height / pil.width * s)), Image.Resampling.BICUBIC)
    else:
        resized = pil.resize((int(pil.width / pil.height * s), s), Image.Resampling.BICUBIC)
    left, top = int(resized.width / 2 - s / 2), int(resized.height / 2 - s / 2)
    cropped = resized.crop((left, top, left + s, top + s))
    x = np.asarray(cropped, dtype=np.float32) / 255.0
    x = ((x - MEAN) / STD).astype(np.float32, copy=False)
    return np.expand_dims(x.transpose(2, 0, 1), 0)


def letterbox_size(h: int, w: int, size: int = 640) -> tuple[int, int]:
    if h / w > 1.0:
        return int(size / (h / w)), size
    return size, int(size * (h / w))


def letterbox_pil_reference(pil: Image.Image) -> NDArray[np.float32]:
    nw, nh = letterbox_size(pil.height, pil.width)
    canvas = Image.new("RGB", (640, 640))
    canvas.paste(pil.resize((nw, nh), Image.Resampling.BILINEAR), (0, 0))
    x = (np.asarray(canvas, dtype=np.float32) - 127.5) / 128.0
    return np.expand_dims(x.transpose(2, 0, 1), 0)


def letterbox_cv2_reference(img: NDArray[np.uint8]) -> NDArray[np.float32]:
    import cv2

    nw, nh = letterbox_size(*img.shape[:2])
    canvas = np.zeros((640, 640, 3), np.uint8)
    canvas[:nh, :nw] = cv2.resize(img, (nw, nh))
    blob = cv2.dnn.blobFromImage(canvas, 1.0 / 128, (640, 640), (127.5, 127.5, 127.5))
    return np.asarray(blob, dtype=np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    img = photo()
    pil = Image.fromarray(img)
    clip_out = np.zeros((1, 3, 224, 224), np.float32)
    clip_u8 = np.zeros((1, 224, 224, 3), np.uint8)
    det_out = np.zeros((1, 3, 640, 640), np.float32)
    Timing = tuple[float, float]
    rows: list[tuple[str, Timing, Timing | None]] = []

    def section(reference: tuple[str, Callable[[], object]], cases: list[tuple[str, Callable[[], object]]]) -> None:
        ref_ms, *case_ms = medians_ms([reference[1]] + [fn for _, fn in cases], args.runs)
        rows.append((reference[0], ref_ms, None))
        rows.extend((name, ms, ref_ms) for (name, _), ms in zip(cases, case_ms))

    def ours_clip() -> object:
        return resize_normalize_into(img, clip_out, 0, size=(224, 224), mode="shortest", resample="bicubic",
                                     mean=MEAN_T, std=STD_T)

    def ours_det(resample: Resample) -> Callable[[], object]:
        return lambda: resize_normalize_into(img, det_out, 0, size=(640, 640), mode="letterbox", resample=resample,
                                             mean=(127.5,) * 3, std=(128.0,) * 3, scale=1.0)

    section(("CLIP 224 reference: PIL resize+crop, numpy normalize", lambda: clip_reference(pil)), [
        ("CLIP 224 ours float32 NCHW", ours_clip),
        ("CLIP 224 ours uint8 NHWC",
         lambda: resize_normalize_into(img, clip_u8, 0, size=(224, 224), mode="shortest")),
    ])
    import cv2

    cv2.setNumThreads(1)
    section(("SCRFD 640 reference: Immich v3, cv2.resize + blobFromImage", lambda: letterbox_cv2_reference(img)), [
        ("SCRFD 640 ours opencv_linear float32 NCHW (= v3)", ours_det("opencv_linear")),
        ("SCRFD 640 ours Pillow bilinear float32 NCHW (before)", ours_det("bilinear")),
        ("SCRFD 640 PIL resize+paste, numpy normalize", lambda: letterbox_pil_reference(pil)),
    ])

    big = photo(3000, 4000)
    big_pil = Image.fromarray(big)
    section(("CLIP 224 from 4000x3000 (12 MP) reference: PIL + numpy", lambda: clip_reference(big_pil)), [
        ("CLIP 224 from 4000x3000 ours",
         lambda: resize_normalize_into(big, clip_out, 0, size=(224, 224), mode="shortest", mean=MEAN_T, std=STD_T)),
    ])

    buf = io.BytesIO()
    pil.save(buf, "JPEG", quality=90)
    jpeg = buf.getvalue()
    section(("decode 1440x1080 JPEG reference: PIL open+convert+asarray",
             lambda: np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))), [
        ("decode_image full size", lambda: decode_image(jpeg)),
        ("decode_image min_side=224 (DCT 1/4)", lambda: decode_image(jpeg, min_side=224)),
        ("decode_image min_side=640 (DCT 1/1)", lambda: decode_image(jpeg, min_side=640)),
    ])

    width = max(len(r[0]) for r in rows)
    print(f"{'case':<{width}}  {'wall ms':>8}  {'x ref':>6}  {'cpu ms':>8}  {'x ref':>6}")
    for name, (wall, cpu), base in rows:
        wall_x = f"{base[0] / wall:6.2f}" if base is not None else "     -"
        cpu_x = f"{base[1] / cpu:6.2f}" if base is not None else "     -"
        print(f"{name:<{width}}  {wall:8.3f}  {wall_x}  {cpu:8.3f}  {cpu_x}")


if __name__ == "__main__":
    main()
