"""A real two-node Ray cluster on loopback and ``python -m immich_ml.ray`` deployed onto it.

The cluster is small and bounded: a head and a second node started with ``ray start`` on
127.0.0.1 (3 logical CPUs each, no dashboard, no usage stats, 80 MB object stores), every step
under a timeout, and ``ray stop --force`` afterwards whatever happened, so no raylet outlives the
tests. Without Ray installed (``pip install 'immich-ml[ray]'``) these tests skip and say so.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SERVER_TESTS = Path(__file__).resolve().parent.parent / "server"
if str(SERVER_TESTS) not in sys.path:
    sys.path.insert(0, str(SERVER_TESTS))

from immich_client import LiveService, free_port  # noqa: E402

from immich_ml.models.starter import FACE_MODEL, TINY_CLIP_MODEL  # noqa: E402

RAY_CLI = Path(sys.executable).with_name("ray")
NODE_CPUS = 3
OBJECT_STORE_BYTES = 80 * 2**20
STEP_TIMEOUT_S = 90


@dataclass(frozen=True)
class Cluster:
    address: str
    env: dict[str, str]


def _ray_env(temp_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MACHINE_LEARNING_", "IMMICH_", "RAY_"))}
    env.update({
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_TMPDIR": str(temp_dir),
        # Token authentication would need the token in every client; the cluster is loopback only.
        "RAY_AUTH_MODE": "disabled",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def _ray(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(RAY_CLI), *args], env=env, capture_output=True, text=True, timeout=STEP_TIMEOUT_S
    )


def ray_stop(env: dict[str, str]) -> None:
    _ray(["stop", "--force"], env)


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'immich-ml[ray]'")
    pytest.importorskip("a2wsgi", reason="a2wsgi is not installed: pip install 'immich-ml[ray]'")
    if not RAY_CLI.exists():
        pytest.skip(f"the ray command is missing next to {sys.executable}")
    # Short path: Ray's socket names must stay under the 107-byte limit of AF_UNIX.
    temp_dir = Path(tmp_path_factory.mktemp("ray", numbered=True))
    short = Path("/tmp") / f"imr{os.getpid()}"
    short.symlink_to(temp_dir)
    env = _ray_env(short)
    port = free_port()
    common = [
        "--node-ip-address", "127.0.0.1", "--num-cpus", str(NODE_CPUS), "--num-gpus", "0",
        "--object-store-memory", str(OBJECT_STORE_BYTES), "--disable-usage-stats",
    ]
    try:
        head = _ray(["start", "--head", "--port", str(port), "--include-dashboard", "false",
                     "--temp-dir", str(short), *common], env)
        assert head.returncode == 0, head.stdout + head.stderr
        address = f"127.0.0.1:{port}"
        worker = _ray(["start", "--address", address, *common], env)
        assert worker.returncode == 0, worker.stdout + worker.stderr
        yield Cluster(address, env)
    finally:
        ray_stop(env)
        short.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def ray_service(
    ray_cluster: Cluster, starter_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveService]:
    """The service on the cluster: four model deployments, 1 → 2 replicas, one per node at most."""
    env = {
        **{k: v for k, v in ray_cluster.env.items() if k.startswith("RAY_")},
        "RAY_ADDRESS": ray_cluster.address,
        "IMMICH_HOST": "[::]",
        "IMMICH_LOG_LEVEL": "info",
        "MACHINE_LEARNING_CACHE_FOLDER": str(starter_cache),
        "MACHINE_LEARNING_DEVICE": "cpu",
        "MACHINE_LEARNING_REQUEST_THREADS": "2",
        "MACHINE_LEARNING_MODEL_INTRA_OP_THREADS": "1",
        "MACHINE_LEARNING_PRELOAD__CLIP__TEXTUAL": TINY_CLIP_MODEL,
        "MACHINE_LEARNING_WORKER_TIMEOUT": "60",
        "MACHINE_LEARNING_RAY_DEPLOYMENTS": "clip-textual,clip-visual,facial-recognition,ocr",
        "MACHINE_LEARNING_RAY_PROXY_LOCATION": "HeadOnly",
        "MACHINE_LEARNING_RAY_MIN_REPLICAS": "1",
        "MACHINE_LEARNING_RAY_MAX_REPLICAS": "2",
        "MACHINE_LEARNING_RAY_MAX_REPLICAS_PER_NODE": "1",
        "MACHINE_LEARNING_RAY_TARGET_ONGOING_REQUESTS": "1",
        "MACHINE_LEARNING_RAY_UPSCALE_DELAY_S": "1",
        "MACHINE_LEARNING_RAY_DOWNSCALE_DELAY_S": "600",
        "MACHINE_LEARNING_RAY_MAX_MODELS_PER_REPLICA": "1",
    }
    live = LiveService(env, tmp_path_factory.mktemp("ray-service") / "service.log", module="immich_ml.ray")
    try:
        live.wait_ready(timeout=STEP_TIMEOUT_S)
        yield live
    finally:
        code = live.stop(timeout=45)
        print(f"immich_ml.ray exited with {code}")
