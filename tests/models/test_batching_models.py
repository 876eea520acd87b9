"""Cross-request batching, OOM recovery and warm-up inside real models (the starter CLIP, SCRFD and
SFace on the CPU): results identical to running alone, runs shared, failures contained."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from model_testing import RecordingSession

from immich_ml.backends import registry
from immich_ml.backends.base import Placement, Target
from immich_ml.config import Settings
from immich_ml.errors import AcceleratorOutOfMemory
from immich_ml.models.catalog import resolve
from immich_ml.pipeline import Pipeline
from immich_ml.schemas import ModelTask, ModelType, parse_entries

# Real text of ORT's CUDA provider when its arena cannot grow (onnxruntime/core/framework/bfc_arena.cc).
CUDA_OOM = ("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned while running Conv node. "
            "Name:'conv1' Status Message: /onnxruntime_src/onnxruntime/core/framework/bfc_arena.cc:376 "
            "void* onnxruntime::BFCArena::AllocateRawInternal(size_t, bool, onnxruntime::Stream*, bool, "
            "onnxruntime::WaitNotificationFn) Failed to allocate memory for requested buffer of size 411041792")


@pytest.fixture(scope="module")
def batch_cache(starter_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The starter models, with the tiny CLIP's batch axis made symbolic (SFace's already is)."""
    from immich_ml.bench.batchable import batchable_cache
    from immich_ml.models.starter import TINY_CLIP_MODEL

    return batchable_cache(starter_cache, tmp_path_factory.mktemp("batch-cache"), (TINY_CLIP_MODEL,))


def entries(raw: dict[str, Any]) -> Any:
    return parse_entries(json.dumps(raw))


def clip_visual() -> Any:
    from immich_ml.models.starter import TINY_CLIP_MODEL

    return entries({"clip": {"visual": {"modelName": TINY_CLIP_MODEL}}})


def clip_textual() -> Any:
    from immich_ml.models.starter import TINY_CLIP_MODEL

    return entries({"clip": {"textual": {"modelName": TINY_CLIP_MODEL}}})


def faces() -> Any:
    from immich_ml.models.starter import FACE_MODEL

    return entries({"facial-recognition": {"detection": {"modelName": FACE_MODEL, "options": {"minScore": 0.5}},
                                           "recognition": {"modelName": FACE_MODEL}}})


def cosine(a: str, b: str) -> float:
    x, y = np.array(json.loads(a)), np.array(json.loads(b))
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))


@contextmanager
def pipeline(cache: Path, **changes: Any) -> Iterator[Pipeline]:
    engine = Pipeline(replace(Settings(cache_folder=cache, warmup=False), **changes), Target())
    try:
        yield engine
    finally:
        engine.close()


def concurrently(engine: Pipeline, jobs: list[tuple[Any, dict[str, Any]]]) -> list[dict[str, Any]]:
    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(lambda job: engine.predict(job[0], **job[1]), jobs))


def batch_rows(session: RecordingSession) -> list[int]:
    return [next(iter(r.values())).shape[0] for r in session.recorded]


def test_clip_images_of_concurrent_requests_share_runs_and_match_running_alone(
    batch_cache: Path, photos: dict[str, Path], recording: list[RecordingSession]
) -> None:
    images = [photos[name].read_bytes() for name in ("astronaut", "camera", "chelsea", "coffee", "newton", "gauss")]
    with pipeline(batch_cache, batch_wait_ms=300.0) as engine:
        engine.predict(clip_visual(), image=images[0])  # load outside the timed window
        batched = concurrently(engine, [(clip_visual(), {"image": data}) for data in images])
        stats = engine.status()[0]["batching"]
    sizes = batch_rows(recording[0])[1:]
    assert sum(sizes) >= len(images) and len(sizes) < len(images) and max(sizes) > 1, sizes
    assert stats["items"] == len(images) + 1 and stats["batches"] < len(images) + 1
    with pipeline(batch_cache, batch_wait_ms=0.0) as alone:
        for data, got in zip(images, batched, strict=True):
            assert cosine(alone.predict(clip_visual(), image=data)["clip"], got["clip"]) >= 0.9999


