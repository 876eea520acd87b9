"""What HTTP and the worker pool add on top of running the pipeline in-process.

Run: python benchmarks/bench_http_overhead.py [--runs N] [--cache DIR]

Three ways to answer the same request, same model, same input, same settings (CPU, one worker):

* **in-process**: ``Pipeline.predict`` called directly (the floor);
* **pool**: ``WorkerPool.predict`` from this process: pipe to a spawned worker and back;
* **HTTP + pool**: ``python -m immich_ml`` in a subprocess, the request sent as the exact bytes
  Node's fetch sends (undici multipart, keep-alive connection, as Immich's server does).

Cases: CLIP text embedding with ``ViT-tiny__nonsemantic``, and faces (SCRFD + SFace) on the
``astronaut`` photo (512×512 PNG, 0.8 MB). The paths take turns within each run so load from other
processes hits them alike; the table shows medians (and p90) of wall time. The target for the
added latency is 2 ms or 5 % of the in-process time, whichever is larger.

"added" is the median over rounds of (HTTP+pool − in-process), each round timing every path
back to back, so that load drifting on a shared machine cancels out. The script also reports CPU
time per request summed over every process a path uses (this one, the pool's worker, the service
and its worker), from ``/proc/<pid>/task/*/schedstat``.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import orjson

from immich_ml.backends.base import Target
from immich_ml.bench.immich_wire import undici_boundary, undici_multipart
from immich_ml.config import load_settings
from immich_ml.models import starter
from immich_ml.pipeline import Pipeline
from immich_ml.schemas import parse_entries
from immich_ml.workers.pool import WorkerPool

REPO = Path(__file__).resolve().parent.parent

TEXT_ENTRIES = '{"clip":{"textual":{"modelName":"ViT-tiny__nonsemantic","options":{"language":"en"}}}}'
FACE_ENTRIES = (
    '{"facial-recognition":{"detection":{"modelName":"scrfd_sface","options":{"minScore":0.7}},'
    '"recognition":{"modelName":"scrfd_sface"}}}'
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Service:
    """The real service in a subprocess and one keep-alive connection to it."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        full = {k: v for k, v in os.environ.items() if not k.startswith(("MACHINE_LEARNING_", "IMMICH_"))}
        full.update(env, IMMICH_HOST="127.0.0.1", IMMICH_PORT=str(self.port), IMMICH_LOG_LEVEL="warning")
        self.process = subprocess.Popen([sys.executable, "-m", "immich_ml"], env=full, cwd=REPO)
        self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        deadline = time.monotonic() + 180
        while True:
            try:
                self.connection.request("GET", "/ready")
                response = self.connection.getresponse()
                response.read()
                if response.status == 200:
                    break
            except OSError:
                self.connection.close()
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise SystemExit("the service did not become ready")
            time.sleep(0.1)

    def predict(self, fields: dict[str, str | bytes]) -> bytes:
        boundary = undici_boundary(random.Random(0))
        body = undici_multipart(fields, boundary)
        headers = {"content-type": f"multipart/form-data; boundary={boundary}", "accept": "*/*"}
        try:
            self.connection.request("POST", "/predict", body=body, headers=headers)
            response = self.connection.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # The server closed the connection after it sat idle (while other paths ran), as
            # a client that keeps connections alive sees it too: reconnect once.
            self.connection.close()
            self.connection.request("POST", "/predict", body=body, headers=headers)
            response = self.connection.getresponse()
        data = response.read()
        if response.status != 200:
            raise SystemExit(f"HTTP {response.status}: {data!r}")
        return data

    def pids(self) -> list[int]:
        self.connection.request("GET", "/health")
        response = self.connection.getresponse()
        workers = orjson.loads(response.read())["workers"]
        return [self.process.pid, *(int(w["pid"]) for w in workers)]

    def close(self) -> None:
        self.connection.close()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)


def cpu_ns(pids: list[int]) -> int:
    """CPU time consumed so far by every thread of ``pids`` (nanoseconds)."""
    total = 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (FileNotFoundError, ProcessLookupError):
                pass
    return total


class Timings(NamedTuple):
    samples: list[list[float]]  # wall ms per call, per path
    rounds: list[list[float]]  # median wall ms of each round, per path
    cpu_ms: list[float]  # mean CPU ms per call over the processes the path uses, per path


