"""The benchmark's HTTP side: multipart bodies the service parses, and process CPU accounting."""

from __future__ import annotations

import os
import time

import orjson
import pytest
from werkzeug.formparser import parse_form_data
from werkzeug.test import EnvironBuilder

from immich_ml.bench import service


@pytest.mark.parametrize("payload", [b"\xff\xd8\xffjpeg bytes\r\n--not-a-boundary", "a photo of a dog"])
def test_multipart_parses_like_immichs_form(payload: bytes | str) -> None:
    entries = orjson.dumps({"clip": {"visual": {"modelName": "ViT-B-32__openai"}}}).decode()
    body, content_type = service.multipart(entries, payload)
    environ = EnvironBuilder(method="POST", data=body, content_type=content_type).get_environ()
    _, form, files = parse_form_data(environ)
    assert form["entries"] == entries
    if isinstance(payload, bytes):
        assert files["image"].read() == payload
    else:
        assert form["text"] == payload


def test_process_tree_cpu_seconds_grows_with_work() -> None:
    before = service.process_tree_cpu_seconds(os.getpid())
    assert before is not None
    end = time.process_time() + 0.2
    while time.process_time() < end:
        pass
    after = service.process_tree_cpu_seconds(os.getpid())
    assert after is not None and after - before >= 0.1


def test_free_port_and_bad_url() -> None:
    assert 0 < service.free_port() < 65536
    with pytest.raises(service.ServiceError):
        service.Client("https://example.invalid")


def test_worker_time_from_server_timing() -> None:
    assert service.worker_ms("worker;dur=12.346") == 12.346
    assert service.worker_ms('cache;desc="hit", worker ; dur=0.5') == 0.5
    assert service.worker_ms("db;dur=3") is None
    assert service.worker_ms("worker;dur=abc") is None
    assert service.worker_ms("") is None
