"""The Serve application: one model deployment per group plus the HTTP ingress, from settings.

Per model deployment (``MACHINE_LEARNING_RAY_*``): ``num_cpus``/``num_gpus`` per replica,
autoscaling between ``MIN_REPLICAS`` and ``MAX_REPLICAS`` on ``TARGET_ONGOING_REQUESTS``,
``MAX_ONGOING_REQUESTS`` per replica with ``MACHINE_LEARNING_QUEUE_DEPTH`` waiting before a 503,
``MAX_REPLICAS_PER_NODE`` when set. Serve places replicas of a deployment on different nodes
when it can (its default spread scheduling); ``MAX_REPLICAS_PER_NODE`` makes that a rule.
"""

from __future__ import annotations

from typing import Any

from a2wsgi import WSGIMiddleware
from ray import serve
from ray.serve import Application

from immich_ml.config import Settings
from immich_ml.ray.dispatch import RayDispatch
from immich_ml.ray.replica import ModelReplica
from immich_ml.server.app import create_app
from immich_ml.workers.logs import configure_logging

APP_NAME = "immich_ml"
INGRESS_NAME = "ingress"


def deployment_name(group: str) -> str:
    """The Serve deployment of a model group, e.g. ``model-clip-visual``."""
    return f"model-{group}"


def model_options(settings: Settings, group: str) -> dict[str, Any]:
    """``serve.deployment`` options of ``group``'s model deployment."""
    ray = settings.ray
    options: dict[str, Any] = {
        "name": deployment_name(group),
        "ray_actor_options": {"num_cpus": ray.num_cpus, "num_gpus": ray.num_gpus},
        "autoscaling_config": {
            "min_replicas": ray.min_replicas,
            "initial_replicas": max(1, ray.min_replicas),
            "max_replicas": ray.max_replicas,
            "target_ongoing_requests": ray.target_ongoing_requests,
            "upscale_delay_s": ray.upscale_delay_s,
            "downscale_delay_s": ray.downscale_delay_s,
        },
        "max_ongoing_requests": ray.max_ongoing_requests,
        "max_queued_requests": settings.queue_depth,
        "health_check_period_s": 2.0,
        "health_check_timeout_s": 10.0,
        "graceful_shutdown_timeout_s": 5.0,
    }
    if ray.max_replicas_per_node is not None:
        options["max_replicas_per_node"] = ray.max_replicas_per_node
    return options


def ingress_concurrency(settings: Settings) -> int:
    """Requests one ingress replica handles at once: like a single host's threads + queue."""
    return max(1, settings.request_threads) + settings.queue_depth


@serve.ingress()
class Ingress:
    """The service's Flask app (parsing, validation, errors, health, metrics) over :class:`RayDispatch`."""

    def __init__(self, settings: Settings, handles: dict[str, Any]) -> None:
        configure_logging(settings.log_level_number, tag="ray ingress")
        self._settings = settings
        self._app = create_app(settings, RayDispatch(settings, handles))

    def __serve_build_asgi_app__(self) -> Any:
        # Flask is WSGI: a2wsgi runs it on a thread pool, where a blocking handle.result() is allowed.
        return WSGIMiddleware(self._app, workers=ingress_concurrency(self._settings))  # type: ignore[arg-type]


def build_application(settings: Settings) -> Application:
    """The bound Serve application for ``settings`` (deploy with ``serve.run``)."""
    handles = {
        group: serve.deployment(**model_options(settings, group))(ModelReplica).bind(settings, group)
        for group in settings.ray.groups
    }
    ingress = serve.deployment(
        name=INGRESS_NAME,
        num_replicas=settings.ray.ingress_replicas,
        ray_actor_options={"num_cpus": 0},
        max_ongoing_requests=ingress_concurrency(settings),
        max_queued_requests=settings.queue_depth,
    )(Ingress)
    application: Application = ingress.bind(settings, handles)
    return application
