"""Resident memory of the service and of the Immich-style reference, per workload.

Ours: the ``python -m immich_ml`` process tree (service process + workers) after each workload
has run (models stay loaded: the bench runs with ``MODEL_TTL`` 0), so the last figure is the whole
service with every workload's models loaded. The reference runs in a child process of its own
(``python -m immich_ml.bench.memory``) that imports what immich-machine-learning imports, builds the
reference pipelines one workload after the other on the same model files and runs each once; it
has no web framework loaded, so its figure is a lower bound of Immich's.

``rss_mb`` is the sum of VmRSS over the processes (pages shared between them count twice);
``pss_mb`` the sum of their proportional set sizes (shared pages split), from
``/proc/<pid>/smaps_rollup``. Linux only; elsewhere the figures are ``None``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

_KB = 1024.0


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(child) for child in task.read_text().split()]
        except OSError:
            continue
    return found


def _field_kb(path: Path, name: str) -> int | None:
    try:
        for line in path.read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def process_tree_memory(pid: int) -> dict[str, Any] | None:
    """``{"rss_mb", "pss_mb", "processes"}`` of ``pid`` and its descendants; None if unreadable."""
    rss = pss = 0
    pss_known = True
    count = 0
    pending, seen = [pid], set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        value = _field_kb(Path(f"/proc/{current}/status"), "VmRSS")
        if value is None:
            if current == pid:
                return None
            continue
        rss += value
        count += 1
        proportional = _field_kb(Path(f"/proc/{current}/smaps_rollup"), "Pss")
        pss_known &= proportional is not None
        pss += proportional or 0
        pending += _children(current)
    return {
        "rss_mb": round(rss / _KB, 1),
        "pss_mb": round(pss / _KB, 1) if pss_known else None,
        "processes": count,
    }


def peer_memory(cache: Path, clip_model: str, face_model: str, workloads: Sequence[str],
                timeout_s: float = 600.0) -> list[dict[str, Any]]:
    """Run the reference pipelines in a child process; its memory after start-up and after each
    workload (cumulative), as ``[{"after": "start" | workload, "rss_mb", "pss_mb"}]``."""
    command = [sys.executable, "-m", "immich_ml.bench.memory", "--cache", str(cache), "--clip-model",
               clip_model, "--face-model", face_model, "--workloads", ",".join(workloads)]
    done = subprocess.run(command, capture_output=True, timeout=timeout_s, check=False)
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace")[-2000:]
        raise RuntimeError(f"the reference memory probe failed ({done.returncode}): {tail}")
    result: list[dict[str, Any]] = orjson.loads(done.stdout.splitlines()[-1])
    return result


def _probe(cache: Path, clip_model: str, face_model: str, workloads: Sequence[str]) -> list[dict[str, Any]]:
    import os

    from immich_ml.bench import inputs
    from immich_ml.bench.workloads import build_workloads
    from immich_ml.models import starter

    # What immich-machine-learning has imported before any model loads.
    import cv2  # noqa: F401
    import numpy  # noqa: F401
    import onnxruntime  # noqa: F401
    import PIL.Image  # noqa: F401
    import tokenizers  # noqa: F401

    images = inputs.load_inputs(cache, starter.photos(cache), phones=False)
    built = build_workloads(workloads, cache, clip_model=clip_model, face_model=face_model,
                            images=images, texts=inputs.SEARCH_TEXTS)
    steps = [{"after": "start", **(process_tree_memory(os.getpid()) or {})}]
    keep = []
    for workload in built:
        reference = workload.reference()
        for payload in workload.payloads[:2]:
            reference(payload, None)
        keep.append(reference)
        steps.append({"after": workload.name, **(process_tree_memory(os.getpid()) or {})})
    return steps


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m immich_ml.bench.memory",
                                     description="Memory of the reference pipelines (bench helper).")
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--clip-model", required=True)
    parser.add_argument("--face-model", required=True)
    parser.add_argument("--workloads", required=True)
    args = parser.parse_args(argv)
    steps = _probe(args.cache, args.clip_model, args.face_model, [w for w in args.workloads.split(",") if w])
    sys.stdout.write(orjson.dumps(steps).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
