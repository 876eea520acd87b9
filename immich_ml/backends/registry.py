"""Backend selection: which runtime opens a model for a worker's target, with explicit fallback."""

from __future__ import annotations

from immich_ml.backends.base import ModelArtifacts, Session, SessionOptions, Target
from immich_ml.config import Settings


def open_session(
    artifacts: ModelArtifacts, settings: Settings, target: Target, options: SessionOptions
) -> Session:
    """Open ``artifacts`` on ``target``. Fallbacks are logged at WARNING and shown in ``placement``."""
    from immich_ml.backends.ort import OrtSession

    return OrtSession(artifacts, settings, target, options)
