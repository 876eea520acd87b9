"""``python -m immich_ml.bench``: where the time goes, and how far ahead of immich-machine-learning.

For every available device kind and precision, and each workload (CLIP image, CLIP search text,
faces), it measures per-stage times, throughput and latency at several request concurrencies,
in-process and over HTTP against ``python -m immich_ml``, next to a reference pipeline built the
way immich-machine-learning does it on the same model files, in the same run.

    python -m immich_ml.bench [--quick] [--json out.json] [--plot out.png]

The table goes to stdout, the progress bar and logs to stderr. ``--quick`` runs the tiny CLIP
model on the previews only (a CI smoke test, not a figure).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from immich_ml.backends import registry
from immich_ml.bench import floor, goals, inputs, memory, parity, report, suite, text_images
from immich_ml.bench.reference import Reference
from immich_ml.bench.workloads import WORKLOADS, build_workloads
from immich_ml.config import MODEL_PRECISIONS, Settings, load_settings
from immich_ml.errors import ImmichMLError, SettingsError
from immich_ml.models import starter

ORT_KINDS = ("cpu", "openvino", "cuda", "rocm", "coreml")
_GPU_KINDS = frozenset({"cuda", "rocm", "openvino", "coreml"})


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _ints(text: str) -> tuple[int, ...]:
    values = tuple(int(part) for part in _csv(text))
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated non-negative integers, got {text!r}")
    return values


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m immich_ml.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, help="model cache (default: MACHINE_LEARNING_CACHE_FOLDER)")
    parser.add_argument("--quick", action="store_true", help="tiny CLIP, previews only, one round (smoke test)")
    parser.add_argument("--workloads", type=_csv, help=f"comma-separated, from {','.join(WORKLOADS)}")
    parser.add_argument("--clip-model", help=f"CLIP model name (default {starter.CLIP_MODEL})")
    parser.add_argument("--face-model", default=starter.FACE_MODEL, help="face model name")
    parser.add_argument("--ocr-model", default=starter.OCR_MODEL, help="OCR model name")
    parser.add_argument("--devices", type=_csv, help="device kinds (default: every available one of "
                        + ",".join(ORT_KINDS) + ")")
    parser.add_argument("--precisions", type=_csv, help="FP32,INT8,FP16 (default FP32 and INT8 on the CPU)")
    parser.add_argument("--intra-threads", type=_ints, default=(0,),
                        help="intra-op thread counts to compare, 0 = the service default (e.g. 0,1,2,4)")
    parser.add_argument("--concurrency", type=_ints, help="concurrent requests (default 1,2,4)")
    parser.add_argument("--rounds", type=int, help="alternating rounds per measurement (default 3)")
    parser.add_argument("--passes", type=int, help="passes over the inputs per run (default 2)")
    parser.add_argument("--no-phone", action="store_true", help="previews only, no 4000×3000 photos")
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP measurements")
    parser.add_argument("--url", help="measure this running service instead of starting one")
    parser.add_argument("--no-reference", action="store_true", help="skip the reference pipelines")
    parser.add_argument("--no-first-request", action="store_true",
                        help="skip the first-request times (after start / after a TTL unload)")
    parser.add_argument("--no-memory", action="store_true", help="skip the reference's memory probe")
    parser.add_argument("--parity", action="store_true",
                        help="also check fast_decode and INT8 answers against full decode / FP32")
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    parser.add_argument("--plot", type=Path, help="write a PNG plot here (needs matplotlib)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--verbose", action="store_true", help="log model loading and server start")
    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    if args.rounds is not None and args.rounds < 1 or args.passes is not None and args.passes < 1:
        parser.error("--rounds and --passes must be at least 1")
    if args.concurrency is not None and 0 in args.concurrency:
        parser.error("--concurrency values must be at least 1")
    unknown = [w for w in args.workloads or () if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s) {unknown}; choose from {', '.join(WORKLOADS)}")
    bad = [p for p in args.precisions or () if p.upper() not in MODEL_PRECISIONS]
    if bad:
        parser.error(f"unknown precision(s) {bad}; choose from {', '.join(MODEL_PRECISIONS)}")
    return args


def machine_info() -> dict[str, Any]:
    import numpy
    import onnxruntime

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_start": _load(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
    }


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def plan_rows(args: argparse.Namespace, settings: Settings) -> list[suite.Row]:
    """Rows to measure: device kinds × precisions that apply there × intra-op thread counts."""
    kinds = args.devices or [k for k in ORT_KINDS if registry.probe(k, settings).available]
    rows: list[suite.Row] = []
    for kind in kinds:
        wanted = [p.upper() for p in args.precisions] if args.precisions else (
            ["FP32", "INT8"] if kind == "cpu" and not args.quick else ["FP32"])
        for precision in wanted:
            if (precision == "INT8" and kind != "cpu") or (precision == "FP16" and kind not in _GPU_KINDS):
                continue  # the service would run FP32 there: a duplicate row
            rows.extend(suite.Row(kind, precision, threads) for threads in args.intra_threads)
    return rows


def _ensure_starter(cache: Path, clip_model: str, face_model: str, workloads: Sequence[str],
                    ocr_model: str = starter.OCR_MODEL) -> None:
    components = []
    if any(w.startswith("clip") for w in workloads):
        components += [c for c, name in (("clip", starter.CLIP_MODEL), ("tiny-clip", starter.TINY_CLIP_MODEL))
                       if name == clip_model]
    if "faces" in workloads and face_model == starter.FACE_MODEL:
        components.append("faces")
    if "ocr" in workloads and ocr_model == starter.OCR_MODEL:
        components.append("ocr")
    starter.install(cache, only=components)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        base = load_settings()
    except SettingsError as error:
        print(f"immich_ml.bench: {error.message}", file=sys.stderr)
        return 2
    cache = (args.cache or base.cache_folder).expanduser().resolve()
    quick = args.quick
    workload_names = args.workloads or (["clip-visual", "clip-textual"] if quick else list(WORKLOADS))
    clip_model = args.clip_model or (starter.TINY_CLIP_MODEL if quick else starter.CLIP_MODEL)
    plan = suite.Plan(
        concurrencies=args.concurrency or ((1, 2) if quick else (1, 2, 4)),
        rounds=args.rounds or (1 if quick else 3),
        passes=args.passes or (1 if quick else 2),
        http=not args.no_http,
        url=args.url,
        reference=not args.no_reference,
        first_request=not args.no_first_request,
    )
    try:
        return _run(args, base, cache, workload_names, clip_model, plan)
    except ImmichMLError as error:
        print(f"immich_ml.bench: {error.message}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, base: Settings, cache: Path, workload_names: Sequence[str],
         clip_model: str, plan: suite.Plan) -> int:
    from tqdm import tqdm

    _ensure_starter(cache, clip_model, args.face_model, workload_names, args.ocr_model)
    images = inputs.load_inputs(cache, starter.photos(cache), phones=not (args.no_phone or args.quick))
    workloads = build_workloads(workload_names, cache, clip_model=clip_model, face_model=args.face_model,
                                images=images, texts=inputs.SEARCH_TEXTS, ocr_model=args.ocr_model,
                                text_images=text_images.bench_images() if "ocr" in workload_names else ())
    rows = plan_rows(args, base)
    machine = machine_info()
    matmul = floor.matmul_floor(n=1024 if args.quick else 2048, repeats=3 if args.quick else 7)
    references: dict[str, Reference] = {w.name: w.reference() for w in workloads} if plan.reference else {}
    modes = len(suite.modes_of(plan))
    total = sum(suite.total_ticks(workloads, plan, modes) for _ in rows)
    results = []
    started = time.time()
    with tqdm(total=total, file=sys.stderr, unit="req", disable=args.no_progress, dynamic_ncols=True) as bar:
        for row in rows:
            settings = suite.row_settings(base, row, cache)
            results += suite.run_row(
                row, workloads, references, settings, plan, work_dir=cache / ".bench" / "logs",
                base_text_cache_size=base.text_cache_size,
                tick=lambda: bar.update(1), status=bar.set_description_str,
            )
    checks = []
    if args.parity:
        bar_status = "parity: fast_decode and INT8 vs FP32"
        print(bar_status, file=sys.stderr)
        checks = [c.to_json() for c in parity.run_checks(workloads, replace(base, cache_folder=cache))]
    peer = []
    if plan.reference and not args.no_memory:
        print("memory: the reference pipelines in a process of their own", file=sys.stderr)
        peer = memory.peer_memory(cache, clip_model, args.face_model, [w.name for w in workloads])
    machine["load_end"] = _load()
    gflops = {w.name: [floor.model_gflop(path) for path in w.model_files] for w in workloads}
    for result in results:
        result |= floor_figures(_gflop_per_request(result, gflops[result["workload"]]), matmul)
    doc = {
        "schema": report.SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": round(time.time() - started, 1),
        "command": ["python", "-m", "immich_ml.bench", *args.argv],
        "machine": machine,
        "floor": matmul.to_json(),
        "inputs": [image.describe() for image in images],
        "plan": {"concurrencies": list(plan.concurrencies), "rounds": plan.rounds, "passes": plan.passes,
                 "http": plan.http, "url": plan.url, "reference": plan.reference},
        "results": results,
        "summary": [report.summarize(r) for r in results],
        "parity": checks,
        "peer_memory": peer,
    }
    doc["goals"] = goals.check(doc)
    sys.stdout.write(report.format_text(doc))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    if args.plot:
        report.plot(doc, args.plot)
    return 0


def floor_figures(gflop: float | None, matmul: floor.MatmulFloor) -> dict[str, float | None]:
    """What the matrix throughput allows for ``gflop`` per request: ``floor_ms`` (latency with all
    cores at matmul speed), ``floor_cpu_ms`` (CPU-ms per request at the per-core rate; compare with
    ``cpu_ms_per_request``, which other processes on the machine barely change) and ``ceiling_rps``
    (requests per second with every core busy at that rate)."""
    if gflop is None or gflop <= 0:
        return {"gflop_per_request": None, "floor_ms": None, "floor_cpu_ms": None, "ceiling_rps": None}
    return {
        "gflop_per_request": round(gflop, 4),
        "floor_ms": round(gflop / matmul.gflops * 1000.0, 3),
        "floor_cpu_ms": round(gflop / matmul.gflops_per_core_cpu * 1000.0, 3),
        "ceiling_rps": round(matmul.threads * matmul.gflops_per_core_cpu / gflop, 3),
    }


def _gflop_per_request(result: dict[str, Any], per_model: list[float | None]) -> float | None:
    """GFLOP one request needs: the model's, or for faces detection + faces × recognition (mean)."""
    if any(g is None for g in per_model) or result["workload"] == "ocr":
        return None  # OCR: input sizes vary per image
    if result["workload"] != "faces":
        return per_model[0]
    detection, recognition = per_model[0], per_model[1]
    assert detection is not None and recognition is not None
    faces = result.get("faces_per_payload") or [0]
    return float(detection + recognition * sum(faces) / len(faces))


if __name__ == "__main__":
    sys.exit(main())
