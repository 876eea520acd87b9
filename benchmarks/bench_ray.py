"""Ray path vs the single-host service: per-request overhead (concurrency 1 and 4) and throughput
with 1 vs 2 model replicas. Figures, not pass/fail; every Ray row follows its own
single-host reference row, measured just before it in the same run.

    python benchmarks/bench_ray.py [--requests N] [--model ViT-B-32__nonsemantic]

Starts, one after the other on ephemeral loopback ports:
  * ``python -m immich_ml`` (1 CPU worker, 2 request threads): the reference;
  * a two-node Ray cluster on loopback (``ray start``, 3 logical CPUs each) and on it
    ``python -m immich_ml.ray`` with only the clip-visual deployment, first pinned to 1 replica,
    then to 2 (one per node);
and sends CLIP image requests (the starter photos, as Immich's server sends them) back to back
from 1 and 4 client threads. Always stops what it started (``ray stop --force`` last).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "server"))  # the Immich wire format + subprocess service
sys.path.insert(0, str(REPO / "tests" / "ray"))  # the loopback cluster used by the tests

from conftest import STEP_TIMEOUT_S, _ray, _ray_env, ray_stop  # noqa: E402
from immich_client import LiveService, free_port  # noqa: E402

from immich_ml.models import starter  # noqa: E402

CACHE = REPO / ".cache" / "models"
BASE_ENV = {
    "IMMICH_HOST": "127.0.0.1",
    "IMMICH_LOG_LEVEL": "warning",
    "MACHINE_LEARNING_CACHE_FOLDER": str(CACHE),
    "MACHINE_LEARNING_DEVICE": "cpu",
    "MACHINE_LEARNING_REQUEST_THREADS": "2",
    # Explicit: Ray sets OMP_NUM_THREADS=num_cpus in actors; both services get the same ORT pools.
    "MACHINE_LEARNING_MODEL_INTRA_OP_THREADS": "2",
}


def measure(service: LiveService, fields: dict[str, str | bytes], clients: int, total: int) -> tuple[float, float]:
    """(median latency ms, requests/s) for ``total`` requests from ``clients`` threads."""
    for _ in range(4):  # warm-up: models loaded, connections and caches hot
        assert service.predict(fields)[0] == 200
    latencies: list[float] = []

    def one(_: int) -> None:
        started = time.perf_counter()
        status, _, body = service.predict(fields)
        assert status == 200, body
        latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(total)))
    elapsed = time.perf_counter() - started
    return statistics.median(latencies) * 1000, total / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--model", default="ViT-B-32__nonsemantic")
    args = parser.parse_args()
    starter.install(CACHE)
    image = starter.photos(CACHE)["astronaut"].read_bytes()
    fields: dict[str, str | bytes] = {
        "entries": orjson.dumps({"clip": {"visual": {"modelName": args.model}}}).decode(), "image": image,
    }
    rows: list[tuple[str, int, float, float]] = []
    work = Path("/tmp") / f"bench_ray_{free_port()}"
    work.mkdir()

    # The reference runs beside the Ray service (idle while the other is measured) and is measured
    # again right before every Ray row, so both see the same load from the rest of the machine.
    single = LiveService({**BASE_ENV, "MACHINE_LEARNING_WORKERS": "1"}, work / "single.log")
    single.wait_ready(120)

    env = _ray_env(work)
    port = free_port()
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "3", "--num-gpus", "0",
              "--object-store-memory", str(80 * 2**20), "--disable-usage-stats"]
    try:
        assert _ray(["start", "--head", "--port", str(port), "--include-dashboard", "false",
                     "--temp-dir", str(work), *common], env).returncode == 0
        assert _ray(["start", "--address", f"127.0.0.1:{port}", *common], env).returncode == 0
        for replicas in (1, 2):
            ray_env = {
                **BASE_ENV, **{k: v for k, v in env.items() if k.startswith("RAY_")},
                "RAY_ADDRESS": f"127.0.0.1:{port}",
                "MACHINE_LEARNING_RAY_DEPLOYMENTS": "clip-visual",
                "MACHINE_LEARNING_RAY_PROXY_LOCATION": "HeadOnly",
                "MACHINE_LEARNING_RAY_MIN_REPLICAS": str(replicas),
                "MACHINE_LEARNING_RAY_MAX_REPLICAS": str(replicas),
                "MACHINE_LEARNING_RAY_MAX_REPLICAS_PER_NODE": "1",
            }
            service = LiveService(ray_env, work / f"ray{replicas}.log", module="immich_ml.ray")
            try:
                service.wait_ready(STEP_TIMEOUT_S)
                for clients in (1, 4):
                    rows.append(("single host (1 worker)", clients, *measure(single, fields, clients, args.requests)))
                    rows.append((f"Ray Serve, {replicas} replica(s)", clients,
                                 *measure(service, fields, clients, args.requests)))
            finally:
                service.stop(45)
    finally:
        single.stop()
        ray_stop(env)
        shutil.rmtree(work, ignore_errors=True)

    print(f"CLIP image ({args.model}, 512x512 PNG), {args.requests} requests per row")
    print(f"{'service':<28} {'clients':>7} {'p50 ms':>8} {'req/s':>7} {'p50 vs single':>14} {'req/s vs single':>16}")
    reference = rows[0]
    for name, clients, p50, rps in rows:
        if name.startswith("single"):
            reference = (name, clients, p50, rps)
        ref_p50, ref_rps = reference[2], reference[3]
        print(f"{name:<28} {clients:>7} {p50:>8.1f} {rps:>7.2f} {p50 / ref_p50:>13.2f}x {rps / ref_rps:>15.2f}x")


if __name__ == "__main__":
    main()
