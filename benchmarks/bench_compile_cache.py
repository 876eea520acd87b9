"""Load time of a model with a cold provider compile cache, after a restart, and after a TTL unload.

    .venv-openvino/bin/python benchmarks/bench_compile_cache.py [--device openvino|tensorrt|rocm]

Copies the starter ViT-B-32 into a temporary cache (so the cache folder starts empty), then loads
its image tower three times with ``MACHINE_LEARNING_DEVICE_STRICT``: cold, from a new manager (a
restart), and after ``unload`` in the same process (a TTL reload). The provider keeps its compiled
artefacts in ``<model>/visual/<provider>/``. Figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from immich_ml.backends.base import Target
from immich_ml.config import Settings
from immich_ml.models import starter
from immich_ml.models.cache import ModelStore
from immich_ml.models.catalog import resolve
from immich_ml.models.manager import ModelManager
from immich_ml.schemas import ModelTask, ModelType


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=Path(".cache/models"))
    parser.add_argument("--device", default="openvino")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="immich-ml-compile-cache-"))
    shutil.copytree(args.cache / "clip" / starter.CLIP_MODEL, work / "clip" / starter.CLIP_MODEL)
    settings = Settings(cache_folder=work, device=args.device, device_strict=True, warmup=False, model_ttl=0)
    spec = resolve(starter.CLIP_MODEL, ModelTask.SEARCH, ModelType.VISUAL)
    model = None
    for case in ("cold (empty cache)", "restart (cache present)", "reload after TTL unload"):
        if model is None or case.startswith("restart"):
            model = ModelManager(settings, Target(args.device, "0"), ModelStore(settings)).get(spec)
        else:
            model.unload(force=True)
        started = time.perf_counter()
        model.load()
        seconds = time.perf_counter() - started
        status = model.status(0)
        print(f"{case:<28} {seconds:6.2f} s  {status['provider']} {status['device']}")
        if case.startswith("cold"):
            model.unload(force=True)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
