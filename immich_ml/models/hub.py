"""Download a model repository from Hugging Face into Immich's cache layout.

The only module that talks to the model hub. huggingface_hub keeps reading its own environment
(``HF_ENDPOINT``, ``HF_HUB_OFFLINE``, ``HF_TOKEN``) as it does for Immich; an ``endpoint`` given here
overrides ``HF_ENDPOINT`` explicitly.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from immich_ml.errors import ModelUnavailable

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://huggingface.co"


def snapshot(
    repo_id: str,
    *,
    revision: str,
    local_dir: Path,
    ignore_patterns: Sequence[str],
    endpoint: str | None = None,
) -> None:
    """Fetch every file of ``repo_id`` at ``revision`` into ``local_dir`` except ``ignore_patterns``.

    ``local_dir`` is also the huggingface_hub cache folder, as in Immich, so the download metadata lives
    and dies with the model's own folder and nothing is written elsewhere. Files already present with the
    right metadata are not fetched again. Any failure (offline, unknown repository, HTTP error, disk)
    raises :class:`ModelUnavailable` naming the repository and the reason.
    """
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:  # pragma: no cover - huggingface_hub is a hard dependency
        raise ModelUnavailable(
            f"Cannot download {repo_id}: huggingface_hub is not installed ({exc})."
        ) from exc
    local_dir.mkdir(parents=True, exist_ok=True)
    source = f"{(endpoint or DEFAULT_ENDPOINT).rstrip('/')}/{repo_id}"
    try:
        snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=local_dir,
            local_dir=local_dir,
            ignore_patterns=list(ignore_patterns),
            endpoint=endpoint,
        )
    except Exception as exc:  # noqa: BLE001 - the hub raises many unrelated types; all mean "not here"
        reason = f"{type(exc).__name__}: {_first_line(exc)}"
        raise ModelUnavailable(f"Could not download {source} (revision {revision}): {reason}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no details"
