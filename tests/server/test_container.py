"""Immich's requests against a running immich-ml container image (docker/test-image.sh runs this).

Set ``IMMICH_ML_CONTAINER_URL=http://127.0.0.1:PORT`` for a container started with the starter
models in its ``/cache`` volume; answers are compared with the same pipeline in this process.
Without the variable every test is skipped (the image is built by a script, not by the suite).
"""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

import numpy as np
import orjson
import pytest
from immich_client import ServiceClient
# The same requests, checks and in-process reference pipeline as the end-to-end tests.
from test_e2e import FACES, TEXT, VISUAL, failure, ok, reference, vector  # noqa: F401 - reference is a fixture

from immich_ml.models.starter import FACE_MODEL
from immich_ml.pipeline import Pipeline
from immich_ml.schemas import parse_entries

URL = os.environ.get("IMMICH_ML_CONTAINER_URL", "")
pytestmark = pytest.mark.skipif(not URL, reason="no container: set IMMICH_ML_CONTAINER_URL (docker/test-image.sh)")

@pytest.fixture(scope="module")
def container() -> ServiceClient:
    parsed = urllib.parse.urlsplit(URL)
    assert parsed.hostname and parsed.port, URL
    return ServiceClient(parsed.hostname, parsed.port)


def test_ping_root_and_health(container: ServiceClient) -> None:
    status, _, body = container.get("/ping")
    assert (status, body) == (200, b"pong")
    assert container.json("/") == {"message": "Immich ML"}
    health = container.json("/health")
    assert health["ready"] is True and health["workers"], health


def test_clip_text_and_image_match_the_pipeline(container: ServiceClient, reference: Pipeline, photos: dict[str, Path]) -> None:
    answer = ok(container.predict({"entries": TEXT, "text": "a photo of an astronaut"}))
    expected = reference.predict(parse_entries(TEXT), text="a photo of an astronaut")["clip"]
    np.testing.assert_allclose(vector(answer["clip"]), vector(expected), rtol=0, atol=1e-4)
    image = photos["astronaut"].read_bytes()
    answer = ok(container.predict({"entries": VISUAL, "image": image}))
    assert (answer["imageHeight"], answer["imageWidth"]) == (512, 512)
    expected = reference.predict(parse_entries(VISUAL), image=image)["clip"]
    np.testing.assert_allclose(vector(answer["clip"]), vector(expected), rtol=0, atol=1e-4)


def test_faces_match_the_pipeline(container: ServiceClient, reference: Pipeline, photos: dict[str, Path]) -> None:
    image = photos["astronaut"].read_bytes()
    faces = ok(container.predict({"entries": FACES, "image": image}))["facial-recognition"]
    expected = reference.predict(parse_entries(FACES), image=image)["facial-recognition"]
    assert isinstance(faces, list) and len(faces) == len(expected) >= 1
    for got, want in zip(faces, expected, strict=True):
        assert got["boundingBox"] == want["boundingBox"]
        assert got["score"] == pytest.approx(want["score"], abs=1e-4)
        np.testing.assert_allclose(vector(got["embedding"]), vector(want["embedding"]), atol=1e-4)
    loaded = [m for w in container.json("/health")["workers"] for m in w["models"] if m["name"] == FACE_MODEL]
    assert loaded and {m["provider"] for m in loaded} == {"CPUExecutionProvider"}, loaded


def test_bad_requests_get_clear_errors_and_the_service_keeps_serving(container: ServiceClient, photos: dict[str, Path]) -> None:
    image = photos["astronaut"].read_bytes()
    unknown = orjson.dumps({"clip": {"visual": {"modelName": "../../etc/passwd"}}}).decode()
    assert failure(container.predict({"entries": unknown, "image": image}), 400)
    assert "decode" in failure(container.predict({"entries": VISUAL, "image": b"not an image"}), 400)
    assert "Invalid request format" in failure(container.predict({"entries": "{", "text": "x"}), 422)
    assert container.get("/ping")[0] == 200
