"""The spawn target of a worker process, kept free of heavy imports.

``multiprocessing`` pickles the target by module and name, so the parent must import the module
that defines it. This one imports nothing; the worker's own code (numpy, the runtimes, the
pipeline) loads only in the child.
"""

from __future__ import annotations

from multiprocessing.connection import Connection

from immich_ml.workers.protocol import WorkerSpec


def run_worker(spec: WorkerSpec, jobs: Connection, results: Connection) -> None:
    from immich_ml.workers.worker import worker_main

    worker_main(spec, jobs, results)
