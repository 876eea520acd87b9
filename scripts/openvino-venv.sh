#!/usr/bin/env bash
# Build .venv-openvino: the package with onnxruntime-openvino instead of onnxruntime, so the
# OpenVINO tests (pytest -m openvino) run for real on OpenVINO's CPU device.
# One ONNX Runtime flavour per venv: they all install the same `onnxruntime` module.
#   scripts/openvino-venv.sh            -> .venv-openvino (idempotent; re-run after C++/pyx changes)
# Environment: VENV (default .venv-openvino), PYTHON (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv-openvino}
PY=${PYTHON:-python3}
start=$(date +%s)

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
# Build tools first: the editable install builds without isolation, like scripts/setup.sh.
"$VENV/bin/python" -m pip install -q "scikit-build-core>=0.10" "cython>=3.0" "cython-cmake>=0.3" numpy
"$VENV/bin/python" -m pip install -q --no-build-isolation -e ".[openvino,dev]"

# A dependency that pulls plain `onnxruntime` would overwrite the OpenVINO build's files.
others=$("$VENV/bin/python" -m pip list --format=freeze 2>/dev/null \
  | grep -iE '^onnxruntime(-[a-z]+)?==' | grep -viE '^onnxruntime-openvino==' | cut -d= -f1 || true)
if [ -n "$others" ]; then
  echo "removing other ONNX Runtime flavours from $VENV: $others"
  # shellcheck disable=SC2086
  "$VENV/bin/python" -m pip uninstall -q -y $others
  "$VENV/bin/python" -m pip install -q --force-reinstall --no-deps onnxruntime-openvino
fi

"$VENV/bin/python" - <<'EOF'
import sys

import onnxruntime as ort

from immich_ml.backends.providers import OPENVINO, installed_ort_distributions, openvino_devices

flavours = installed_ort_distributions()
if flavours != ["onnxruntime-openvino"]:
    sys.exit(f"expected only onnxruntime-openvino, found {flavours}")
if OPENVINO not in ort.get_available_providers():
    sys.exit(f"{OPENVINO} missing from {ort.get_available_providers()}")
print(f"OpenVINO venv ready: onnxruntime-openvino {ort.__version__}, devices {openvino_devices()}")
EOF
echo "$VENV built in $(( $(date +%s) - start )) s"
