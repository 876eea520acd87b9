"""Face alignment: the compiled kernel vs the OpenCV/numpy path Immich runs today.

Run: python benchmarks/bench_align.py [--runs N] [--faces N]

One 1440x1080 RGB photo-like image and 20 faces (5 landmarks each, 30-200 px wide, tilted up to
+-35 degrees, at random places) aligned into a (20, 3, 112, 112) float32 batch, (x - 127.5) / 127.5.
References, written here from what each does (OpenCV limited to one thread, like everything here):
  * umeyama + cv2: per face a numpy SVD Umeyama estimate (the fork's way), cv2.warpAffine to a
    112x112 uint8 crop (border 0), then one cv2.dnn.blobFromImages over the crops.
  * estimateAffinePartial2D + cv2: the same with cv2.estimateAffinePartial2D (LMEDS) for the
    transform.
  * skimage + cv2: insightface's norm_crop (what Immich runs): skimage SimilarityTransform
    estimate, cv2.warpAffine, blobFromImages.
immich_ml runs align_faces_into into a preallocated batch buffer (the engine hands it the
recognizer's bound input), float32 NCHW or uint8 NHWC, on the loop the CPU gets ("avx2" where it
has AVX2), and float32 once more on the portable loop (what CPUs without AVX2, e.g. ARM boards, run).
Each row prints the median of N runs, wall clock and CPU time; "x ref" is the fastest reference's
median CPU time divided by the row's, measured in the same run (cases take turns).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import cv2
import numpy as np
from numpy.typing import NDArray
from skimage.transform import SimilarityTransform

from immich_ml._core import _align
from immich_ml.ops.align import ARCFACE_TEMPLATE, align_faces_into
from _timing import medians_ms

TEMPLATE = ARCFACE_TEMPLATE.astype(np.float64)


def photo(h: int = 1080, w: int = 1440) -> NDArray[np.uint8]:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([xx / w * 255, yy / h * 255, (xx + yy) / (w + h) * 255], axis=-1)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def faces(count: int, h: int = 1080, w: int = 1440) -> NDArray[np.float32]:
    rng = np.random.default_rng(1)
    centred = TEMPLATE - TEMPLATE.mean(0)
    out = []
    for _ in range(count):
        size = rng.uniform(30, 200) / 40  # template eye-to-mouth span is ~40 px
        angle = np.deg2rad(rng.uniform(-35, 35))
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        centre = rng.uniform([150, 150], [w - 150, h - 150])
        out.append(centred @ rot.T * size + centre + rng.normal(0, 1.5, (5, 2)))
    return np.asarray(out, dtype=np.float32)


def umeyama(src: NDArray, dst: NDArray) -> NDArray:
    mu_s, mu_d = src.mean(0), dst.mean(0)
    sc, dc = src - mu_s, dst - mu_d
    u, s, vt = np.linalg.svd(dc.T @ sc / len(src))
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1
    rot = u @ np.diag(d) @ vt
    scale = (s * d).sum() / sc.var(axis=0).sum()
    return np.hstack([scale * rot, (mu_d - scale * rot @ mu_s)[:, None]])


def skimage_matrix(src: NDArray) -> NDArray:
    if hasattr(SimilarityTransform, "from_estimate"):  # scikit-image >= 0.26
        return SimilarityTransform.from_estimate(src, TEMPLATE).params[:2]
    tform = SimilarityTransform()
    tform.estimate(src, TEMPLATE)
    return tform.params[:2]


def reference(image: NDArray, landmarks: NDArray, estimate: Callable[[NDArray], NDArray]) -> NDArray:
    crops = [cv2.warpAffine(image, estimate(f), (112, 112), borderValue=0) for f in landmarks]
    return cv2.dnn.blobFromImages(crops, 1 / 127.5, (112, 112), (127.5, 127.5, 127.5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--faces", type=int, default=20)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    image, landmarks = photo(), faces(args.faces)
    as64 = landmarks.astype(np.float64)
    planar = np.empty((args.faces, 3, 112, 112), np.float32)
    interleaved = np.empty((args.faces, 112, 112, 3), np.uint8)

    def lmeds(f: NDArray) -> NDArray:
        return cv2.estimateAffinePartial2D(f, TEMPLATE, method=cv2.LMEDS)[0]

    references: list[tuple[str, Callable[[], object]]] = [
        ("umeyama + cv2", lambda: reference(image, as64, lambda f: umeyama(f, TEMPLATE))),
        ("estimateAffinePartial2D + cv2", lambda: reference(image, as64, lmeds)),
        ("skimage + cv2 (insightface)", lambda: reference(image, as64, skimage_matrix)),
    ]
    def portable(out: NDArray) -> None:
        previous = _align.set_vector_kernels(False)
        try:
            align_faces_into(image, landmarks, out)
        finally:
            _align.set_vector_kernels(previous)

    loop = _align.vector_kernels()
    ours: list[tuple[str, Callable[[], object]]] = [
        (f"immich_ml float32 NCHW ({loop})", lambda: align_faces_into(image, landmarks, planar)),
        (f"immich_ml uint8 NHWC ({loop})", lambda: align_faces_into(image, landmarks, interleaved)),
        ("immich_ml float32 NCHW (portable)", lambda: portable(planar)),
    ]
    rows = references + ours
    results = medians_ms([fn for _, fn in rows], args.runs)
    best = min(cpu for _, cpu in results[: len(references)])
    print(f"{args.faces} faces from a 1440x1080 image, median of {args.runs} runs")
    print(f"{'implementation':<36} {'wall ms':>9} {'cpu ms':>8} {'us/face':>8} {'x ref':>6}")
    for (name, _), (wall, cpu) in zip(rows, results):
        print(f"{name:<36} {wall:>9.3f} {cpu:>8.3f} {cpu * 1e3 / args.faces:>8.1f} {best / cpu:>6.1f}")


if __name__ == "__main__":
    main()
