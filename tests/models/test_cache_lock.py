"""Several worker processes share one model cache: locating (downloading) and clearing a model
must exclude each other across processes, not only across threads (``FolderLock``)."""

from __future__ import annotations

import multiprocessing
import traceback
from pathlib import Path

from fakehub import FakeHub

from immich_ml.config import Settings
from immich_ml.models.cache import ModelStore
from immich_ml.models.catalog import resolve
from immich_ml.schemas import ModelTask, ModelType

DETECTION = resolve("buffalo_l", ModelTask.FACIAL_RECOGNITION, ModelType.DETECTION)
# Big enough that a download takes a while, so the processes' steps overlap.
REPO = {
    "detection/model.onnx": bytes(range(256)) * 8192,
    "recognition/model.onnx": bytes(reversed(range(256))) * 8192,
}
PROCESSES, ROUNDS = 4, 12


def _race(settings: Settings, endpoint: str, rounds: int) -> str | None:
    """One worker: locate (downloading if cleared), check the bytes while holding the folder's
    lock, clear; repeat. Returns the first failure, or None."""
    store = ModelStore(settings, endpoint=endpoint)
    try:
        for _ in range(rounds):
            # Before the cross-process lock, another process's clear() removed the folder
            # mid-download here (ModelUnavailable "lacks ..." or a download error).
            store.locate(DETECTION, ())
            with store.lock(DETECTION):
                files = store.locate(DETECTION, ())
                data = files.artifacts().onnx.read_bytes()
                if data != REPO["detection/model.onnx"]:
                    return f"model.onnx has {len(data)} bytes, expected {len(REPO['detection/model.onnx'])}"
            store.clear(DETECTION)
    except Exception:  # noqa: BLE001 - reported to the parent as text
        return traceback.format_exc()
    return None


def test_processes_racing_on_one_cache_never_see_a_half_present_model(tmp_path: Path, fake_hub: FakeHub) -> None:
    fake_hub.add_repo("immich-app/buffalo_l", REPO)
    settings = Settings(cache_folder=tmp_path / "cache")
    context = multiprocessing.get_context("spawn")
    with context.Pool(PROCESSES) as pool:
        outcomes = pool.starmap(_race, [(settings, fake_hub.endpoint, ROUNDS)] * PROCESSES, chunksize=1)
    failures = [o for o in outcomes if o is not None]
    assert not failures, failures[0]
    assert len(fake_hub.downloaded()) >= PROCESSES  # they really downloaded, again and again
    assert (tmp_path / "cache" / ".locks").is_dir()  # the lock files stay outside the model folders


def test_the_lock_is_reentrant_in_one_thread(tmp_path: Path) -> None:
    store = ModelStore(Settings(cache_folder=tmp_path))
    with store.lock(DETECTION), store.lock(DETECTION):
        store.clear(DETECTION)  # takes the same lock again inside
    with store.lock(DETECTION):
        pass
