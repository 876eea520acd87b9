"""The service as a subprocess on a real socket, with the pipeline double in its workers:
Immich's exact request bytes, Node's real fetch, crash recovery, overload, limits, logs, shutdown."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from immich_client import (
    LiveService,
    node_predict_prelude,
    send_raw,
    undici_boundary,
    undici_multipart,
    undici_request,
)

DOUBLE = "pipeline_double:PipelineDouble"
TEXT = '{"clip":{"textual":{"modelName":"ViT-B-32__openai","options":{"language":"en"}}}}'
VISUAL = '{"clip":{"visual":{"modelName":"ViT-B-32__openai"}}}'
NODE = shutil.which("node")


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    env = {
        "IMMICH_HOST": "[::]",
        "IMMICH_LOG_LEVEL": "debug",
        "MACHINE_LEARNING_DEVICE": "cpu",
        "MACHINE_LEARNING_REQUEST_THREADS": "2",
        "MACHINE_LEARNING_MAX_REQUEST_MB": "2",
    }
    live = LiveService(env, tmp_path_factory.mktemp("svc") / "service.log", factory=DOUBLE)
    live.wait_ready()
    yield live
    live.stop()


def test_reachable_over_ipv4_and_ipv6_by_default(service: LiveService) -> None:
    for host in ("127.0.0.1", "::1"):
        status, headers, body = send_raw(host, service.port, b"GET /ping HTTP/1.1\r\nhost: x\r\n\r\n")
        assert (status, body) == (200, b"pong") and headers["content-type"].startswith("text/plain")


def test_immich_text_request_bytes(service: LiveService) -> None:
    status, headers, body = service.predict({"entries": TEXT, "text": "a photo of a dog"})
    assert status == 200 and headers["content-type"] == "application/json"
    answer = orjson.loads(body)
    assert answer["clip"] == "[1.6,0.5,-0.25]"  # the worker's string, untouched


def test_immich_image_request_bytes(service: LiveService) -> None:
    image = os.urandom(300_000) + b"\r\n--\r\n" + os.urandom(1000)  # CRLF and dashes inside the blob
    status, _, body = service.predict({"entries": VISUAL, "image": image})
    answer = orjson.loads(body)
    assert status == 200
    assert answer["imageSha256"] == hashlib.sha256(image).hexdigest()
    assert (answer["imageHeight"], answer["imageWidth"]) == (len(image), 1)


@pytest.mark.skipif(NODE is None, reason="node is not installed: cannot compare with undici's own bytes")
def test_hand_built_bytes_match_node_undici() -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    script = (
        "const fd = new FormData();"
        f"fd.append('entries', JSON.stringify({TEXT}));"
        "fd.append('image', new Blob([new Uint8Array([0, 1, 2, 13, 10, 45, 45, 255])]));"
        f"fetch('http://127.0.0.1:{port}/predict', {{method: 'POST', body: fd}}).catch(() => {{}});"
        "setTimeout(() => process.exit(0), 1000);"
    )
    node = subprocess.Popen([str(NODE), "-e", script])
    try:
        connection, _ = listener.accept()
        connection.settimeout(0.5)
        captured = b""
        try:
            while chunk := connection.recv(65536):
                captured += chunk
        except TimeoutError:
            pass
        connection.close()
    finally:
        listener.close()
        node.wait(10)
    boundary = captured.split(b"boundary=", 1)[1].split(b"\r\n", 1)[0].decode()
    assert boundary.startswith("----formdata-undici-0") and len(boundary) == len(undici_boundary())
    fields = {"entries": orjson.dumps(orjson.loads(TEXT)).decode(), "image": bytes([0, 1, 2, 13, 10, 45, 45, 255])}
    assert captured == undici_request("127.0.0.1", port, "/predict", fields, boundary)


@pytest.mark.skipif(NODE is None, reason="node is not installed: the real fetch/FormData client cannot run")
def test_node_fetch_formdata_blob_client(service: LiveService, tmp_path: Path) -> None:
    image = bytes(range(256)) * 100
    (tmp_path / "image.bin").write_bytes(image)
    script = tmp_path / "client.mjs"
    script.write_text(
        node_predict_prelude(service.port)
        +         "const ping = await fetch(new URL('/ping', url), { signal: AbortSignal.timeout(2000) });\n"
        "const image = new Uint8Array(readFileSync(process.argv[2]));\n"
        "const out = {\n"
        "  ping: ping.ok,\n"
        "  text: await predict(\n"
        "    { clip: { textual: { modelName: 'ViT-B-32__openai', options: { language: 'de' } } } }, 'ein Hund'),\n"
        "  image: await predict({ clip: { visual: { modelName: 'ViT-B-32__openai' } } }, image),\n"
        "  bad: await predict({ clip: { visual: { modelName: 'missing' } } }, image),\n"
        "};\n"
        "console.log(JSON.stringify(out));\n"
    )
    result = subprocess.run(
        [str(NODE), str(script), str(tmp_path / "image.bin")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    out = orjson.loads(result.stdout)
    assert out["ping"] is True
    assert out["text"]["ok"] and out["text"]["body"]["clip"] == "[0.8,0.5,-0.25]"
    assert out["image"]["ok"] and out["image"]["body"]["imageSha256"] == hashlib.sha256(image).hexdigest()
    assert out["bad"]["status"] == 400 and "Unknown model 'missing'" in out["bad"]["body"]["detail"]


def test_413_over_the_socket_is_json_and_names_the_setting(service: LiveService) -> None:
    status, headers, body = service.predict({"entries": VISUAL, "image": b"\0" * (2 * 2**20 + 10)})
    assert status == 413 and headers["content-type"] == "application/json"
    assert "MACHINE_LEARNING_MAX_REQUEST_MB" in orjson.loads(body)["detail"]
    assert service.get("/ping")[0] == 200


def test_worker_sigkilled_mid_request_gives_503_then_recovers(service: LiveService) -> None:
    before = service.json("/health")["workers"][0]
    outcome: dict[str, Any] = {}

    def slow() -> None:
        outcome["response"] = service.predict({"entries": TEXT, "text": "sleep:20"})

    thread = threading.Thread(target=slow)
    thread.start()
    deadline = time.monotonic() + 10
    while service.json("/health")["workers"][0]["inflight"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(before["pid"], signal.SIGKILL)
    thread.join(10)
    status, headers, body = outcome["response"]
    assert status == 503 and headers["retry-after"] == "1"
    assert "worker 0 (cpu:0) was killed by signal SIGKILL" in orjson.loads(body)["detail"]
    started = time.monotonic()
    status, _, body = service.predict({"entries": TEXT, "text": "after"})
    assert status == 200 and time.monotonic() - started < 5
    after = service.json("/health")["workers"][0]
    assert after["restarts"] == before["restarts"] + 1 and after["pid"] != before["pid"]
    assert "SIGKILL" in after["last_error"]
    metrics = service.get("/metrics")[2].decode()
    assert 'immich_ml_errors_total{kind="worker_crashed"} 1' in metrics


def test_health_ready_and_metrics_over_http(service: LiveService) -> None:
    service.predict({"entries": TEXT, "text": "x"})
    status, _, body = service.get("/health")
    report = orjson.loads(body)
    assert status == 200 and report["status"] == "ok" and report["ready"] is True
    worker = report["workers"][0]
    fields = {"slot", "device_id", "target", "pid", "state", "restarts", "last_error", "queue_depth", "models"}
    assert fields <= set(worker)
    assert worker["models"][0]["provider"] == "DoubleProvider"
    assert service.get("/ready")[0] == 200
    status, headers, text = service.get("/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    assert b"immich_ml_worker_ready{" in text


def test_request_lines_and_worker_lines_reach_the_service_log(service: LiveService) -> None:
    service.predict({"entries": TEXT, "text": "logged"})
    time.sleep(0.2)
    log = service.log()
    assert "[DEBUG] [immich_ml.server] POST /predict 200 " in log
    assert "entries=clip/textual/ViT-B-32__openai" in log
    assert "Listening on http://[::]:" in log and "(IPv4 and IPv6)" in log
    assert "[immich_ml.workers.worker] [worker 0]" in log  # a worker process's own line


def test_overload_answers_503_with_retry_after(tmp_path: Path) -> None:
    env = {
        "IMMICH_HOST": "127.0.0.1", "MACHINE_LEARNING_DEVICE": "cpu",
        "MACHINE_LEARNING_REQUEST_THREADS": "1", "MACHINE_LEARNING_QUEUE_DEPTH": "1",
    }
    live = LiveService(env, tmp_path / "service.log", factory=DOUBLE)
    try:
        live.wait_ready()
        results: list[tuple[int, dict[str, str], bytes]] = []
        threads = [
            threading.Thread(target=lambda: results.append(live.predict({"entries": TEXT, "text": "sleep:1"})))
            for _ in range(5)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        statuses = sorted(status for status, _, _ in results)
        assert statuses.count(200) == 2 and statuses.count(503) == 3
        rejected = [(h, b) for s, h, b in results if s == 503]
        assert all(h["retry-after"] == "1" and b"QUEUE_DEPTH" in b for h, b in rejected)
    finally:
        assert live.stop() == 0


def test_sigterm_stops_service_and_workers(tmp_path: Path) -> None:
    env = {"IMMICH_HOST": "127.0.0.1", "MACHINE_LEARNING_DEVICE": "cpu"}
    live = LiveService(env, tmp_path / "service.log", factory=DOUBLE)
    live.wait_ready()
    pid = live.json("/health")["workers"][0]["pid"]
    assert live.stop() == 0
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert "Shutting down" in live.log() and "stopped after" in live.log()


def test_multipart_without_trailing_crlf_is_accepted(service: LiveService) -> None:
    boundary = undici_boundary()
    body = undici_multipart({"entries": TEXT, "text": "old undici"}, boundary).removesuffix(b"\r\n")
    raw = (
        f"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: multipart/form-data; boundary={boundary}\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body
    status, _, answer = send_raw(service.host, service.port, raw)
    assert status == 200 and orjson.loads(answer)["clip"]