def timings(paths: list[tuple[Callable[[], object], list[int]]], runs: int, block: int = 5) -> Timings:
    """Time every path: rounds in which each path runs ``block`` calls in turn.

    Load on a shared machine drifts; comparing each round's medians (paths measured within
    moments of each other) and taking the median of those differences cancels the drift.
    A short pause precedes each block: ONNX Runtime's intra-op threads spin for a while after
    a run, and on a small machine the spinning of one path's session would otherwise slow down
    (and be billed to) the next path.
    """
    for path, _ in paths:
        for _ in range(3):
            path()  # warm-up: model loads, first-touch allocations, connection set-up
    samples: list[list[float]] = [[] for _ in paths]
    rounds: list[list[float]] = [[] for _ in paths]
    cpu = [0] * len(paths)
    for _ in range(max(1, runs // block)):
        for i, (path, pids) in enumerate(paths):
            time.sleep(0.02)
            before = cpu_ns(pids)
            block_ms = []
            for _ in range(block):
                started = time.perf_counter()
                path()
                block_ms.append((time.perf_counter() - started) * 1000)
            cpu[i] += cpu_ns(pids) - before
            samples[i] += block_ms
            rounds[i].append(statistics.median(block_ms))
    return Timings(samples, rounds, [c / len(samples[0]) / 1e6 for c in cpu])


def p90(values: list[float]) -> float:
    return sorted(values)[int(0.9 * (len(values) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--cache", type=Path, default=REPO / ".cache" / "models")
    args = parser.parse_args()
    starter.install(args.cache, only=["faces", "tiny-clip"])
    image = starter.photos(args.cache)["astronaut"].read_bytes()
    env = {
        "MACHINE_LEARNING_CACHE_FOLDER": str(args.cache),
        "MACHINE_LEARNING_DEVICE": "cpu",
        "MACHINE_LEARNING_WORKERS": "1",
        "MACHINE_LEARNING_MODEL_TTL": "0",
    }
    settings = load_settings(env)
    pipeline = Pipeline(settings, Target("cpu", "0"))
    pool = WorkerPool(settings)
    pool.start()
    service = Service(env)
    try:
        if not pool.wait_ready(180):
            raise SystemExit(f"pool not ready: {pool.snapshot()}")
        text, faces = parse_entries(TEXT_ENTRIES), parse_entries(FACE_ENTRIES)
        me = os.getpid()
        pool_pids = [me, *(int(s["pid"]) for s in pool.snapshot())]
        service_pids = [me, *service.pids()]
        cases = {
            "CLIP text (ViT-tiny)": (
                (lambda: pipeline.predict(text, text="a photo of an astronaut"), [me]),
                (lambda: pool.predict(text, text="a photo of an astronaut"), pool_pids),
                (lambda: service.predict({"entries": TEXT_ENTRIES, "text": "a photo of an astronaut"}), service_pids),
            ),
            "faces (astronaut 512x512 PNG)": (
                (lambda: pipeline.predict(faces, image=image), [me]),
                (lambda: pool.predict(faces, image=image), pool_pids),
                (lambda: service.predict({"entries": FACE_ENTRIES, "image": image}), service_pids),
            ),
        }
        print(f"runs={args.runs}, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        header = (
            "| case | in-process ms | pool ms | HTTP+pool ms (p90) | added ms (paired) | added % | target ms "
            "| met | CPU ms in-process / pool / HTTP+pool |"
        )
        print(header)
        print("|" + "---|" * (header.count("|") - 1))
        for name, paths in cases.items():
            measured = timings(list(paths), args.runs)
            inproc, pooled, http = (statistics.median(s) for s in measured.samples)
            added = statistics.median(h - i for h, i in zip(measured.rounds[2], measured.rounds[0], strict=True))
            target = max(2.0, 0.05 * inproc)
            cpu = " / ".join(f"{c:.2f}" for c in measured.cpu_ms)
            print(
                f"| {name} | {inproc:.2f} | {pooled:.2f} | {http:.2f} ({p90(measured.samples[2]):.2f}) | "
                f"{added:.2f} | {100 * added / inproc:.1f} | {target:.2f} | {'yes' if added <= target else 'no'} "
                f"| {cpu} |"
            )
    finally:
        service.close()
        pool.close()
        pipeline.close()


if __name__ == "__main__":
    main()
