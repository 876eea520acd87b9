"""Server tests: the Flask app over an in-process pool stand-in."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from immich_ml.config import Settings, load_settings
from immich_ml.server.app import create_app
from server_stand_ins import PoolStandIn


@pytest.fixture
def pool() -> PoolStandIn:
    return PoolStandIn()


@pytest.fixture
def settings() -> Settings:
    return load_settings({"MACHINE_LEARNING_MAX_REQUEST_MB": "1"})


@pytest.fixture
def app(settings: Settings, pool: PoolStandIn) -> Flask:
    return create_app(settings, pool)


@pytest.fixture
def client(app: Flask) -> Iterator[FlaskClient]:
    with app.test_client() as test_client:
        yield test_client