def test_face_crops_of_concurrent_requests_share_runs_with_the_same_boxes(
    batch_cache: Path, photos: dict[str, Path], recording: list[RecordingSession]
) -> None:
    images = [photos[name].read_bytes() for name in ("astronaut", "solvay", "newton", "gauss")]
    with pipeline(batch_cache, batch_wait_ms=0.0) as alone:
        expected = [alone.predict(faces(), image=data) for data in images]
    recording.clear()
    with pipeline(batch_cache, batch_wait_ms=300.0) as engine:
        engine.predict(faces(), image=images[0])
        batched = concurrently(engine, [(faces(), {"image": data}) for data in images])
    recognizer = next(s for s in recording if s.inputs[0].shape[-1] == 112)
    total = sum(len(r["facial-recognition"]) for r in expected)
    sizes = batch_rows(recognizer)
    assert total > len(images)
    # Alone, each request runs its own crops; batched, crops of different photos share runs.
    assert len(sizes) - 1 < sum(len(_plan(len(r["facial-recognition"]))) for r in expected), sizes
    for want, got in zip(expected, batched, strict=True):
        a, b = want["facial-recognition"], got["facial-recognition"]
        assert [f["boundingBox"] for f in a] == [f["boundingBox"] for f in b]
        assert all(cosine(x["embedding"], y["embedding"]) >= 0.9999 for x, y in zip(a, b, strict=True))


def _plan(count: int) -> list[tuple[int, int]]:
    from immich_ml.models.batching import batch_sizes, plan_runs

    return plan_runs(count, batch_sizes(16), pad=False)


def test_clip_text_batches_only_when_asked(batch_cache: Path) -> None:
    texts = ["a cat", "a dog on a sofa", "mountains at dawn", "two people"]
    with pipeline(batch_cache) as default:
        alone = [default.predict(clip_textual(), text=t)["clip"] for t in texts]
        assert default.status()[0]["batching"] is None  # off by default: search is interactive
    with pipeline(batch_cache, batch_wait_ms=300.0) as engine:
        got = concurrently(engine, [(clip_textual(), {"text": t}) for t in texts])
        stats = engine.status()[0]["batching"]
    assert stats["batches"] < len(texts)
    assert all(cosine(a, b["clip"]) >= 0.9999 for a, b in zip(alone, got, strict=True))


# --- out of accelerator memory ----------------------------------------------------------------------


class OomSession:
    """A real CPU session dressed as a CUDA one that runs out of memory above ``limit`` rows,
    raising what the ORT backend raises for CUDA's real error text."""

    def __init__(self, session: Any, limit: int) -> None:
        self._session = session
        self.limit = limit
        self.failed: list[int] = []
        self.ran: list[int] = []
        self.placement = Placement("onnxruntime", "CUDAExecutionProvider", "cuda:0", "cuda:0")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    @contextmanager
    def bind(self, shapes: Mapping[str, tuple[int, ...]]) -> Iterator[Any]:
        owner = self
        rows = next(iter(shapes.values()))[0]

        class Call:
            def __init__(self, call: Any) -> None:
                self._call = call
                self.inputs = call.inputs

            def run(self) -> Any:
                if rows > owner.limit:
                    owner.failed.append(rows)
                    raise AcceleratorOutOfMemory(f"CUDAExecutionProvider ran out of memory: {CUDA_OOM}")
                owner.ran.append(rows)
                return self._call.run()

        with self._session.bind(shapes) as call:
            yield Call(call)


