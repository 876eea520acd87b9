"""Scale-out on Ray Serve: the same HTTP contract, served by replicas spread over a Ray cluster.

``python -m immich_ml.ray`` (needs ``pip install 'immich-ml[ray]'``) deploys

* an ingress deployment that runs the service's own Flask app (:func:`immich_ml.server.app.create_app`:
  the same request parsing, validation, error mapping, ``/health`` and ``/metrics``) with a
  :class:`~immich_ml.ray.dispatch.RayDispatch` in place of the local worker pool, and
* one model deployment per group of :data:`immich_ml.config.RAY_GROUPS`, whose replicas run the
  existing :class:`immich_ml.pipeline.Pipeline` (models, backends, kernels) on their node's device.

Layering: this package sits above ``server`` (it builds the server's app), beside ``__main__``;
nothing under ``server``/``workers`` imports Ray. Only :mod:`.groups` is importable without Ray.
"""
