"""OCR input shapes and memory over 100 varied images: upstream's per-image shapes vs immich_ml's buckets.

Upstream runs the detector at every image's own size (multiples of 32) and the recognizer at every
batch's own width, so a provider that compiles per shape (MIGraphX, OpenVINO GPU, TensorRT) compiles
again for almost every photo (upstream #29560), and ORT keeps per-shape allocation plans. immich_ml
pads to a small fixed set (immich_ml/models/ocr/buckets.py).

Each mode runs in its own process on the same 100 rendered images (random sizes 300-4000 px, both
orientations, 0-20 lines; immich_ml/bench/text_images.py) with Immich v3's default options, records
every input shape the ONNX Runtime sessions receive, and samples resident memory (RSS) after each
image: the memory curve.

* ``upstream``: the reference pipeline (Pillow/OpenCV/pyclipper/shapely + plain ORT sessions with
  Immich's options), immich_ml/bench/reference_ocr.py.
* ``immich_ml``: immich_ml's Pipeline on the same model files (CPU).

    .venv/bin/python benchmarks/bench_ocr_shapes.py [--images 100] [--json out.json] [--plot out.png]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MODES = ("upstream", "immich_ml")
MODEL = "PP-OCRv5_mobile"


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_mode(mode: str, count: int, cache: Path) -> dict[str, Any]:
    import orjson

    from immich_ml.bench.text_images import varied

    images = varied(count)
    shapes: dict[str, set[tuple[int, ...]]] = {"detection": set(), "recognition": set()}
    curve: list[float] = []
    texts = 0
    model_dir = cache / "ocr" / MODEL
    if mode == "upstream":
        from immich_ml.bench.reference_ocr import ReferenceOcr

        reference = ReferenceOcr(model_dir / "detection", model_dir / "recognition")
        for kind, session in (("detection", reference.detector), ("recognition", reference.recognizer)):
            _record(session, shapes[kind])

        def predict(data: bytes) -> dict[str, Any]:
            return reference(data)
    else:
        from immich_ml.backends import registry
        from immich_ml.backends.base import Target
        from immich_ml.config import Settings
        from immich_ml.pipeline import Pipeline
        from immich_ml.schemas import parse_entries

        real_open = registry.open_session

        def open_session(artifacts: Any, *args: Any, **kwargs: Any) -> Any:
            session = real_open(artifacts, *args, **kwargs)
            _record_bound(session, shapes[artifacts.directory.name])
            return session

        registry.open_session = open_session  # type: ignore[assignment]
        pipeline = Pipeline(Settings(cache_folder=cache, model_ttl=0), Target("cpu"))
        entries = parse_entries(orjson.dumps({"ocr": {
            "detection": {"modelName": MODEL, "options": {"minScore": 0.5, "maxResolution": 736}},
            "recognition": {"modelName": MODEL, "options": {"minScore": 0.8}},
        }}))

        def predict(data: bytes) -> dict[str, Any]:
            return pipeline.predict(entries, image=data)

    baseline = rss_mb()
    started = time.perf_counter()
    for image in images:
        texts += len(predict(image.data)["ocr"]["text"])
        curve.append(round(rss_mb(), 1))
    return {
        "mode": mode,
        "images": count,
        "texts": texts,
        "seconds": round(time.perf_counter() - started, 1),
        "rss_before_mb": round(baseline, 1),
        "rss_curve_mb": curve,
        "peak_mb": round(peak_mb(), 1),
        "detector_shapes": len(shapes["detection"]),
        "recognizer_shapes": len(shapes["recognition"]),
        "recognizer_widths": len({s[3] for s in shapes["recognition"]}),
    }


def _record(session: Any, seen: set[tuple[int, ...]]) -> None:
    """Wrap a plain ORT session's ``run`` to remember every input shape."""
    run = session.run

    def recording_run(outputs: Any, feeds: dict[str, Any], *args: Any) -> Any:
        for value in feeds.values():
            seen.add(tuple(value.shape))
        return run(outputs, feeds, *args)

    session.run = recording_run


def _record_bound(session: Any, seen: set[tuple[int, ...]]) -> None:
    bind = session.bind

    def recording_bind(shapes: Any) -> Any:
        for shape in shapes.values():
            seen.add(tuple(shape))
        return bind(shapes)

    session.bind = recording_bind


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--cache", type=Path, default=REPO / ".cache" / "models")
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(run_mode(args.mode, args.images, args.cache)))
        return 0
    results = []
    for mode in MODES:
        done = subprocess.run(
            [sys.executable, __file__, "--mode", mode, "--images", str(args.images), "--cache", str(args.cache)],
            capture_output=True, text=True, check=False,
        )
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return 1
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"{'mode':<11}{'det shapes':>11}{'rec shapes':>11}{'rec widths':>11}{'texts':>7}{'s':>7}"
          f"{'RSS@1':>8}{'@25':>7}{'@50':>7}{'@100':>7}{'peak':>7}  (MB)")
    for r in results:
        c = r["rss_curve_mb"]
        at = [c[min(i, len(c)) - 1] for i in (1, 25, 50, len(c))]
        print(f"{r['mode']:<11}{r['detector_shapes']:>11}{r['recognizer_shapes']:>11}{r['recognizer_widths']:>11}"
              f"{r['texts']:>7}{r['seconds']:>7}" + "".join(f"{v:>7.0f}" if i else f"{v:>8.0f}" for i, v in enumerate(at))
              + f"{r['peak_mb']:>7.0f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        for r in results:
            ax.plot(range(1, len(r["rss_curve_mb"]) + 1), r["rss_curve_mb"], label=r["mode"])
        ax.set_xlabel("images processed")
        ax.set_ylabel("RSS (MB)")
        ax.set_title(f"OCR memory over {args.images} varied images ({MODEL}, CPU)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=100)
    return 0


if __name__ == "__main__":
    sys.exit(main())
