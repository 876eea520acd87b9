"""The bad-input corpus (tests/server/corpus_cases.py, 200+ requests) against ONE real service
process: every case gets a clear 4xx naming the problem (or a correct answer), and a good
request sent right after it succeeds, so the service keeps serving whatever came before.

The service also preloads a model name that does not exist and an OCR model: both are reported
in /health with their reason while the worker serves everything else.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from corpus_cases import MAX_IMAGE_PIXELS, MAX_REQUEST_MB, TEXTUAL, Case, cases, entries, form
from immich_client import LiveService

from immich_ml.models.starter import TINY_CLIP_MODEL

CASES = cases()
GOOD = form({"entries": entries(TEXTUAL), "text": "a photo of a dog"})


@pytest.fixture(scope="module")
def service(starter_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    env = {
        "IMMICH_HOST": "127.0.0.1",
        "MACHINE_LEARNING_CACHE_FOLDER": str(starter_cache),
        "MACHINE_LEARNING_DEVICE": "cpu",
        "MACHINE_LEARNING_WORKERS": "1",
        "MACHINE_LEARNING_REQUEST_THREADS": "2",
        "MACHINE_LEARNING_MAX_REQUEST_MB": str(MAX_REQUEST_MB),
        "MACHINE_LEARNING_MAX_IMAGE_PIXELS": str(MAX_IMAGE_PIXELS),
        "MACHINE_LEARNING_PRELOAD__CLIP__TEXTUAL": TINY_CLIP_MODEL,
        # Neither can load: before, either stopped the worker from ever becoming ready.
        "MACHINE_LEARNING_PRELOAD__CLIP__VISUAL": "no-such-model",
        "MACHINE_LEARNING_PRELOAD__OCR__DETECTION": "PP-OCRv5_mobile",
        "HF_HUB_OFFLINE": "1",
    }
    live = LiveService(env, tmp_path_factory.mktemp("corpus") / "service.log")
    live.wait_ready(timeout=120)
    yield live
    live.stop()


def exchange(service: LiveService, raw: bytes, *, half_close: bool = False, timeout: float = 60.0) -> tuple[int, dict[str, str], bytes] | None:
    """Send ``raw`` on a fresh connection and read one response (None: the connection closed
    without one, which only a request cut mid-stream may cause)."""
    with socket.create_connection((service.host, service.port), timeout=timeout) as sock:
        try:
            sock.sendall(raw)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the service answered early (413) and stopped reading: read the answer below
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            if b"\r\n\r\n" not in data:
                return None
            head, _, body = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
            length = int(headers.get("content-length", "0"))
            while len(body) < length:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                body += chunk
        except ConnectionResetError:
            if not data:
                return None
            raise
    return int(lines[0].split()[1]), headers, body


def check_answer(case: Case, answer: tuple[int, dict[str, str], bytes] | None) -> None:
    if answer is None:
        assert case.half_close, f"{case.name}: the connection closed without an answer"
        return
    status, headers, body = answer
    if status == 200:
        assert not case.statuses or case.either or case.ok_size, f"{case.name}: 200 for a bad request: {body[:300]!r}"
        result: dict[str, Any] = orjson.loads(body)
        if case.ok_size is not None:
            assert (result["imageHeight"], result["imageWidth"]) == case.ok_size, result
        return
    assert status in case.statuses, f"{case.name}: status {status}, expected {sorted(case.statuses) or 200}: {body[:500]!r}"
    assert headers.get("content-type", "").startswith("application/json"), f"{case.name}: {headers} {body[:300]!r}"
    detail = orjson.loads(body)["detail"]
    assert isinstance(detail, str) and 0 < len(detail) <= 2000, detail
    lowered = detail.lower()
    assert any(name.lower() in lowered for name in case.names), f"{case.name}: {detail!r} names none of {case.names}"
    for leak in (" at 0x", "traceback", "<_io", "object at"):
        assert leak not in lowered, f"{case.name}: {detail!r}"


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_gets_a_clear_answer_and_the_service_keeps_serving(service: LiveService, case: Case) -> None:
    check_answer(case, exchange(service, case.raw, half_close=case.half_close))
    good = exchange(service, GOOD)
    assert good is not None and good[0] == 200, f"after {case.name}: {good}"
    assert orjson.loads(good[2])["clip"].startswith("[")


def test_the_corpus_is_big_enough() -> None:
    assert len(CASES) >= 200, len(CASES)
    assert len({case.name for case in CASES}) == len(CASES)


def test_failed_preloads_are_reported_and_the_rest_is_served(service: LiveService) -> None:
    report = service.json("/health")
    assert report["ready"] is True
    (worker,) = report["workers"]
    rows = {(m["type"], m["name"]): m for m in worker["models"]}
    bad = rows[("visual", "no-such-model")]
    assert bad["state"] == "failed" and "no-such-model" in bad["last_error"]
    # Immich v3's own default preload: it used to keep the worker from ever becoming ready; OCR is
    # now served, so it loads like any other model.
    assert rows[("detection", "PP-OCRv5_mobile")]["state"] == "loaded"
    assert rows[("textual", TINY_CLIP_MODEL)]["state"] == "loaded"


def test_after_the_corpus_no_worker_crashed_and_no_client_name_is_a_metric_label(service: LiveService) -> None:
    for case in CASES:  # in case this test runs alone
        if case.name.startswith("model-name-"):
            exchange(service, case.raw)
    (worker,) = service.json("/health")["workers"]
    assert worker["state"] == "ready" and worker["restarts"] == 0, worker
    status, _, metrics = service.get("/metrics")
    text = metrics.decode()
    assert status == 200
    for case in CASES:
        model = case.extra.get("model")
        if model and len(model) > 3:
            assert f'model="{model}' not in text, model
    assert "etc/passwd" not in text and "evil.example" not in text
