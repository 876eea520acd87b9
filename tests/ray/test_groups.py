"""How the ingress splits a request over model deployments (pure, runs without Ray)."""

from __future__ import annotations

import orjson
import pytest

from immich_ml.config import RAY_GROUPS, SettingsError, load_settings
from immich_ml.errors import InvalidInput
from immich_ml.ray.groups import entries_key, group_of, merge_bodies, multiplex_id, split
from immich_ml.schemas import parse_entries

FACES_AND_CLIP = orjson.dumps({
    "clip": {"visual": {"modelName": "ViT-B-32__openai"}},
    "facial-recognition": {"detection": {"modelName": "buffalo_l"}, "recognition": {"modelName": "buffalo_l"}},
})


def test_face_chain_stays_one_group_and_clip_types_split() -> None:
    groups = split(parse_entries(FACES_AND_CLIP), RAY_GROUPS)
    assert list(groups) == ["clip-visual", "facial-recognition"]
    assert [e.type.value for e in groups["facial-recognition"]] == ["detection", "recognition"]
    text = parse_entries(b'{"clip":{"textual":{"modelName":"ViT-B-32__openai"}}}')
    assert group_of(text[0]) == "clip-textual"


def test_undeployed_group_is_a_400_naming_the_setting() -> None:
    with pytest.raises(InvalidInput, match="MACHINE_LEARNING_RAY_DEPLOYMENTS"):
        split(parse_entries(FACES_AND_CLIP), ("clip-visual",))


def test_multiplex_id_is_the_model_name() -> None:
    faces = split(parse_entries(FACES_AND_CLIP), RAY_GROUPS)["facial-recognition"]
    assert multiplex_id(faces) == "buffalo_l"
    mixed = parse_entries(
        b'{"facial-recognition":{"detection":{"modelName":"b"},"recognition":{"modelName":"a"}}}'
    )
    assert multiplex_id(mixed) == "a+b" and entries_key("a+b") == ("a", "b")


def test_bodies_merge_into_one_object_and_one_passes_through() -> None:
    one = b'{"clip":"[1.0]","imageHeight":2,"imageWidth":3}'
    assert merge_bodies([one]) is one
    merged = orjson.loads(merge_bodies([one, b'{"facial-recognition":[],"imageHeight":2,"imageWidth":3}']))
    assert merged == {"clip": "[1.0]", "facial-recognition": [], "imageHeight": 2, "imageWidth": 3}


def test_ray_settings_are_read_and_checked() -> None:
    settings = load_settings({
        "RAY_ADDRESS": "ray://head:10001",
        "MACHINE_LEARNING_RAY_DEPLOYMENTS": "clip-visual, facial-recognition",
        "MACHINE_LEARNING_RAY_NUM_GPUS": "0.5",
        "MACHINE_LEARNING_RAY_MAX_REPLICAS": "4",
        "MACHINE_LEARNING_RAY_PROXY_LOCATION": "headonly",
        "MACHINE_LEARNING_BATCH_WAIT_MS": "5",
    })
    assert settings.ray.address == "ray://head:10001"
    assert settings.ray.groups == ("clip-visual", "facial-recognition")
    assert settings.ray.num_gpus == 0.5 and settings.ray.max_replicas == 4
    assert settings.ray.proxy_location == "HeadOnly" and settings.batch_wait_ms == 5
    assert load_settings({}).ray.address is None
    for bad in (
        {"MACHINE_LEARNING_RAY_DEPLOYMENTS": "clip"},
        {"MACHINE_LEARNING_RAY_NUM_GPUS": "-1"},
        {"MACHINE_LEARNING_RAY_MIN_REPLICAS": "3", "MACHINE_LEARNING_RAY_MAX_REPLICAS": "2"},
        {"MACHINE_LEARNING_RAY_PROXY_LOCATION": "Everywhere"},
    ):
        with pytest.raises(SettingsError, match="MACHINE_LEARNING_"):
            load_settings(bad)


def test_kuberay_import_path_builds_the_application(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    """``immich_ml.ray.kuberay:app`` (the RayService import path) builds from the environment."""
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'immich-ml[ray]'")
    import importlib
    import sys

    from ray.serve import Application

    monkeypatch.setenv("MACHINE_LEARNING_RAY_DEPLOYMENTS", "clip-textual")
    monkeypatch.setenv("MACHINE_LEARNING_CACHE_FOLDER", str(tmp_path))
    sys.modules.pop("immich_ml.ray.kuberay", None)
    module = importlib.import_module("immich_ml.ray.kuberay")
    assert isinstance(module.app, Application)
    sys.modules.pop("immich_ml.ray.kuberay", None)
