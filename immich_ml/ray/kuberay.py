"""``import_path: immich_ml.ray.kuberay:app`` for a KubeRay ``RayService`` or ``serve run``.

The application :mod:`immich_ml.ray.__main__` deploys, built from the same settings (read once
here, through :mod:`immich_ml.config`); the HTTP host/port and proxy location come from the
Serve config instead (see docs/multi-machine.md).
"""

from __future__ import annotations

from ray.serve import Application

from immich_ml.config import load_settings
from immich_ml.ray.app import build_application

app: Application = build_application(load_settings())
