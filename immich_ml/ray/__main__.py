"""``python -m immich_ml.ray``: deploy onto a Ray cluster and serve Immich's HTTP contract.

Joins the cluster at ``RAY_ADDRESS`` (starts a local one when unset), starts Serve's HTTP proxy on
``IMMICH_HOST:IMMICH_PORT`` (on every node, or the head only: ``MACHINE_LEARNING_RAY_PROXY_LOCATION``),
deploys :func:`immich_ml.ray.app.build_application` and stays in the foreground until SIGTERM or
SIGINT, then deletes the application and stops Serve, so no replica outlives the command.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any, cast

import ray
from ray import serve

import immich_ml
from immich_ml.config import Settings, load_settings
from immich_ml.errors import SettingsError
from immich_ml.ray.app import APP_NAME, build_application
from immich_ml.ray.health import BOARD_NAME, BOARD_NAMESPACE
from immich_ml.workers.logs import configure_logging

log = logging.getLogger("immich_ml.ray")

UNDEPLOY_TIMEOUT_S = 30.0


def local_cpus(settings: Settings) -> int:
    """Logical CPUs of a cluster started here: the machine's, or enough for every first replica."""
    needed = len(settings.ray.groups) * max(1, settings.ray.min_replicas) * settings.ray.num_cpus
    return max(os.cpu_count() or 1, math.ceil(needed))


def deploy(settings: Settings) -> None:
    """Start Serve with the service's HTTP options and run the application (returns when running)."""
    serve.start(
        proxy_location=settings.ray.proxy_location,
        http_options={
            "host": settings.bind_host,
            "port": settings.port,
            "keep_alive_timeout_s": settings.http_keepalive_timeout_s,
        },
    )
    serve.run(build_application(settings), name=APP_NAME, route_prefix="/", blocking=False)


def undeploy(timeout_s: float = UNDEPLOY_TIMEOUT_S) -> bool:
    """Delete the application, stop Serve (its proxies free the port), drop the health board.

    Bounded: when the cluster no longer answers (a node lost, its processes killed with this
    one's process group) it gives up after ``timeout_s`` and says so; returns whether it finished.
    """

    def run() -> None:
        try:
            serve.delete(APP_NAME)
        finally:
            cast(Any, serve).shutdown()
            try:
                ray.kill(ray.get_actor(BOARD_NAME, namespace=BOARD_NAMESPACE))
            except ValueError:
                pass

    worker = threading.Thread(target=run, name="undeploy", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        log.warning("The cluster did not confirm the shutdown within %.0f s; leaving it", timeout_s)
        return False
    return True


def _wait_for_signal() -> None:
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = load_settings()
    except SettingsError as error:
        print(f"immich_ml.ray: {error.message}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level_number)
    started = time.perf_counter()
    address = settings.ray.address
    log.info("Starting immich_ml %s on Ray %s (%s)", immich_ml.__version__, ray.__version__,
             f"cluster at {address}" if address else "local cluster")
    ray.init(
        address=address, namespace=BOARD_NAMESPACE, include_dashboard=False,
        logging_level=logging.WARNING, num_cpus=None if address else local_cpus(settings),
    )
    try:
        deploy(settings)
        where = f"[{settings.bind_host}]" if ":" in settings.bind_host else settings.bind_host
        log.info(
            "Listening on http://%s:%d through Ray Serve (%s proxies; deployments: %s) after %.1f s",
            where, settings.port, settings.ray.proxy_location, ", ".join(settings.ray.groups),
            time.perf_counter() - started,
        )
        _wait_for_signal()
        log.info("Shutting down")
    finally:
        undeploy()
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
