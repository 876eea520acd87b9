"""End to end: ``python -m immich_ml`` in a subprocess with the real pipeline and the starter
models, spoken to with the exact bytes Immich's server sends (and with Node's real fetch).

One service is shared by the module: two CPU worker slots on device ids 0 and 1, the tiny CLIP
text model preloaded, and a 2 s model TTL polled every second.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from immich_client import LiveService, node_predict_prelude

from immich_ml.backends.base import Target
from immich_ml.config import load_settings
from immich_ml.models.starter import FACE_MODEL, TINY_CLIP_MODEL
from immich_ml.pipeline import Pipeline
from immich_ml.schemas import parse_entries

TEXT = orjson.dumps({"clip": {"textual": {"modelName": TINY_CLIP_MODEL, "options": {"language": "en"}}}}).decode()
VISUAL = orjson.dumps({"clip": {"visual": {"modelName": TINY_CLIP_MODEL}}}).decode()
FACES = orjson.dumps({
    "facial-recognition": {
        "detection": {"modelName": FACE_MODEL, "options": {"minScore": 0.7}},
        "recognition": {"modelName": FACE_MODEL},
    }
}).decode()
OCR_MODEL = "PP-OCRv5_mobile"
OCR = orjson.dumps({  # Immich v3's default OCR request
    "ocr": {
        "detection": {"modelName": OCR_MODEL, "options": {"minScore": 0.5, "maxResolution": 736}},
        "recognition": {"modelName": OCR_MODEL, "options": {"minScore": 0.8}},
    }
}).decode()
NODE = shutil.which("node")
OCR_SIGN = "OPEN 24 HOURS"


def sign_png(text: str = OCR_SIGN, size: tuple[int, int] = (520, 160)) -> bytes:
    import io

    import matplotlib
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(Path(matplotlib.__file__).parent / "mpl-data/fonts/ttf/DejaVuSans.ttf"), 44)
    image = Image.new("RGB", size, "white")
    ImageDraw.Draw(image).text((30, 50), text, fill="black", font=font)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def service(starter_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    env = {
        "IMMICH_HOST": "[::]",
        "IMMICH_LOG_LEVEL": "debug",
        "MACHINE_LEARNING_CACHE_FOLDER": str(starter_cache),
        "MACHINE_LEARNING_DEVICE": "cpu",
        "MACHINE_LEARNING_DEVICE_IDS": "0,1",
        "MACHINE_LEARNING_WORKERS": "2",
        "MACHINE_LEARNING_REQUEST_THREADS": "2",
        "MACHINE_LEARNING_PRELOAD__CLIP__TEXTUAL": TINY_CLIP_MODEL,
        # Immich's own setting for its default OCR model: the workers must start with it.
        "MACHINE_LEARNING_PRELOAD__OCR__DETECTION": OCR_MODEL,
        "MACHINE_LEARNING_MODEL_TTL": "2",
        "MACHINE_LEARNING_MODEL_TTL_POLL_S": "1",
    }
    live = LiveService(env, tmp_path_factory.mktemp("e2e") / "service.log")
    live.wait_ready(timeout=120)
    yield live
    live.stop()


@pytest.fixture(scope="module")
def reference(starter_cache: Path) -> Iterator[Pipeline]:
    """The same pipeline in this process, to compare answers with."""
    settings = load_settings({"MACHINE_LEARNING_CACHE_FOLDER": str(starter_cache), "MACHINE_LEARNING_MODEL_TTL": "0"})
    pipeline = Pipeline(settings, Target("cpu", "0"))
    yield pipeline
    pipeline.close()


def ok(response: tuple[int, dict[str, str], bytes]) -> dict[str, Any]:
    status, headers, body = response
    assert status == 200, body
    assert headers["content-type"] == "application/json"
    parsed: dict[str, Any] = orjson.loads(body)
    return parsed


def vector(embedding: str) -> np.ndarray[Any, np.dtype[np.float32]]:
    assert isinstance(embedding, str) and embedding.startswith("[") and " " not in embedding
    return np.asarray(orjson.loads(embedding), dtype=np.float32)


def failure(response: tuple[int, dict[str, str], bytes], status: int) -> str:
    assert response[0] == status, response
    assert response[1]["content-type"] == "application/json"
    return str(orjson.loads(response[2])["detail"])


def test_preload_is_visible_in_health_at_start(service: LiveService) -> None:
    report = service.json("/health")
    assert report["ready"] is True and report["status"] == "ok"
    for worker in report["workers"]:
        preloaded = [m for m in worker["models"] if m["name"] == TINY_CLIP_MODEL and m["type"] == "textual"]
        assert preloaded and preloaded[0]["state"] == "loaded" and preloaded[0]["ttl_remaining_s"] is None
        assert preloaded[0]["provider"] == "CPUExecutionProvider"


def test_clip_text(service: LiveService, reference: Pipeline) -> None:
    answer = ok(service.predict({"entries": TEXT, "text": "a photo of an astronaut"}))
    assert set(answer) == {"clip"}
    expected = reference.predict(parse_entries(TEXT), text="a photo of an astronaut")["clip"]
    np.testing.assert_allclose(vector(answer["clip"]), vector(expected), rtol=0, atol=1e-5)


def test_clip_image(service: LiveService, reference: Pipeline, photos: dict[str, Path]) -> None:
    image = photos["astronaut"].read_bytes()
    answer = ok(service.predict({"entries": VISUAL, "image": image}))
    assert (answer["imageHeight"], answer["imageWidth"]) == (512, 512)
    expected = reference.predict(parse_entries(VISUAL), image=image)["clip"]
    np.testing.assert_allclose(vector(answer["clip"]), vector(expected), rtol=0, atol=1e-5)
    assert np.linalg.norm(vector(answer["clip"])) == pytest.approx(1.0, abs=1e-3)


def test_faces(service: LiveService, reference: Pipeline, photos: dict[str, Path]) -> None:
    image = photos["astronaut"].read_bytes()
    answer = ok(service.predict({"entries": FACES, "image": image}))
    assert (answer["imageHeight"], answer["imageWidth"]) == (512, 512)
    faces = answer["facial-recognition"]
    expected = reference.predict(parse_entries(FACES), image=image)["facial-recognition"]
    assert len(faces) == len(expected) >= 1
    for got, want in zip(faces, expected, strict=True):
        assert set(got) == {"boundingBox", "embedding", "score"}
        assert got["boundingBox"] == want["boundingBox"]
        assert got["score"] == pytest.approx(want["score"], abs=1e-4)
        np.testing.assert_allclose(vector(got["embedding"]), vector(want["embedding"]), atol=1e-4)


def test_error_cases(service: LiveService, photos: dict[str, Path]) -> None:
    image = photos["astronaut"].read_bytes()
    unknown = orjson.dumps({"clip": {"visual": {"modelName": "ViT-nope__nothing"}}}).decode()
    detail = failure(service.predict({"entries": unknown, "image": image}), 400)
    assert "ViT-nope__nothing" in detail and TINY_CLIP_MODEL in detail
    assert "decode" in failure(service.predict({"entries": VISUAL, "image": b"not an image at all"}), 400)
    assert "zero" in failure(service.predict({"entries": VISUAL, "image": b""}), 400)
    assert failure(service.predict({"entries": VISUAL}), 400) == "Either image or text must be provided"
    only_recognition = orjson.dumps({"facial-recognition": {"recognition": {"modelName": FACE_MODEL}}}).decode()
    assert "depends on output of detection" in failure(
        service.predict({"entries": only_recognition, "image": image}), 400
    )
    assert "Invalid request format" in failure(service.predict({"entries": "{", "text": "x"}), 422)
    truncated = photos["astronaut"].read_bytes()[:5000]
    assert failure(service.predict({"entries": FACES, "image": truncated}), 400)
    assert service.get("/ping")[0] == 200


def test_ocr(service: LiveService, reference: Pipeline) -> None:
    image = sign_png()
    answer = ok(service.predict({"entries": OCR, "image": image}))
    assert (answer["imageHeight"], answer["imageWidth"]) == (160, 520)
    assert answer["ocr"]["text"] == [OCR_SIGN]
    assert answer["ocr"] == reference.predict(parse_entries(OCR), image=image)["ocr"]
    assert len(answer["ocr"]["box"]) == 8 and 0.5 < answer["ocr"]["boxScore"][0] <= 1
    loaded = [m for w in service.json("/health")["workers"] for m in w["models"] if m["task"] == "ocr"]
    assert {(m["type"], m["name"]) for m in loaded} >= {("detection", OCR_MODEL), ("recognition", OCR_MODEL)}


def test_ocr_bad_images_are_client_errors(service: LiveService) -> None:
    import io

    from PIL import Image

    assert "decode" in failure(service.predict({"entries": OCR, "image": b"\x89PNG\r\n\x1a\n broken"}), 400)
    assert "zero" in failure(service.predict({"entries": OCR, "image": b""}), 400)
    huge = io.BytesIO()
    Image.new("L", (10_001, 10_001)).save(huge, "PNG")  # 100,020,001 pixels > MAX_IMAGE_PIXELS
    assert "pixels" in failure(service.predict({"entries": OCR, "image": huge.getvalue()}), 400)
    unknown = orjson.dumps({"ocr": {"detection": {"modelName": "PP-OCRv9_tiny"},
                                    "recognition": {"modelName": "PP-OCRv9_tiny"}}}).decode()
    detail = failure(service.predict({"entries": unknown, "image": sign_png()}), 400)
    assert "PP-OCRv9_tiny" in detail and OCR_MODEL in detail
    bad = orjson.dumps({"ocr": {"detection": {"modelName": OCR_MODEL, "options": {"maxResolution": 0}},
                                "recognition": {"modelName": OCR_MODEL}}}).decode()
    assert "maxResolution" in failure(service.predict({"entries": bad, "image": sign_png()}), 400)
    assert ok(service.predict({"entries": OCR, "image": sign_png()}))["ocr"]["text"] == [OCR_SIGN]


def test_many_concurrent_clients_reach_both_workers(service: LiveService, photos: dict[str, Path]) -> None:
    before = {w["slot"]: w["requests"] for w in service.json("/health")["workers"]}
    image = photos["chelsea"].read_bytes()
    jobs: list[dict[str, str | bytes]] = [
        [{"entries": TEXT, "text": f"query {i}"}, {"entries": VISUAL, "image": image},
         {"entries": FACES, "image": image}][i % 3]
        for i in range(32)
    ]
    with ThreadPoolExecutor(8) as executor:
        responses = list(executor.map(service.predict, jobs))
    assert [r[0] for r in responses] == [200] * 32
    for job, response in zip(jobs, responses, strict=True):
        answer = orjson.loads(response[2])
        assert ("imageHeight" in answer) == ("image" in job)
    after = {w["slot"]: w["requests"] for w in service.json("/health")["workers"]}
    served = {slot: after[slot] - before[slot] for slot in after}
    assert sum(served.values()) == 32 and all(count > 0 for count in served.values()), served
    metrics = service.get("/metrics")[2].decode()
    for slot in (0, 1):
        line = next(x for x in metrics.splitlines()
                    if x.startswith("immich_ml_worker_requests_total{") and f'slot="{slot}"' in x)
        assert float(line.split()[-1]) > 0


def test_worker_killed_mid_request_then_service_recovers(service: LiveService, photos: dict[str, Path]) -> None:
    # Three clients keep both workers busy with face requests while one worker is SIGKILLed.
    fields = {"entries": FACES, "image": photos["astronaut"].read_bytes()}
    stop = threading.Event()
    responses: list[tuple[int, dict[str, str], bytes]] = []

    def client() -> None:
        while not stop.is_set():
            responses.append(service.predict(fields))

    clients = [threading.Thread(target=client) for _ in range(3)]
    for thread in clients:
        thread.start()
    try:
        victim = None
        # A kill can land in the instant between two requests; then nothing was in flight and
        # the test tries again on the replacement.
        for _ in range(3):
            deadline = time.monotonic() + 30
            while True:
                workers = service.json("/health")["workers"]
                busy = [w for w in workers if w["inflight"] >= 1 and w["state"] == "ready"]
                if busy:
                    break
                assert time.monotonic() < deadline, "no request ever reached a worker"
                time.sleep(0.005)
            victim = busy[0]
            os.kill(victim["pid"], signal.SIGKILL)
            killed_at = time.monotonic()
            while not any(r[0] == 503 for r in responses) and time.monotonic() < killed_at + 5:
                time.sleep(0.01)
            if any(r[0] == 503 for r in responses):
                break
    finally:
        stop.set()
        for thread in clients:
            thread.join(60)
    assert victim is not None
    crashed = [r for r in responses if r[0] == 503]
    assert crashed, "no in-flight request saw the crash"
    assert all(r[0] in (200, 503) for r in responses), [r[0] for r in responses]
    detail = orjson.loads(crashed[-1][2])["detail"]
    assert f"worker {victim['slot']} (cpu:{victim['device_id']}) was killed by signal SIGKILL" in detail
    assert crashed[-1][1]["retry-after"] == "1"
    # The slot is refilled within seconds and serves again.
    deadline = killed_at + 15
    while True:
        worker = service.json("/health")["workers"][victim["slot"]]
        if worker["state"] == "ready" and worker["pid"] != victim["pid"]:
            break
        assert time.monotonic() < deadline, worker
        time.sleep(0.05)
    assert worker["restarts"] >= victim["restarts"] + 1 and "SIGKILL" in worker["last_error"]
    assert ok(service.predict({"entries": TEXT, "text": "after the crash"}))["clip"]


def test_idle_models_are_evicted_after_the_ttl(service: LiveService, photos: dict[str, Path]) -> None:
    ok(service.predict({"entries": VISUAL, "image": photos["coffee"].read_bytes()}))

    def visual_loaded() -> bool:
        return any(
            m["type"] == "visual" and m["state"] == "loaded"
            for w in service.json("/health")["workers"] for m in w["models"]
        )

    assert visual_loaded()
    deadline = time.monotonic() + 10
    while visual_loaded():
        assert time.monotonic() < deadline, "clip visual was not evicted after MODEL_TTL=2"
        time.sleep(0.25)
    textual = [m for w in service.json("/health")["workers"] for m in w["models"] if m["type"] == "textual"]
    assert textual and all(m["state"] == "loaded" for m in textual), "preloaded models must not expire"


def test_worker_and_request_logs_reach_the_service_log(service: LiveService) -> None:
    ok(service.predict({"entries": TEXT, "text": "logged"}))
    time.sleep(0.2)
    log = service.log()
    assert "Available ORT providers" in log  # logged by the ORT backend inside a worker process
    assert "POST /predict 200 " in log and f"entries=clip/textual/{TINY_CLIP_MODEL}" in log
    assert "worker 0 (cpu:0) is ready" in log and "worker 1 (cpu:1) is ready" in log


@pytest.mark.skipif(NODE is None, reason="node is not installed: the real fetch/FormData client cannot run")
def test_node_fetch_client(service: LiveService, photos: dict[str, Path], tmp_path: Path) -> None:
    script = tmp_path / "immich.mjs"
    script.write_text(
        node_predict_prelude(service.port)
        + "async function ok(result) {\n"
        "  const r = await result;\n"
        "  if (!r.ok) throw new Error(`status ${r.status}`);\n"
        "  return r.body;\n"
        "}\n"
        "const image = new Uint8Array(readFileSync(process.argv[2]));\n"
        f"const faces = await ok(predict({FACES}, image));\n"
        f"const visual = await ok(predict({VISUAL}, image));\n"
        f"const text = await ok(predict({TEXT}, 'an astronaut'));\n"
        "const sign = new Uint8Array(readFileSync(process.argv[3]));\n"
        f"const ocr = await ok(predict({OCR}, sign));\n"
        "console.log(JSON.stringify({ faces, visual, text, ocr }));\n"
    )
    image = photos["astronaut"]
    sign = tmp_path / "sign.png"
    sign.write_bytes(sign_png())
    result = subprocess.run(
        [str(NODE), str(script), str(image), str(sign)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    out = orjson.loads(result.stdout)
    assert out["faces"]["imageWidth"] == 512 and len(out["faces"]["facial-recognition"]) >= 1
    assert isinstance(out["faces"]["facial-recognition"][0]["embedding"], str)
    raw_visual = ok(service.predict({"entries": VISUAL, "image": image.read_bytes()}))
    assert out["visual"]["clip"] == raw_visual["clip"]  # the string Immich stores, byte for byte
    raw_text = ok(service.predict({"entries": TEXT, "text": "an astronaut"}))
    assert out["text"]["clip"] == raw_text["clip"]
    assert out["ocr"]["ocr"]["text"] == [OCR_SIGN] and out["ocr"]["imageWidth"] == 520


def test_ipv4_and_ipv6_clients(service: LiveService) -> None:
    from immich_client import send_raw

    for host in ("127.0.0.1", "::1"):
        status, _, body = send_raw(host, service.port, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        assert (status, body) == (200, b'{"message":"Immich ML"}')
