"""``python -m immich_ml.bench``: end-to-end figures of the service against an Immich-style reference.

Modules: ``inputs`` (test JPEGs), ``reference``/``reference_faces`` (immich-machine-learning's way,
for the speed ratio), ``workloads``, ``runner`` (load and statistics), ``service`` (the HTTP
server under test), ``suite`` (one device/precision row), ``floor`` (matmul floor, model FLOPs),
``parity`` (accuracy of the fast paths), ``report`` (table, JSON, PNG).
"""
