#!/usr/bin/env bash
# Set up a development/run environment from a fresh clone: virtualenv, compiled core, starter models.
#   scripts/setup.sh            -> .venv with immich-ml[cpu,dev,ray] (editable) + starter models in the cache
# Environment: VENV (default .venv), MACHINE_LEARNING_CACHE_FOLDER (default ~/.cache/immich_ml).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
# Build tools first: the editable install builds without isolation so rebuilds are incremental.
"$VENV/bin/python" -m pip install -q "scikit-build-core>=0.10" "cython>=3.0" "cython-cmake>=0.3" numpy
"$VENV/bin/python" -m pip install -q --no-build-isolation -e ".[cpu,dev,ray]"

if "$VENV/bin/python" -c "import immich_ml.models.starter" 2>/dev/null; then
  "$VENV/bin/python" -m immich_ml.models.starter install
fi
echo "setup complete: $VENV"
