"""Immich's HTTP contract through Ray Serve: the single-host end-to-end tests, run against
``python -m immich_ml.ray`` on a real two-node local cluster (see conftest.py).

The contract tests themselves are imported from tests/server/test_e2e.py (same bytes Immich
sends, same answers as the in-process pipeline, the real Node fetch + FormData client); only
the ``service`` fixture differs. The tests below them check what only the Ray path has.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest
from immich_client import LiveService
from test_e2e import (  # noqa: F401 - collected here against the Ray service
    FACES,
    TEXT,
    VISUAL,
    ok,
    reference,
    test_clip_image,
    test_clip_text,
    test_error_cases,
    test_faces,
    test_ipv4_and_ipv6_clients,
    test_node_fetch_client,
)

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def service(ray_service: LiveService) -> Iterator[LiveService]:
    yield ray_service


def test_root_ping_metrics(service: LiveService) -> None:
    assert service.get("/")[2] == b'{"message":"Immich ML"}'
    assert service.get("/ping")[2] == b"pong"
    status, headers, body = service.get("/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert b'immich_ml_http_requests_total{method="GET",route="/ping",status="200"}' in body
    assert b"immich_ml_model_loaded{" in body


def test_health_reports_every_replica_on_both_nodes(service: LiveService) -> None:
    report = service.json("/health")
    assert report["status"] == "ok" and report["ready"] is True
    replicas = report["workers"]
    assert {r["deployment"] for r in replicas} >= {"clip-textual", "clip-visual", "facial-recognition"}
    # Two nodes, replicas spread over both (MAX_REPLICAS_PER_NODE=1 keeps copies apart too).
    assert len({r["node"] for r in replicas}) == 2, replicas
    for replica in replicas:
        assert replica["state"] == "ready" and replica["target"] == "cpu"
        assert replica["self_test"]["provider"] == "CPUExecutionProvider"
        assert replica["node_ip"] and replica["pid"] > 0
    textual = next(r for r in replicas if r["deployment"] == "clip-textual")
    preloaded = [m for m in textual["models"] if m["type"] == "textual"]
    assert preloaded and preloaded[0]["state"] == "loaded" and preloaded[0]["provider"] == "CPUExecutionProvider"
    assert "fallback_reason" in preloaded[0]


def test_one_request_over_two_deployments_is_one_body(service: LiveService, photos: dict[str, Path]) -> None:
    """CLIP image + faces in one request: two deployments answer, Immich gets one object."""
    both = orjson.dumps({**orjson.loads(VISUAL), **orjson.loads(FACES)}).decode()
    image = photos["astronaut"].read_bytes()
    answer = ok(service.predict({"entries": both, "image": image}))
    assert set(answer) == {"clip", "facial-recognition", "imageHeight", "imageWidth"}
    alone = ok(service.predict({"entries": VISUAL, "image": image}))
    assert answer["clip"] == alone["clip"]


def test_multiplexed_models_are_bounded_per_replica(service: LiveService, photos: dict[str, Path]) -> None:
    """Two CLIP image models through one deployment that may hold one per replica: the first is
    evicted for the second and loaded again for the third request, with the same answer."""
    image = photos["camera"].read_bytes()
    answers = []
    for name in ("ViT-tiny__nonsemantic", "ViT-B-32__nonsemantic", "ViT-tiny__nonsemantic"):
        entries = orjson.dumps({"clip": {"visual": {"modelName": name}}}).decode()
        answers.append(ok(service.predict({"entries": entries, "image": image}))["clip"])
        visual = [r for r in service.json("/health")["workers"] if r["deployment"] == "clip-visual"]
        assert visual and all(len(r["multiplexed_models"]) <= 1 for r in visual), visual
    assert answers[0] == answers[2] and answers[0] != answers[1]


def test_concurrent_text_requests_all_answer(service: LiveService) -> None:
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda i: service.predict({"entries": TEXT, "text": f"query {i}"}), range(12)))
    assert [r[0] for r in results] == [200] * 12
    assert len({orjson.loads(r[2])["clip"] for r in results}) == 12