@pytest.fixture
def oom_sessions(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Models opened for a ``cuda`` target get an OomSession; the CPU fallback gets a real session."""
    opened: list[Any] = []
    real = registry.open_session

    def open_session(artifacts: Any, settings: Settings, target: Target, options: Any) -> Any:
        session = real(artifacts, settings, Target("cpu", target.device_id), options)
        if target.kind == "cuda":
            session = OomSession(session, limit=1 << 30)
        opened.append(session)
        return session

    monkeypatch.setattr(registry, "open_session", open_session)
    return opened


def cuda_pipeline(batch_cache: Path, **changes: Any) -> Pipeline:
    settings = replace(Settings(cache_folder=batch_cache, warmup=False, batch_wait_ms=0.0), **changes)
    return Pipeline(settings, Target("cuda", "0"))


def seven_faces() -> tuple[Any, Any]:
    """A textured image and seven ArcFace-template faces on it (recognition only: no detector run)."""
    from immich_ml.ops.align import ARCFACE_TEMPLATE
    from immich_ml.ops.detect import Detections

    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (400, 400, 3), dtype=np.uint8)
    landmarks = np.stack([ARCFACE_TEMPLATE * rng.uniform(0.7, 1.3) + rng.uniform(20, 220, 2)
                          for _ in range(7)]).astype(np.float32)
    boxes = np.concatenate([landmarks.min(axis=1) - 10, landmarks.max(axis=1) + 10], axis=1).astype(np.float32)
    return image, Detections(boxes, np.full(7, 0.9, np.float32), landmarks)


@pytest.mark.parametrize(("limit", "on_cpu"), [(2, False), (0, True)])
def test_oom_halves_the_batch_then_runs_on_the_cpu(
    batch_cache: Path, oom_sessions: list[Any], limit: int, on_cpu: bool
) -> None:
    from immich_ml.models.base import ModelRequest
    from immich_ml.models.starter import FACE_MODEL
    from immich_ml.models.timing import Stages

    image, found = seven_faces()
    engine = cuda_pipeline(batch_cache)
    try:
        model = engine.manager.get(resolve(FACE_MODEL, ModelTask.FACIAL_RECOGNITION, ModelType.RECOGNITION))
        # An accelerator pads to the bucket: 7 faces run as one batch of 8.
        expected = model.predict(ModelRequest(image=image, upstream=found), Stages())
        (recognizer,) = [s for s in oom_sessions if isinstance(s, OomSession)]
        assert recognizer.ran == [8] and not recognizer.failed
        recognizer.limit = limit
        got = model.predict(ModelRequest(image=image, upstream=found), Stages())
        status = model.status(0)
    finally:
        engine.close()
    assert [f["boundingBox"] for f in got] == [f["boundingBox"] for f in expected]
    assert all(cosine(a["embedding"], b["embedding"]) >= 0.9999 for a, b in zip(expected, got, strict=True))
    oom = status["oom"]
    assert oom["events"] == len(recognizer.failed) > 0 and "out of memory" in oom["last"]
    assert status["provider"] == "CUDAExecutionProvider"  # the model stays on its device
    if on_cpu:  # every GPU attempt failed: 8 → 4 → 2 → 1 → CPU
        assert recognizer.ran == [8] and oom["cpu_runs"] > 0 and oom["cpu_session"]
    else:  # 8 fails, then 4 + 3 (padded to 4) fail, then the same faces run in runs of 2 on the GPU
        assert recognizer.failed == [8, 4, 4] and recognizer.ran[1:] == [2, 2, 2, 1]
        assert oom["cpu_runs"] == 0 and oom["retries"] == 3


def test_oom_without_cpu_fallback_fails_that_request_only(
    batch_cache: Path, photos: dict[str, Path], oom_sessions: list[Any]
) -> None:
    chelsea = photos["chelsea"].read_bytes()
    engine = cuda_pipeline(batch_cache, device_strict=True)
    try:
        first = engine.predict(clip_visual(), image=chelsea)["clip"]
        (session,) = [s for s in oom_sessions if isinstance(s, OomSession)]
        session.limit = 0
        with pytest.raises(AcceleratorOutOfMemory) as raised:
            engine.predict(clip_visual(), image=chelsea)
        assert raised.value.status == 503
        session.limit = 1 << 30  # memory is back: the same worker serves again
        assert cosine(engine.predict(clip_visual(), image=chelsea)["clip"], first) >= 0.9999
        assert engine.status()[0]["oom"]["events"] == 1
    finally:
        engine.close()
    assert len(oom_sessions) == 1  # strict: no CPU session was opened


# --- warm-up ------------------------------------------------------------------------------------------


def test_warmup_runs_every_bucket_once_at_load(batch_cache: Path, recording: list[RecordingSession]) -> None:
    from immich_ml.models.starter import FACE_MODEL

    with pipeline(batch_cache, warmup=True, preload=_preload(FACE_MODEL)) as engine:
        engine.preload()
        status = {m["type"]: m for m in engine.status()}
    detector, recognizer = recording
    assert batch_rows(recognizer) == [1, 2, 4, 8, 16] and len(detector.recorded) == 1
    assert status["recognition"]["warmup_s"] > 0 and status["recognition"]["runs"] == 0
    recording.clear()
    with pipeline(batch_cache, warmup=False, preload=_preload(FACE_MODEL)) as engine:
        engine.preload()
        assert engine.status()[0]["warmup_s"] is None
    assert all(not s.recorded for s in recording)
    with pipeline(batch_cache, warmup=None, preload=_preload(FACE_MODEL)) as engine:
        engine.preload()  # default: no warm-up on the CPU (measured: no first-request gain there)
        assert engine.status()[0]["warmup_s"] is None
    assert all(not s.recorded for s in recording)


def test_warmup_is_on_by_default_on_an_accelerator(batch_cache: Path, oom_sessions: list[Any]) -> None:
    from immich_ml.models.starter import FACE_MODEL

    engine = cuda_pipeline(batch_cache, warmup=None, preload=_preload(FACE_MODEL))
    try:
        engine.preload()
        assert all(m["warmup_s"] is not None for m in engine.status())
    finally:
        engine.close()


def _preload(name: str) -> Any:
    from immich_ml.config import PreloadModels

    return PreloadModels(facial_recognition_detection=(name,), facial_recognition_recognition=(name,))
