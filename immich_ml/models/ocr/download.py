"""Fetch PP-OCRv5 files the way Immich does: from RapidOCR's model registry, checked by SHA256.

Immich (via RapidOCR 3.8.1's ``default_models.yaml``) downloads one ONNX file per model from
``https://www.modelscope.cn/models/RapidAI/RapidOCR/resolve/v3.8.0/onnx/PP-OCRv5/{det|rec}/<file>``
and checks its SHA256; the recognizers carry their dictionary in the ``character`` metadata. The
base URL is a setting (``MACHINE_LEARNING_OCR_MODEL_URL``) for mirrors and tests. A download goes to a
temporary file next to the target, is hashed while it streams, and is renamed into place only when
the digest matches, so an interrupted or tampered download never leaves a ``model.onnx`` behind.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from immich_ml.errors import ModelUnavailable
from immich_ml.schemas import ModelType

log = logging.getLogger(__name__)

TIMEOUT_S = 60
_CHUNK = 1 << 20


@dataclass(frozen=True)
class RegistryFile:
    """One file of RapidOCR's registry: its path below the base URL and its SHA256."""

    path: str
    sha256: str


# RapidOCR 3.8.1 default_models.yaml, onnxruntime / PP-OCRv5.
DETECTORS: dict[str, RegistryFile] = {
    "mobile": RegistryFile(
        "det/ch_PP-OCRv5_det_mobile.onnx", "4d97c44a20d30a81aad087d6a396b08f786c4635742afc391f6621f5c6ae78ae"
    ),
    "server": RegistryFile(
        "det/ch_PP-OCRv5_det_server.onnx", "0f8846b1d4bba223a2a2f9d9b44022fbc22cc019051a602b41a7fda9667e4cad"
    ),
}
RECOGNIZERS: dict[tuple[str, str], RegistryFile] = {
    ("ch", "mobile"): RegistryFile(
        "rec/ch_PP-OCRv5_rec_mobile.onnx", "5825fc7ebf84ae7a412be049820b4d86d77620f204a041697b0494669b1742c5"
    ),
    ("ch", "server"): RegistryFile(
        "rec/ch_PP-OCRv5_rec_server.onnx", "e09385400eaaaef34ceff54aeb7c4f0f1fe014c27fa8b9905d4709b65746562a"
    ),
    ("korean", "mobile"): RegistryFile(
        "rec/korean_PP-OCRv5_rec_mobile.onnx", "cd6e2ea50f6943ca7271eb8c56a877a5a90720b7047fe9c41a2e541a25773c9b"
    ),
    ("latin", "mobile"): RegistryFile(
        "rec/latin_PP-OCRv5_rec_mobile.onnx", "b20bd37c168a570f583afbc8cd7925603890efbcdc000a59e22c269d160b5f5a"
    ),
    ("eslav", "mobile"): RegistryFile(
        "rec/eslav_PP-OCRv5_rec_mobile.onnx", "08705d6721849b1347d26187f15a5e362c431963a2a62bfff4feac578c489aab"
    ),
    ("en", "mobile"): RegistryFile(
        "rec/en_PP-OCRv5_rec_mobile.onnx", "c3461add59bb4323ecba96a492ab75e06dda42467c9e3d0c18db5d1d21924be8"
    ),
    ("th", "mobile"): RegistryFile(
        "rec/th_PP-OCRv5_rec_mobile.onnx", "de541dd83161c241ff426f7ecfd602a0ba77d686cf3ab9a6c255ea82fd08006e"
    ),
    ("el", "mobile"): RegistryFile(
        "rec/el_PP-OCRv5_rec_mobile.onnx", "b4368bccd557123c702b7549fee6cd1e94b581337d1c9b65310f109131542b7f"
    ),
}


def detector_name(model_name: str) -> str:
    """The detector a (language variant) name uses: the part after the last ``__``."""
    return model_name.split("__")[-1]


def registry_file(model_name: str, model_type: ModelType) -> RegistryFile:
    """Which registry file holds ``model_name``'s ``model_type`` (as Immich maps its names)."""
    variant = detector_name(model_name)
    kind = variant.rsplit("_", 1)[-1]  # PP-OCRv5_mobile -> mobile
    if model_type == ModelType.DETECTION:
        found = DETECTORS.get(kind)
    else:
        language = model_name.split("__")[0].lower() if "__" in model_name else "ch"
        found = RECOGNIZERS.get((language, kind))
    if found is None:
        raise ModelUnavailable(f"RapidOCR's registry has no {model_type.value} model for {model_name!r}.")
    return found


def fetch(
    model_name: str, model_type: ModelType, target: Path, *, base_url: str, offline: bool
) -> None:
    """Download ``model_name``'s ``model_type`` file to ``target`` (``<type>/model.onnx``).

    Raises :class:`ModelUnavailable` naming the URL, the reason, and where to copy the file by hand.
    """
    entry = registry_file(model_name, model_type)
    url = f"{base_url.rstrip('/')}/{entry.path}"
    by_hand = f"Copy that file (sha256 {entry.sha256}) to {target} to use it without network access."
    if offline:
        raise ModelUnavailable(f"HF_HUB_OFFLINE is set, so {url} is not downloaded. {by_hand}")
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("Downloading %s to %s", url, target)
    handle, partial_name = tempfile.mkstemp(prefix=".download-", suffix=".partial", dir=target.parent)
    partial = Path(partial_name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(handle, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:  # noqa: S310 - http(s) base URL
                    while chunk := response.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                raise ModelUnavailable(f"Could not download {url}: {_reason(exc)}. {by_hand}") from exc
        actual = digest.hexdigest()
        if actual != entry.sha256:
            raise ModelUnavailable(
                f"{url} has sha256 {actual}, expected {entry.sha256} (a truncated download or a "
                f"different file on the mirror). {by_hand}"
            )
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return f"{type(exc).__name__}: {exc}"
