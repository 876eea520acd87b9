"""Memory growth with varying face counts: batch = face count (Immich) vs fixed shape buckets.

Immich runs every face of an image through the recognizer in one batch, so each new face count is
a new input shape; ORT keeps per-shape allocations (memory-pattern cache, arena chunks) and the
footprint climbs (Immich #31675 on CUDA). immich_ml pads batches to a few fixed buckets.

Each configuration runs in its own process on an ArcFace-shaped recognizer
(``[batch,3,112,112] -> [batch,512]``, tests/backends/nets.py), face counts 1..40 twice, and
reports resident set size (RSS, from /proc/self/statm) after warm-up, at the end of the first
pass, at the end of the second pass, and the peak (ru_maxrss). ORT exposes no arena statistics
through its Python API, so RSS is the figure on CPU.

    .venv/bin/python benchmarks/bench_memory.py [--max-faces 40] [--width 32] [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BUCKETS = (1, 2, 4, 8, 16)
NAME = "input.1"
MODES = ("immich", "unbucketed", "bucketed+pat", "bucketed")
DESCRIPTION = {
    "immich": "plain ORT, Immich options (mem pattern on), batch = face count",
    "unbucketed": "immich_ml OrtSession, no buckets (mem pattern off), batch = face count",
    "bucketed+pat": "immich_ml OrtSession, buckets, but ORT's memory pattern left on",
    "bucketed": "immich_ml OrtSession, buckets 1/2/4/8/16 (padded, >16 in chunks of 16)",
}


def _nets() -> Any:
    spec = importlib.util.spec_from_file_location("nets", REPO / "tests" / "backends" / "nets.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def plan(count: int) -> list[tuple[int, int]]:
    """(real faces, bucket batch) runs for ``count`` faces: chunks of 16, the rest padded up."""
    runs = []
    while count > 0:
        real = min(count, BUCKETS[-1])
        runs.append((real, next(b for b in BUCKETS if b >= real)))
        count -= real
    return runs


def child(mode: str, arena: bool, model: Path, max_faces: int) -> dict[str, Any]:
    import onnxruntime as ort

    from immich_ml.backends import registry
    from immich_ml.backends.base import ModelArtifacts, SessionOptions, Target
    from immich_ml.config import Settings

    nets = _nets()
    faces = nets.faces(max_faces)
    settings = Settings(model_arena=arena)
    if mode == "immich":
        so = ort.SessionOptions()
        so.enable_cpu_mem_arena = arena
        so.intra_op_num_threads, so.inter_op_num_threads = 2, 1
        raw = ort.InferenceSession(
            str(model), so, providers=[("CPUExecutionProvider", {"arena_extend_strategy": "kSameAsRequested"})]
        )

        def infer(count: int) -> None:
            raw.run(None, {NAME: faces[:count]})

    else:
        if mode == "bucketed+pat":
            from immich_ml.backends import ort_options

            build = ort_options.session_options

            def with_pattern(*a: Any, **kw: Any) -> Any:
                so = build(*a, **kw)
                so.enable_mem_pattern = True
                return so

            ort_options.session_options = with_pattern
        bucketed = mode.startswith("bucketed")
        shapes = tuple({NAME: (b, 3, 112, 112)} for b in BUCKETS) if bucketed else ()
        artifacts = ModelArtifacts(directory=model.parent, onnx=model)
        session = registry.open_session(artifacts, settings, Target("cpu"), SessionOptions(shapes=shapes))

        def infer(count: int) -> None:
            runs = plan(count) if bucketed else [(count, count)]
            done = 0
            for real, batch in runs:
                with session.bind({NAME: (batch, 3, 112, 112)}) as call:
                    buf = call.inputs[NAME]
                    buf[:real] = faces[done : done + real]
                    buf[real:] = 0.0
                    call.run()
                done += real

    infer(1)
    baseline = rss_mb()
    trace = []
    start = time.perf_counter()
    for _ in range(2):
        for count in range(1, max_faces + 1):
            infer(count)
            trace.append(rss_mb())
    elapsed = time.perf_counter() - start
    return {
        "mode": mode,
        "arena": arena,
        "baseline_mb": baseline,
        "pass1_mb": trace[max_faces - 1],
        "pass2_mb": trace[-1],
        "peak_mb": peak_mb(),
        "growth_mb": trace[-1] - baseline,
        "seconds": elapsed,
        "trace_mb": trace,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-faces", type=int, default=40)
    parser.add_argument("--width", type=int, default=32, help="channel width of the recognizer")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", nargs=3, metavar=("MODE", "ARENA", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, arena, model = args.child
        print(json.dumps(child(mode, arena == "1", Path(model), args.max_faces)))
        return

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        model = _nets().arcface_like(Path(tmp) / "recognition" / "model.onnx", width=args.width)
        for arena in (False, True):
            for mode in MODES:
                out = subprocess.run(
                    [sys.executable, __file__, "--max-faces", str(args.max_faces),
                     "--child", mode, "1" if arena else "0", str(model)],
                    check=True, capture_output=True, text=True, cwd=REPO,
                )
                results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    import onnxruntime as ort

    print(f"onnxruntime {ort.__version__}, CPU, ArcFace-shaped recognizer (width {args.width}), "
          f"face counts 1..{args.max_faces} x 2 passes, RSS in MiB")
    print(f"{'arena':<6}{'mode':<14}{'after warm-up':>14}{'pass 1':>9}{'pass 2':>9}{'growth':>9}{'peak':>9}{'time s':>8}")
    for r in results:
        print(f"{'on' if r['arena'] else 'off':<6}{r['mode']:<14}{r['baseline_mb']:>14.1f}{r['pass1_mb']:>9.1f}"
              f"{r['pass2_mb']:>9.1f}{r['growth_mb']:>9.1f}{r['peak_mb']:>9.1f}{r['seconds']:>8.2f}")
    for mode in MODES:
        print(f"  {mode}: {DESCRIPTION[mode]}")
    print("time s: two passes of 1..40 faces; bucketed runs compute padded batches (~1.35x the faces)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
